"""story-monitor: follows one news story through German-language media and alerts on developments.

Pipeline: fetch -> parse -> match -> diff -> store -> alert. ``monitor.pipeline.Monitor`` is the API.
"""

__version__ = "0.1.0"
