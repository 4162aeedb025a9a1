"""``gridhub import csv``: send a history file to a running hub, in chunks, with progress."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from gridhub.cli.common import console, err_console

CHUNK_BYTES = 4 * 1024 * 1024


def chunks(path: Path, chunk_bytes: int) -> Iterator[tuple[int, str, int]]:
    """(first data line number, chunk text with the header, bytes of the file consumed)."""
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        header = handle.readline()
        if not header.strip():
            raise typer.BadParameter(f"{path} has no header line")
        lines: list[str] = []
        size, first, number = 0, 2, 1
        for line in handle:
            number += 1
            lines.append(line)
            size += len(line.encode())
            if size >= chunk_bytes:
                yield first, header + "".join(lines), size
                lines, size, first = [], 0, number + 1
        if lines:
            yield first, header + "".join(lines), size


def import_csv(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV file")],
    tenant: Annotated[str, typer.Option(help="tenant id")],
    url: Annotated[str, typer.Option(envvar="GRIDHUB_URL", help="hub API base URL")] = (
        "http://127.0.0.1:8480"
    ),
    token: Annotated[str, typer.Option(envvar="GRIDHUB_TOKEN", help="API token")] = "",
    timezone: Annotated[
        str | None, typer.Option(help="IANA zone for timestamps without offset")
    ] = None,
) -> None:
    """Import historical readings (long or wide CSV layout) through the hub's pipeline."""
    endpoint = f"{url.rstrip('/')}/api/v1/tenants/{tenant}/imports/csv"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv"}
    accepted = readings = 0
    reasons: dict[str, int] = {}
    with (
        httpx.Client(timeout=300) as client,
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress,
    ):
        task = progress.add_task(f"importing {file.name}", total=file.stat().st_size)
        for first, text, size in chunks(file, CHUNK_BYTES):
            params: dict[str, str | int] = {"name": file.name, "first_line": first}
            if timezone:
                params["timezone"] = timezone
            for _attempt in range(10):
                try:
                    response = client.post(
                        endpoint, content=text.encode(), headers=headers, params=params
                    )
                except httpx.HTTPError as exc:
                    err_console.print(f"[red]cannot reach {url}:[/red] {exc}")
                    raise typer.Exit(1) from None
                if response.status_code != 503:
                    break
                progress.console.print("hub busy; retrying")
                time.sleep(float(response.headers.get("Retry-After", "1")))
            if response.status_code not in (200, 400, 413, 422) or "accepted" not in (
                body := response.json()
            ):
                err_console.print(f"[red]{response.status_code}[/red] {response.text[:2000]}")
                raise typer.Exit(1)
            accepted += body["accepted"]
            readings += body["readings"]
            for rejected in body["rejected"]:
                reasons[rejected["reason"]] = reasons.get(rejected["reason"], 0) + 1
            progress.advance(task, size)
    console.print(f"{accepted} messages ({readings} readings) stored or already present")
    if reasons:
        summary = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
        console.print(
            f"[yellow]rejected and dead-lettered:[/yellow] {summary} "
            f"(see: gridhub deadletter list --tenant {tenant})"
        )
        raise typer.Exit(3)
