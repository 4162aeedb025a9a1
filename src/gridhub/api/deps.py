"""Request dependencies as ``Annotated`` aliases: the hub, and the calling principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gridhub.access.tokens import Principal
from gridhub.errors import Unauthenticated
from gridhub.hub import Hub

_bearer = HTTPBearer(auto_error=False, description="gridhub API token (gh_…)")


def get_hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
    principal = get_hub(request).tokens.authenticate(credentials.credentials)
    request.state.principal = principal  # for the audit log (access/audit.py)
    return principal


HubDep = Annotated[Hub, Depends(get_hub)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
