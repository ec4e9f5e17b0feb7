"""Load a story's baseline text from ``path``, ``text`` or ``url`` (I/O at the edge)."""

from __future__ import annotations

from monitor.config import Config, StoryConfig


class BaselineError(Exception):
    pass


def load_baseline_text(config: Config, story: StoryConfig) -> str | None:
    """The baseline article text, or None when the story has none. ``url`` baselines are fetched
    by the pipeline (it owns the HTTP client) and passed in through ``Monitor``."""
    baseline = story.baseline
    if baseline is None:
        return None
    if baseline.text is not None:
        return baseline.text
    if baseline.path is not None:
        path = config.resolve_path(baseline.path)
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BaselineError(
                f"{config.source}: stories[{story.id}].baseline.path: file not found: {path}"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BaselineError(
                f"{config.source}: stories[{story.id}].baseline.path: cannot read {path}: {exc}"
            ) from None
    return None
