"""Shared CLI plumbing: logging set-up, settings, the console, remote API calls."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.logging import RichHandler

from gridhub.config import Settings
from gridhub.errors import ConfigError

console = Console()
err_console = Console(stderr=True)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=False)],
    )
    for noisy in ("amqtt", "transitions", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def load_settings(config: Path | None, **overrides: Any) -> Settings:
    try:
        return Settings.load(config, **overrides)
    except (ValueError, ConfigError) as exc:
        err_console.print(f"[red]invalid configuration:[/red] {exc}")
        raise typer.Exit(2) from None


def api_call(method: str, url: str, token: str, **kwargs: Any) -> Any:
    """Call a running hub's API; print its error and exit non-zero when it refuses."""
    try:
        response = httpx.request(
            method, url, headers={"Authorization": f"Bearer {token}"}, timeout=60.0, **kwargs
        )
    except httpx.HTTPError as exc:
        err_console.print(f"[red]cannot reach {url}:[/red] {exc}")
        raise typer.Exit(1) from None
    if response.status_code >= 400 and response.status_code != 422:
        err_console.print(f"[red]{response.status_code}[/red] {response.text[:2000]}")
        raise typer.Exit(1)
    return response.json()
