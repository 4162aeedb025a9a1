"""Each tenant's grid topology (P5): stored, checked, imported, and handed to the grid services.

A tenant has at most one topology, kept as the JSON document of :mod:`gridhub.grid.topology_json`
(replaced as a whole: a grid description is edited offline and uploaded, as operators do with
their GIS exports). It is parsed once and cached, since every grid service run needs it.

A topology may name households and devices the tenant has not registered yet — a grid is often
described before the meters are rolled out — so they are reported, not refused; a typo shows up
there at once.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from gridhub.domain.topology import NodeKind, Topology
from gridhub.errors import InvalidRequest, NotFound
from gridhub.grid.households import Strategy, attach_households
from gridhub.grid.topology_json import topology_from_json, topology_to_json
from gridhub.storage.base import TopologyCatalog
from gridhub.storage.registry import Registry

__all__ = ["TopologyService", "TopologySummary"]

MAX_LISTED = 20


@dataclass(frozen=True, slots=True)
class TopologySummary:
    """What an upload or import produced, for the operator to check at a glance."""

    name: str
    nodes: int
    connection_points: int
    lines: int
    transformers: int
    switches: int
    sites: int
    devices: int
    unknown_sites: tuple[str, ...]  # attached in the topology, not registered (first 20)
    unknown_devices: tuple[str, ...]


class TopologyService:
    def __init__(self, catalog: TopologyCatalog, registry: Registry) -> None:
        self._catalog = catalog
        self._registry = registry
        self._cache: dict[str, Topology] = {}
        self._lock = threading.Lock()

    def get(self, tenant: str) -> Topology:
        """The tenant's topology; :class:`NotFound` if it has none yet."""
        self._registry.tenant(tenant)
        with self._lock:  # held while loading: a concurrent upload cannot be overwritten
            cached = self._cache.get(tenant)
            if cached is not None:
                return cached
            document = self._catalog.topology_document(tenant)
            if document is None:
                raise NotFound(
                    f"tenant {tenant!r} has no topology yet: PUT a JSON document or import a "
                    "reference network (gridhub topology import)"
                )
            topology = topology_from_json(document)
            self._cache[tenant] = topology
            return topology

    def document(self, tenant: str) -> dict[str, Any]:
        return topology_to_json(self.get(tenant))

    def put(self, tenant: str, data: bytes | str) -> TopologySummary:
        """Check and store a topology document (replacing the tenant's current one)."""
        self._registry.tenant(tenant)
        return self._store(tenant, topology_from_json(data))

    def import_reference(
        self,
        tenant: str,
        network: str,
        *,
        attach_sites: bool = True,
        strategy: Strategy = "load_share",
    ) -> TopologySummary:
        """Store one of pandapower's reference grids as the tenant's topology, with the
        tenant's registered households placed on its connection points (in site-id order,
        deterministically: see :mod:`gridhub.grid.households`)."""
        from gridhub.grid.topology_import import reference_network  # pandapower: slow import

        self._registry.tenant(tenant)
        topology = reference_network(network)
        if attach_sites:
            sites = sorted(s.id for s in self._registry.sites(tenant))
            if sites:
                topology = attach_households(topology, sites, strategy=strategy)
        return self._store(tenant, topology)

    def _store(self, tenant: str, topology: Topology) -> TopologySummary:
        if not topology.nodes:
            raise InvalidRequest("a topology needs at least one node")
        document = json.dumps(topology_to_json(topology), separators=(",", ":"))
        with self._lock:
            self._catalog.put_topology_document(tenant, topology.name, document)
            self._cache[tenant] = topology
        return self.summary(tenant, topology)

    def summary(self, tenant: str, topology: Topology) -> TopologySummary:
        known_sites = {s.id for s in self._registry.sites(tenant)}
        known_devices = {d.hardware_id for d in self._registry.devices(tenant)}
        return TopologySummary(
            name=topology.name,
            nodes=len(topology.nodes),
            connection_points=len(topology.nodes_of_kind(NodeKind.CONNECTION_POINT)),
            lines=len(topology.lines),
            transformers=len(topology.transformers),
            switches=len(topology.switches),
            sites=len(topology.sites),
            devices=len(topology.devices),
            unknown_sites=tuple(s.site_id for s in topology.sites if s.site_id not in known_sites)[
                :MAX_LISTED
            ],
            unknown_devices=tuple(
                d.hardware_id for d in topology.devices if d.hardware_id not in known_devices
            )[:MAX_LISTED],
        )
