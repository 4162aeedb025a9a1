"""Access routes (A1, A3, A4, A5): stakeholders, contracts, owner policies, the audit log.

Tokens themselves are created, listed and revoked under ``/tenants/{t}/tokens`` (tenants.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from gridhub.access.tokens import Principal
from gridhub.api.deps import HubDep, PrincipalDep
from gridhub.api.routes.query import parse_instant
from gridhub.domain.access import ANY, AuditEntry, Contract, Kind, PolicyVersion, Stakeholder
from gridhub.errors import Forbidden, InvalidRequest
from gridhub.hub import Hub
from gridhub.storage.access_catalog import AuditQuery

router = APIRouter(prefix="/api/v1/tenants", tags=["access"])
MAX_BULK = 10_000  # stakeholders or contracts per bulk request (and the 1 MiB body limit)
admin_router = APIRouter(prefix="/api/v1", tags=["access"])


class StakeholderBody(BaseModel):
    id: str = Field(max_length=128)
    kind: Kind
    name: str = Field("", max_length=200)
    site: str | None = Field(None, description="a customer's site (household)", max_length=128)


class StakeholdersBody(BaseModel):
    stakeholders: list[StakeholderBody] = Field(min_length=1, max_length=MAX_BULK)


class StakeholderPublic(StakeholderBody):
    created: datetime
    disabled: bool


class ContractBody(BaseModel):
    id: str | None = Field(None, max_length=128)
    customer: str = Field(max_length=128)
    supplier: str = Field(description="a retailer, aggregator or ESCO", max_length=128)
    start: datetime = Field(description="ISO 8601 with offset")
    end: datetime | None = Field(None, description="exclusive; none: open-ended")


class ContractsBody(BaseModel):
    contracts: list[ContractBody] = Field(min_length=1, max_length=MAX_BULK)


class ContractPublic(BaseModel):
    id: str
    customer: str
    supplier: str
    start: datetime
    end: datetime | None
    created: datetime


class ContractEnd(BaseModel):
    at: datetime = Field(description="the contract's new (exclusive) end")


class SwitchBody(BaseModel):
    customer: str = Field(max_length=128)
    supplier: str = Field(description="the new supplier", max_length=128)
    at: datetime = Field(description="the switch instant: old contract ends, new one starts")
    id: str | None = Field(None, description="id of the new contract", max_length=128)


class SwitchPublic(BaseModel):
    ended: ContractPublic | None
    started: ContractPublic


class Rights(BaseModel):
    read: bool = True
    write: bool = False
    min_delay_s: float = Field(0.0, ge=0, description="minimum seconds between two reads")
    valid_from: datetime | None = Field(
        None, description="applies to values from this time on (default: now)"
    )


class PolicyBody(Rights):
    id: str | None = Field(None, max_length=128)
    grantee: str = Field(description="a stakeholder id, or * for all", max_length=128)
    service: str = Field(ANY, description="one of the grantee's services, or *", max_length=128)
    site: str | None = Field(None, max_length=128)
    device: str | None = Field(None, max_length=128)
    identifier: str = Field(
        ANY, description="identifier or glob, e.g. electricity.*", max_length=128
    )


class PolicyVersionPublic(BaseModel):
    version: int
    read: bool
    write: bool
    min_delay_s: float
    valid_from: datetime
    created: datetime
    created_by: str


class PolicyPublic(BaseModel):
    id: str
    grantee: str
    service: str
    site: str | None
    device: str | None
    identifier: str
    versions: list[PolicyVersionPublic]


class AuditPublic(BaseModel):
    id: int
    ts: datetime
    tenant: str | None
    actor: str
    stakeholder: str | None
    action: str
    target: str
    result: str
    detail: str


def _stakeholder(s: Stakeholder) -> StakeholderPublic:
    return StakeholderPublic(
        id=s.id, kind=s.kind, name=s.name, site=s.site, created=s.created, disabled=s.disabled
    )


def _contract(c: Contract) -> ContractPublic:
    return ContractPublic(
        id=c.id, customer=c.customer, supplier=c.supplier, start=c.start, end=c.end,
        created=c.created,
    )  # fmt: skip


def _policy(versions: list[PolicyVersion]) -> PolicyPublic:
    p = versions[0]
    return PolicyPublic(
        id=p.id,
        grantee=p.grantee,
        service=p.service,
        site=p.site,
        device=p.device,
        identifier=p.identifier,
        versions=[
            PolicyVersionPublic(
                version=v.version, read=v.read, write=v.write, min_delay_s=v.min_delay_s,
                valid_from=v.valid_from, created=v.created, created_by=v.created_by,
            )
            for v in versions
        ],
    )  # fmt: skip


def _audit(e: AuditEntry) -> AuditPublic:
    return AuditPublic(
        id=e.id, ts=e.ts, tenant=e.tenant, actor=e.actor, stakeholder=e.stakeholder,
        action=e.action, target=e.target, result=e.result, detail=e.detail,
    )  # fmt: skip


def _is_tenant_admin(who: Principal, tenant: str) -> bool:
    return who.role == "admin" and who.tenant in (None, tenant)


# -- stakeholders -------------------------------------------------------------------------------


@router.post(
    "/{tenant}/stakeholders", status_code=status.HTTP_201_CREATED, summary="Add a stakeholder"
)
def create_stakeholder(
    tenant: str, body: StakeholderBody, hub: HubDep, who: PrincipalDep
) -> StakeholderPublic:
    who.require_admin(tenant)
    created = hub.access.directory.create_stakeholder(
        tenant, body.id, body.kind, body.name, body.site
    )
    return _stakeholder(created)


@router.post(
    "/{tenant}/stakeholders/bulk",
    status_code=status.HTTP_201_CREATED,
    summary="Add many stakeholders at once (e.g. a pilot's customers): all or none",
)
def create_stakeholders(
    tenant: str, body: StakeholdersBody, hub: HubDep, who: PrincipalDep
) -> list[StakeholderPublic]:
    who.require_admin(tenant)
    created = hub.access.directory.create_stakeholders(
        tenant, [(s.id, s.kind, s.name, s.site) for s in body.stakeholders]
    )
    return [_stakeholder(s) for s in created]


@router.get("/{tenant}/stakeholders", summary="The tenant's stakeholders (tenant admin)")
def list_stakeholders(
    tenant: str, hub: HubDep, who: PrincipalDep, kind: Kind | None = None
) -> list[StakeholderPublic]:
    who.require_admin(tenant)
    return [_stakeholder(s) for s in hub.access.directory.stakeholders(tenant, kind)]


@router.delete(
    "/{tenant}/stakeholders/{stakeholder}",
    summary="Disable a stakeholder and revoke its tokens (its history stays in the audit log)",
)
def disable_stakeholder(
    tenant: str, stakeholder: str, hub: HubDep, who: PrincipalDep
) -> StakeholderPublic:
    who.require_admin(tenant)
    disabled = hub.access.directory.disable_stakeholder(tenant, stakeholder)
    hub.tokens.revoke_stakeholder(tenant, stakeholder)
    return _stakeholder(disabled)


# -- contracts ----------------------------------------------------------------------------------


@router.post(
    "/{tenant}/contracts", status_code=status.HTTP_201_CREATED, summary="Add a supply contract"
)
def create_contract(
    tenant: str, body: ContractBody, hub: HubDep, who: PrincipalDep
) -> ContractPublic:
    who.require_admin(tenant)
    contract = hub.access.directory.create_contract(
        tenant, body.customer, body.supplier, body.start, body.end, body.id
    )
    return _contract(contract)


@router.post(
    "/{tenant}/contracts/bulk",
    status_code=status.HTTP_201_CREATED,
    summary="Add many supply contracts at once: all or none, checked against each other too",
)
def create_contracts(
    tenant: str, body: ContractsBody, hub: HubDep, who: PrincipalDep
) -> list[ContractPublic]:
    who.require_admin(tenant)
    created = hub.access.directory.create_contracts(
        tenant, [(c.customer, c.supplier, c.start, c.end, c.id) for c in body.contracts]
    )
    return [_contract(c) for c in created]


@router.get(
    "/{tenant}/contracts",
    summary="Contracts: all for a tenant admin, a stakeholder's own otherwise",
)
def list_contracts(
    tenant: str,
    hub: HubDep,
    who: PrincipalDep,
    customer: Annotated[str | None, Query(max_length=128)] = None,
    supplier: Annotated[str | None, Query(max_length=128)] = None,
) -> list[ContractPublic]:
    who.require_tenant(tenant)
    found = hub.access.directory.contracts(tenant, customer, supplier)
    if not _is_tenant_admin(who, tenant):
        found = [c for c in found if who.stakeholder in (c.customer, c.supplier)]
    return [_contract(c) for c in found]


@router.post("/{tenant}/contracts/{contract}/end", summary="End a contract at a given time")
def end_contract(
    tenant: str, contract: str, body: ContractEnd, hub: HubDep, who: PrincipalDep
) -> ContractPublic:
    who.require_admin(tenant)
    return _contract(hub.access.directory.end_contract(tenant, contract, body.at))


@router.post(
    "/{tenant}/contracts/switch",
    summary="Supplier switch: the running contract ends, a new one starts, at one instant",
)
def switch_supplier(tenant: str, body: SwitchBody, hub: HubDep, who: PrincipalDep) -> SwitchPublic:
    who.require_admin(tenant)
    ended, started = hub.access.directory.switch_supplier(
        tenant, body.customer, body.supplier, body.at, body.id
    )
    return SwitchPublic(ended=_contract(ended) if ended else None, started=_contract(started))


# -- owner policies -----------------------------------------------------------------------------


def _require_owner(
    hub: Hub, who: Principal, tenant: str, site: str | None, device: str | None
) -> bool:
    """The tenant admin manages every policy; a customer those of its own site. Returns
    whether the caller may back-date (only the tenant admin may)."""
    who.require_tenant(tenant)
    if _is_tenant_admin(who, tenant):
        return True
    me = hub.access.directory.find_stakeholder(tenant, who.stakeholder) if who.stakeholder else None
    if me is None or me.kind is not Kind.CUSTOMER or me.site is None:
        raise Forbidden("only the tenant admin or the owner (customer) of a series sets policies")
    if site != me.site:
        raise Forbidden(f"a customer sets policies for its own site ({me.site!r}) only")
    known = hub.registry.device(tenant, device) if device else None
    if device is not None and (known is None or known.site != me.site):
        raise Forbidden(f"device {device!r} is not on site {me.site!r}")
    return False


@router.post(
    "/{tenant}/policies", status_code=status.HTTP_201_CREATED, summary="Create an owner policy"
)
def create_policy(tenant: str, body: PolicyBody, hub: HubDep, who: PrincipalDep) -> PolicyPublic:
    may_backdate = _require_owner(hub, who, tenant, body.site, body.device)
    if not may_backdate and body.valid_from is not None:
        raise InvalidRequest("an owner's policy holds from now on; leave valid_from out")
    created = hub.access.directory.create_policy(
        tenant,
        grantee=body.grantee,
        identifier=body.identifier,
        read=body.read,
        write=body.write,
        min_delay_s=body.min_delay_s,
        service=body.service,
        site=body.site,
        device=body.device,
        valid_from=body.valid_from,
        policy_id=body.id,
        by=who.stakeholder or who.token_id,
    )
    return _policy(hub.access.directory.policy(tenant, created.id))


@router.post(
    "/{tenant}/policies/{policy}/versions",
    status_code=status.HTTP_201_CREATED,
    summary="Change a policy: a new version for the values from valid_from on",
)
def change_policy(
    tenant: str, policy: str, body: Rights, hub: HubDep, who: PrincipalDep
) -> PolicyPublic:
    who.require_tenant(tenant)
    current = hub.access.directory.policy(tenant, policy)[0]
    may_backdate = _require_owner(hub, who, tenant, current.site, current.device)
    hub.access.directory.add_policy_version(
        tenant,
        policy,
        read=body.read,
        write=body.write,
        min_delay_s=body.min_delay_s,
        valid_from=body.valid_from,
        by=who.stakeholder or who.token_id,
        may_backdate=may_backdate,
    )
    return _policy(hub.access.directory.policy(tenant, policy))


@router.get("/{tenant}/policies", summary="Owner policies with their versions")
def list_policies(tenant: str, hub: HubDep, who: PrincipalDep) -> list[PolicyPublic]:
    who.require_tenant(tenant)
    policies = hub.access.directory.policies(tenant)
    if not _is_tenant_admin(who, tenant):
        me = (
            hub.access.directory.find_stakeholder(tenant, who.stakeholder)
            if who.stakeholder
            else None
        )
        if me is None:
            return []
        policies = [
            v for v in policies
            if v[0].grantee == me.id or (me.site is not None and v[0].site == me.site)
        ]  # fmt: skip
    return [_policy(v) for v in policies]


# -- audit --------------------------------------------------------------------------------------


def _audit_query(
    tenant: str | None,
    actor: str | None,
    stakeholder: str | None,
    action: str | None,
    result: str | None,
    start: str | None,
    end: str | None,
    limit: int,
) -> AuditQuery:
    return AuditQuery(
        tenant, actor, stakeholder, action, result,
        parse_instant("from", start), parse_instant("to", end), limit,
    )  # fmt: skip


Actor = Annotated[str | None, Query(max_length=128, description="token id")]
StakeholderQ = Annotated[str | None, Query(max_length=128)]
Action = Annotated[
    str | None,
    Query(max_length=32, description="read, write, token, stakeholder, contract, policy, ..."),
]
Result = Annotated[str | None, Query(max_length=32, description="an HTTP status, e.g. 403")]
From = Annotated[str | None, Query(alias="from", max_length=64)]
To = Annotated[str | None, Query(alias="to", max_length=64)]
Limit = Annotated[int, Query(ge=1, le=10_000)]


@router.get("/{tenant}/audit", summary="The tenant's audit log, newest first (tenant admin)")
def tenant_audit(
    tenant: str,
    hub: HubDep,
    who: PrincipalDep,
    actor: Actor = None,
    stakeholder: StakeholderQ = None,
    action: Action = None,
    result: Result = None,
    start: From = None,
    end: To = None,
    limit: Limit = 1000,
) -> list[AuditPublic]:
    who.require_admin(tenant)
    hub.registry.tenant(tenant)
    query = _audit_query(tenant, actor, stakeholder, action, result, start, end, limit)
    return [_audit(e) for e in hub.audit.query(query)]


@admin_router.get("/audit", summary="The whole installation's audit log (installation admin)")
def installation_audit(
    hub: HubDep,
    who: PrincipalDep,
    actor: Actor = None,
    stakeholder: StakeholderQ = None,
    action: Action = None,
    result: Result = None,
    start: From = None,
    end: To = None,
    limit: Limit = 1000,
) -> list[AuditPublic]:
    who.require_admin()
    query = _audit_query(None, actor, stakeholder, action, result, start, end, limit)
    return [_audit(e) for e in hub.audit.query(query)]
