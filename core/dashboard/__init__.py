"""The read-only monitoring dashboard: ``queries`` (the data behind each panel), ``readonly`` (the read-only engine),
``formatting`` and the Streamlit script ``app.py`` (started by ``python main.py dashboard``)."""

from __future__ import annotations

from pathlib import Path


def app_path() -> Path:
    """The Streamlit script."""
    return Path(__file__).resolve().with_name("app.py")
