"""The Dash web app: ``create_app(runs_dir)``, its pages and their server-side plumbing
(state, caches, background jobs, run-id security)."""

from __future__ import annotations

from lcaviz.app.app import create_app, get_state

__all__ = ["create_app", "get_state"]
