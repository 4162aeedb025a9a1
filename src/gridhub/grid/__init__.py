"""Grid services (G1–G10) and the topology they run on, as convert → solve → write back.

``topology_json`` and ``topology_import`` convert a grid description (a JSON document, a
pandapower network) into :class:`gridhub.domain.topology.Topology` and back to pandapower for
solving; ``topology_graph`` explains loops and oddities; ``households`` places the demo's sites.
``losses`` (G4), ``estimation`` with ``estimation_inputs`` (G5), ``reconfiguration`` (G6) and
``forecast`` (G10) are services: topology + readings in, frozen results out
(docs/grid-services-estimation.md). Importing this package is cheap: pandapower (seconds to
import) is loaded only by the functions that need it.
"""
