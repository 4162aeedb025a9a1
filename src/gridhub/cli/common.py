"""Shared CLI plumbing: logging set-up, settings, the console, remote API calls."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.logging import RichHandler

from gridhub.config import Settings
from gridhub.errors import ConfigError

UrlOpt = Annotated[str, typer.Option("--url", envvar="GRIDHUB_URL", help="hub API base URL")]
TokenOpt = Annotated[str, typer.Option("--token", envvar="GRIDHUB_TOKEN", help="API token")]
DEFAULT_URL = "http://127.0.0.1:8480"

console = Console()
err_console = Console(stderr=True)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, fmt: str = "text") -> None:
    """Human-readable logs on a terminal, or JSON lines (``fmt="json"``) for a log collector."""
    if fmt == "json":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False)
    logging.basicConfig(level=level.upper(), format="%(name)s: %(message)s", handlers=[handler])
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
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    timeout = kwargs.pop("timeout", 60.0)  # long-running calls (grid runs) pass their own
    try:
        response = httpx.request(method, url, headers=headers, timeout=timeout, **kwargs)
    except httpx.HTTPError as exc:
        err_console.print(f"[red]cannot reach {url}:[/red] {exc}")
        raise typer.Exit(1) from None
    if response.status_code >= 400 and response.status_code != 422:
        err_console.print(f"[red]{response.status_code}[/red] {response.text[:2000]}")
        raise typer.Exit(1)
    return response.json()
