"""The breadth-first walk behind :class:`~gridhub.domain.topology.Topology`'s queries.

A plain graph walk over node and branch ids: which nodes and branches conduct, and which nodes
are the supply roots, is the topology's to decide (see :mod:`gridhub.domain.topology`). The walk
keeps, for every node it reaches, the node and branch it was reached through, so the queries
(the path up to the supply root, everything below a node, the branches closing loops) are
lookups and short walks along that tree.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Walk", "walk"]


@dataclass(frozen=True, slots=True)
class Walk:
    """The breadth-first walk from the supply roots over conducting branches."""

    roots: tuple[str, ...]
    parent: dict[str, tuple[str, str]]  # node -> (parent node, branch id)
    children: dict[str, list[str]]
    depth: dict[str, int]
    chords: list[tuple[str, str, str]]  # (branch id, node, node): branches closing loops

    def path_up(self, node_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(nodes, branch ids) from ``node_id`` up to its supply root; just the node when the
        walk did not reach it."""
        nodes, edges = [node_id], []
        while (up := self.parent.get(nodes[-1])) is not None:
            nodes.append(up[0])
            edges.append(up[1])
        return tuple(nodes), tuple(edges)

    def below(self, node_id: str) -> tuple[str, ...]:
        """``node_id`` and every node reached through it, in breadth-first order."""
        found, queue = [node_id], deque([node_id])
        while queue:
            for child in self.children.get(queue.popleft(), ()):
                found.append(child)
                queue.append(child)
        return tuple(found)


def walk(live: set[str], branches: Iterable[tuple[str, str, str]], roots: Iterable[str]) -> Walk:
    """Walk breadth-first from ``roots`` (in order, repeats ignored) over ``branches``.

    ``live`` are the nodes that may be walked through; ``branches`` are the conducting ones, as
    ``(branch id, node, node)`` between two live nodes, in the order they are to be tried.
    """
    adjacency: dict[str, list[tuple[str, str]]] = {node_id: [] for node_id in live}
    for branch_id, a, b in branches:
        adjacency[a].append((b, branch_id))
        adjacency[b].append((a, branch_id))
    start = list(dict.fromkeys(roots))
    parent: dict[str, tuple[str, str]] = {}
    children: dict[str, list[str]] = {node_id: [] for node_id in live}
    depth = dict.fromkeys(start, 0)
    chords: list[tuple[str, str, str]] = []
    used: set[str] = set()
    queue = deque(start)
    while queue:
        here = queue.popleft()
        for there, branch_id in adjacency[here]:
            if branch_id in used:
                continue
            used.add(branch_id)
            if there in depth:
                chords.append((branch_id, here, there))
                continue
            parent[there] = (here, branch_id)
            children[here].append(there)
            depth[there] = depth[here] + 1
            queue.append(there)
    return Walk(tuple(start), parent, children, depth, chords)
