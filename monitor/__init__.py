"""story-monitor: follows one news story through German-language media and alerts on developments.

Pipeline: fetch -> parse -> match -> diff -> store -> alert. ``monitor.pipeline.Monitor`` is the API.
"""

import sys

__version__ = "0.1.0"

# httpx's package __init__ imports its command-line client (``httpx._main``) whenever click is
# installed (it is: our CLI), and that module imports rich and pygments: ~30 ms of every start-up of
# `monitor`, for a command we never run. httpx guards that import with ``except ImportError`` and
# then defines a stand-in ``httpx.main`` that only prints a hint; a ``None`` entry in sys.modules
# makes the import raise ImportError, so httpx takes that path. Safe because nothing in this
# process uses httpx's CLI (``httpx.main``); the `httpx` console script is a process of its own.
# Only when httpx is not imported yet: an importer that loaded it first keeps it as it is.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
