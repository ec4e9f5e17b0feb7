"""Load a story's baseline text from ``path``, ``text`` or ``url`` (I/O at the edge)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports BaselineError for every command; httpx only where fetched
    from monitor.config import Config, StoryConfig
    from monitor.fetch import Fetcher


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


async def fetch_baseline_text(config: Config, story: StoryConfig, fetcher: Fetcher | None) -> str | None:
    """Like ``load_baseline_text``, and a ``url`` baseline is fetched through the Fetcher (the
    configured limits; the URL is the user's own, so it may be an intranet address) and its
    article text extracted with trafilatura."""
    baseline = story.baseline
    if baseline is None or baseline.url is None:
        return load_baseline_text(config, story)
    if fetcher is None:
        raise BaselineError(f"{config.source}: stories[{story.id}].baseline.url: no HTTP client")
    from monitor.fulltext import _decode, extract_article

    where = f"{config.source}: stories[{story.id}].baseline.url"
    result = await fetcher.get(baseline.url, {"Accept": "text/html,text/plain;q=0.9,*/*;q=0.5"})
    if not result.ok or result.body is None:
        raise BaselineError(f"{where}: cannot fetch {baseline.url}: {result.error_kind}: {result.error}")
    page = _decode(result.body, result.content_type)
    if "text/plain" in (result.content_type or ""):
        return page
    extracted = extract_article(page, result.final_url)
    if extracted.text is None:
        raise BaselineError(f"{where}: no article text in {baseline.url} ({extracted.status})")
    return extracted.text
