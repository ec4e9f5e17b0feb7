"""The story desk: a read-only dashboard, JSON API and Atom feeds over the monitor's database."""

from __future__ import annotations

from monitor.web.app import create_app

__all__ = ["create_app"]
