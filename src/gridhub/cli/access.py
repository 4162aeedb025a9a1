"""``gridhub token …`` and ``gridhub stakeholder …``: manage access on a running hub over HTTP.

DuckDB locks its file while the hub runs, so these commands call the API with an admin token
(``--token`` or ``GRIDHUB_TOKEN``), like ``gridhub deadletter``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from gridhub.cli.common import api_call, console, err_console

__all__ = ["stakeholder_app", "token_app"]

token_app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)
stakeholder_app = typer.Typer(help="Create, list and disable stakeholders.", no_args_is_help=True)

UrlOpt = Annotated[str, typer.Option("--url", envvar="GRIDHUB_URL", help="hub API base URL")]
TokenOpt = Annotated[
    str, typer.Option("--token", envvar="GRIDHUB_TOKEN", help="an admin token of the tenant")
]
TenantOpt = Annotated[str, typer.Option("--tenant", help="tenant id")]
DEFAULT_URL = "http://127.0.0.1:8480"


def _call(method: str, url: str, path: str, token: str, **kwargs: Any) -> Any:
    answer = api_call(method, url.rstrip("/") + path, token, **kwargs)
    if isinstance(answer, dict) and "detail" in answer and "id" not in answer:
        err_console.print(f"[red]refused:[/red] {answer['detail']}")  # a 422 answer
        raise typer.Exit(1)
    return answer


@token_app.command("create")
def token_create(
    tenant: TenantOpt,
    stakeholder: Annotated[
        str | None, typer.Option(help="the stakeholder it acts for (its kind is the role)")
    ] = None,
    role: Annotated[
        str | None, typer.Option(help="admin or device, for a token without stakeholder")
    ] = None,
    service: Annotated[str | None, typer.Option(help="the stakeholder's service")] = None,
    expires: Annotated[
        str | None, typer.Option(help="expiry, ISO 8601 with offset (default: none)")
    ] = None,
    name: Annotated[str, typer.Option(help="a label")] = "",
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
) -> None:
    """Create a token; its secret is printed once."""
    body = {
        "stakeholder": stakeholder,
        "role": role,
        "service": service,
        "expires": expires,
        "name": name,
    }
    created = _call(
        "POST",
        url,
        f"/api/v1/tenants/{tenant}/tokens",
        token,
        json={k: v for k, v in body.items() if v is not None},
    )
    console.print(
        f"token {created['id']} ({created['role']}"
        + (f", stakeholder {created['stakeholder']}" if created.get("stakeholder") else "")
        + (f", expires {created['expires']}" if created.get("expires") else "")
        + ")"
    )
    console.print(f"secret (shown once, store it now): {created['token']}")


@token_app.command("list")
def token_list(tenant: TenantOpt, url: UrlOpt = DEFAULT_URL, token: TokenOpt = "") -> None:
    """List a tenant's tokens (never their secrets)."""
    rows = _call("GET", url, f"/api/v1/tenants/{tenant}/tokens", token)
    table = Table(title=f"tokens of {tenant}")
    for column in ("id", "role", "stakeholder", "service", "name", "created", "expires", "state"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["id"],
            row["role"],
            row.get("stakeholder") or "",
            row.get("service") or "",
            row["name"],
            row["created"],
            row.get("expires") or "",
            "revoked" if row["revoked"] else "active",
        )
    console.print(table)


@token_app.command("revoke")
def token_revoke(
    tenant: TenantOpt,
    token_id: Annotated[str, typer.Argument(help="the token's id (from token list)")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
) -> None:
    """Revoke a token: it is refused (401) from now on."""
    revoked = _call("DELETE", url, f"/api/v1/tenants/{tenant}/tokens/{token_id}", token)
    console.print(f"token {revoked['id']} revoked")


@stakeholder_app.command("create")
def stakeholder_create(
    tenant: TenantOpt,
    stakeholder_id: Annotated[str, typer.Argument(help="stakeholder id")],
    kind: Annotated[
        str, typer.Option(help="dso, retailer, aggregator, esco, customer, researcher, admin")
    ],
    site: Annotated[str | None, typer.Option(help="a customer's site")] = None,
    name: Annotated[str, typer.Option(help="display name")] = "",
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
) -> None:
    """Register a stakeholder of a tenant."""
    body: dict[str, Any] = {"id": stakeholder_id, "kind": kind, "name": name}
    if site is not None:
        body["site"] = site
    created = _call("POST", url, f"/api/v1/tenants/{tenant}/stakeholders", token, json=body)
    console.print(f"stakeholder {created['id']} ({created['kind']}) created")


@stakeholder_app.command("list")
def stakeholder_list(tenant: TenantOpt, url: UrlOpt = DEFAULT_URL, token: TokenOpt = "") -> None:
    """List a tenant's stakeholders."""
    rows = _call("GET", url, f"/api/v1/tenants/{tenant}/stakeholders", token)
    table = Table(title=f"stakeholders of {tenant}")
    for column in ("id", "kind", "site", "name", "state"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["id"],
            row["kind"],
            row.get("site") or "",
            row["name"],
            "disabled" if row["disabled"] else "active",
        )
    console.print(table)


@stakeholder_app.command("disable")
def stakeholder_disable(
    tenant: TenantOpt,
    stakeholder_id: Annotated[str, typer.Argument(help="stakeholder id")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = "",
) -> None:
    """Disable a stakeholder and revoke all its tokens."""
    _call("DELETE", url, f"/api/v1/tenants/{tenant}/stakeholders/{stakeholder_id}", token)
    console.print(f"stakeholder {stakeholder_id} disabled, its tokens revoked")
