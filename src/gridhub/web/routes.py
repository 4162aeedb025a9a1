"""Dashboard routes: one HTML shell per page, static assets, no server-side data.

The pages hold no data of their own: the browser keeps the user's token in ``sessionStorage``
and reads every figure from the JSON API with ``Authorization: Bearer``, so a page passes
exactly the access checks of the API. Chart code (uPlot) is vendored under ``static/vendor``:
the hub works offline.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

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
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)


def _assets_version() -> str:
    """A digest of the static files: asset URLs carry it, so browsers may cache them for good."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


VERSION = _assets_version()


class _Assets(StaticFiles):
    """Static files; a versioned URL (``?v=…``) is immutable, so it is cached without asking."""

    async def get_response(self, path: str, scope: Any) -> Any:
        response = await super().get_response(path, scope)
        if scope.get("query_string") and response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


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
        shell.replace("{{page}}", page).replace("{{title}}", title).replace("{{v}}", VERSION),
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            # the token sits in sessionStorage: no script but ours may ever run on these pages
            "Content-Security-Policy": CSP,
            "Referrer-Policy": "no-referrer",
        },
    )


def install(app: FastAPI) -> None:
    """Mount the dashboard on ``app``: pages under /ui/, assets under /ui/static/."""
    app.include_router(router)
    app.mount("/ui/static", _Assets(directory=STATIC), name="ui-static")
