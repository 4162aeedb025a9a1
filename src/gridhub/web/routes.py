"""Dashboard routes: one HTML shell per page, static assets, no server-side data.

The pages hold no data of their own: the browser keeps the user's token in ``sessionStorage``
and reads every figure from the JSON API with ``Authorization: Bearer``, so a page passes
exactly the access checks of the API. Chart code (uPlot) is vendored under ``static/vendor``:
the hub works offline.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from gridhub.errors import NotFound

__all__ = ["PAGES", "install"]

STATIC = Path(__file__).parent / "static"
# path under /ui/ -> page title
PAGES = {
    "login": "Sign in",
    "overview": "Fleet overview",
    "household": "Household day",
    "devices": "Device timelines",
    "aggregates": "Aggregates",
    "completeness": "Completeness",
    "tariffs": "Tariffs & experiments",
    "export": "Export & SQL",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/overview")


@router.get("/ui")
@router.get("/ui/")
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/overview")


@router.get("/ui/{page}")
def page(page: str) -> HTMLResponse:
    title = PAGES.get(page)
    if title is None:
        raise NotFound(f"no dashboard page {page[:64]!r}")
    shell = (STATIC / "shell.html").read_text(encoding="utf-8")
    return HTMLResponse(
        shell.replace("{{page}}", page).replace("{{title}}", title),
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


def install(app: FastAPI) -> None:
    """Mount the dashboard on ``app``: pages under /ui/, assets under /ui/static/."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
