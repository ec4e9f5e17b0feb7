"""simplemma's German dictionary without its cost: memory-mapped tries instead of a 100 MB dict.

simplemma ships its dictionaries lzma-compressed; its default factory decompresses the German one
into a Python dict of 1.1 million entries on first use (~1 s and ~100 MB per process, every
process start). Here the same data lives in two MARISA tries (``marisa-trie``, the backend
simplemma itself offers for low memory) in the user's cache directory, keyed by simplemma's
version, memory-mapped on use:

- ``de-forms``: surface form -> lemma, the dictionary simplemma's strategies look words up in
  (``lemmatize``/``is_known`` here give exactly simplemma's answers, from the same data);
- ``de-lemmas``: lemma -> surface forms, the reverse index ``text.inflections`` needs (it used to
  scan the whole dictionary for the forms of a story's words).

The tries are built once per machine in a child process (so the daemon never holds the dict),
written atomically. Without marisa-trie, or when the cache cannot be built, everything falls back to
simplemma's own in-memory dictionary: slower to start, same answers.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LANG = "de"
_lock = threading.Lock()
_state: dict[str, Any] = {}


def cache_dir() -> Path:
    """``$MONITOR_CACHE_DIR`` or ``$XDG_CACHE_HOME/story-monitor`` (default ``~/.cache``), per
    simplemma version."""
    from simplemma.__metadata__ import __version__

    base = os.environ.get("MONITOR_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = str(Path(xdg) / "story-monitor")
    return Path(base) / f"simplemma-{__version__}"


def _paths(directory: Path) -> tuple[Path, Path]:
    return directory / f"{LANG}-forms.marisa", directory / f"{LANG}-lemmas.marisa"


def build(directory: Path) -> None:
    """Build both tries from simplemma's shipped dictionary into ``directory`` (atomic renames)."""
    from marisa_trie import BytesTrie
    from simplemma.strategies.dictionaries.dictionary_factory import _load_dictionary_from_disk

    raw = _load_dictionary_from_disk(LANG)
    directory.mkdir(parents=True, exist_ok=True)
    forms_path, lemmas_path = _paths(directory)
    tries = {
        forms_path: BytesTrie((k.decode("utf-8"), v) for k, v in raw.items()),
        lemmas_path: BytesTrie((v.decode("utf-8"), k) for k, v in raw.items()),
    }
    for path, trie in tries.items():
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            trie.save(str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


class _TrieFactory:
    """A simplemma ``DictionaryFactory`` over the memory-mapped forms trie."""

    def __init__(self, forms: Mapping[str, str]) -> None:
        self._forms = forms

    def get_dictionary(self, lang: str) -> Mapping[str, str]:
        if lang != LANG:
            raise ValueError(f"Unsupported language: {lang}")
        return self._forms


def _load() -> dict[str, Any]:
    """The lemmatizer, the membership lookup and the reverse index (None: scan the dictionary)."""
    with _lock:
        if _state:
            return _state
        lemmas_trie = None
        factory: Any = None
        if os.environ.get("MONITOR_SIMPLEMMA_TRIES", "1") != "0":
            try:
                factory, lemmas_trie = _open_tries()
            except Exception as exc:  # no marisa-trie, unwritable cache, ...: simplemma's own dict
                log.warning("simplemma tries unavailable (%s); loading the dictionary into memory", exc)
        if factory is not None:
            from simplemma import Lemmatizer
            from simplemma.strategies import DefaultStrategy
            from simplemma.strategies.dictionary_lookup import DictionaryLookupStrategy

            strategy = DefaultStrategy(dictionary_factory=factory)
            # simplemma's own cache of results (65,536 by default) sits under monitor.text.lemma's
            # and the diff's per-word caches: a small one is enough.
            _state["lemmatizer"] = Lemmatizer(lemmatization_strategy=strategy, cache_max_size=4096)
            _state["lookup"] = DictionaryLookupStrategy(factory)
        else:
            _state["lemmatizer"] = _state["lookup"] = None
        _state["lemmas"] = lemmas_trie
        return _state


def _open_tries() -> tuple[Any, Any]:
    from marisa_trie import BytesTrie
    from simplemma.strategies.dictionaries.trie_dictionary_factory import TrieWrapDict

    directory = cache_dir()
    forms_path, lemmas_path = _paths(directory)
    if not (forms_path.exists() and lemmas_path.exists()):
        # A child process: the 100 MB dict it needs for the build never enters this process.
        subprocess.run(
            [sys.executable, "-m", "monitor.lexicon", str(directory)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=600,
        )
    forms = BytesTrie()
    forms.mmap(str(forms_path))
    lemmas = BytesTrie()
    lemmas.mmap(str(lemmas_path))
    return _TrieFactory(TrieWrapDict(forms)), lemmas


def lemmatize(token: str) -> str:
    """``simplemma.lemmatize(token, lang="de")``."""
    lemmatizer = _load()["lemmatizer"]
    if lemmatizer is None:
        import simplemma

        return simplemma.lemmatize(token, lang=LANG)
    return lemmatizer.lemmatize(token, LANG)


def is_known(token: str) -> bool:
    """``simplemma.is_known(token, lang="de")``."""
    lookup = _load()["lookup"]
    if lookup is None:
        import simplemma

        return bool(simplemma.is_known(token, lang=LANG))
    from simplemma.utils import normalize_token

    if not isinstance(token, str):
        raise TypeError("input must be a string")
    return lookup.get_lemma(normalize_token(token), LANG) is not None


def forms_of(lemmas: Iterable[str]) -> dict[bytes, set[bytes]]:
    """For each lemma (dictionary spelling, UTF-8), the surface forms whose dictionary lemma it is."""
    state = _load()
    wanted = {lem.encode("utf-8") for lem in lemmas}
    out: dict[bytes, set[bytes]] = {w: set() for w in wanted}
    reverse = state["lemmas"]
    if reverse is not None:
        for w in wanted:
            out[w].update(reverse.get(w.decode("utf-8"), ()))
        return out
    for form, lem in _dictionary_pairs():
        forms = out.get(lem)
        if forms is not None:
            forms.add(form)
    return out


def _dictionary_pairs() -> Iterable[tuple[bytes, bytes]]:
    """(surface form, lemma) pairs of simplemma's in-memory German dictionary, UTF-8 encoded."""
    # The factory simplemma.lemmatize itself uses: the dictionary is loaded once per process.
    try:
        from simplemma.strategies.default import DEFAULT_DICTIONARY_FACTORY as factory
    except ImportError:  # older simplemma: a private factory (loads the dictionary a second time)
        from simplemma.strategies.dictionaries import DefaultDictionaryFactory

        factory = DefaultDictionaryFactory()

    dictionary = factory.get_dictionary(LANG)
    raw = getattr(dictionary, "_dict", None)  # bytes -> bytes: 10x faster than the decoding view
    if isinstance(raw, dict) and all(isinstance(x, bytes) for x in next(iter(raw.items()), (b"", b""))):
        return raw.items()
    return ((form.encode("utf-8"), lem.encode("utf-8")) for form, lem in dictionary.items())


if __name__ == "__main__":
    build(Path(sys.argv[1]))
