"""Market simulator (S2, seed 003): a population of clients and retailer platforms around a
running hub, and a DSO driving requests of each type at a rate.

Set-up (over the hub's HTTP API, as an operator would): the tenant, N clients (a site with a
meter and a smart plug each, a day of hourly register readings for billing, and a customer
stakeholder tied to the site), R retailers — each a stakeholder of kind retailer whose platform
is a real webhook server (:class:`~gridhub.sim.market_rp.RetailerPlatform`) registered with the
hub — and a supply contract per client with a retailer, round-robin (who supplies whom is the
access layer's contracts: the market hub has no other source). Then requests go out at their
rates; each
picks its clients at random: 10 % of them for tariff, load-reduction and emergency requests,
30 % for billing (seed 003), 10 % for profiles.

Latency of a request, as the DSO or retailer sees it: from just before its HTTP call until the
hub recorded it finished — for billing and profiles the HTTP answer itself (split among the
retailers whose clients were picked, all asked at once: the slowest counts); for DSO requests
the ``finished`` time of the request, i.e. every retailer's webhook answered (after its
[100, 110) ms delay), and for a load reduction every retailer's availability answer in. The
hub and the simulator share a clock (same host); a remote hub's skew would add to it.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx

from gridhub.adapters.registry_csv import to_registry_csv
from gridhub.domain.registry import Device, Site
from gridhub.services.market_reads import ENERGY_IDENTIFIER
from gridhub.sim.market_rp import RetailerPlatform

__all__ = ["KINDS", "SHARE", "MarketSimulation", "Sample", "percentile", "summarise"]

KINDS = ("billing", "profile", "tariff", "load_reduction", "disconnection", "emergency")
DRIVEN = ("billing", "profile", "tariff", "load_reduction", "emergency")  # with a rate
SHARE = {"billing": 0.3, "profile": 0.1, "tariff": 0.1, "load_reduction": 0.1, "emergency": 0.1}
FINAL = ("completed", "partial")
BULK = 5_000  # stakeholders or contracts per bulk request (well under the 1 MiB body limit)


@dataclass(frozen=True, slots=True)
class Sample:
    kind: str
    started: float  # time.time()
    latency_s: float | None  # None: failed
    status: str
    clients: int
    error: str = ""


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, round(p / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def summarise(samples: list[Sample]) -> dict[str, dict[str, float | int]]:
    out: dict[str, dict[str, float | int]] = {}
    for kind in KINDS:
        mine = [s for s in samples if s.kind == kind]
        ok = [s.latency_s for s in mine if s.latency_s is not None]
        if not mine:
            continue
        out[kind] = {
            "requests": len(mine),
            "failed": len(mine) - len(ok),
            "p50_ms": round(percentile(ok, 50) * 1000, 1) if ok else float("nan"),
            "p99_ms": round(percentile(ok, 99) * 1000, 1) if ok else float("nan"),
            "max_ms": round(max(ok) * 1000, 1) if ok else float("nan"),
        }
    return out


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass
class MarketSimulation:
    url: str
    admin_token: str  # the installation admin (creates the tenant) or the tenant's admin
    tenant: str = "market"
    clients: int = 100
    retailers: int = 1
    delay: tuple[float, float] = (0.100, 0.110)
    seed: int = 1
    answer: Literal["inline", "rest"] = "inline"
    disconnect: bool = True  # follow each load reduction with a disconnection request
    platforms: list[RetailerPlatform] = field(default_factory=list)
    log: Callable[[str], None] = lambda _m: None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._rng_lock = threading.Lock()
        self._admin = self._client(self.admin_token)
        self._dso: httpx.Client | None = None
        self._retail: dict[str, httpx.Client] = {}
        self.supplier: dict[str, str] = {}  # client site → retailer id
        self.day = (datetime.now(UTC) - timedelta(days=1)).date()
        self._seq = 0
        self._samples_extra: list[Sample] = []

    def _client(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
            limits=httpx.Limits(max_connections=64),
        )

    @staticmethod
    def _ok(resp: httpx.Response) -> Any:
        if resp.status_code >= 400:
            raise RuntimeError(
                f"{resp.request.method} {resp.request.url.path}: "
                f"{resp.status_code} {resp.text[:300]}"
            )
        return resp.json()

    @property
    def sites(self) -> list[str]:
        return [f"c{i:05d}" for i in range(self.clients)]

    @staticmethod
    def customer(site: str) -> str:
        """The customer stakeholder of a client site."""
        return f"cust-{site}"

    def _bulk(self, path: str, field_name: str, items: list[dict[str, Any]]) -> None:
        for k in range(0, len(items), BULK):
            self._ok(self._admin.post(path, json={field_name: items[k : k + BULK]}))

    # -- set-up ------------------------------------------------------------------------------------

    def setup(self, readings: bool = True) -> None:
        t = self.tenant
        if self._admin.get(f"/api/v1/tenants/{t}").status_code == 404:
            self._ok(self._admin.post("/api/v1/tenants", json={"id": t, "timezone": "UTC"}))
        sites = [Site(t, s, location=f"area-{i % 10}") for i, s in enumerate(self.sites)]
        devices = [
            d
            for s in sites
            for d in (
                Device(t, f"{s.id}-meter", "smart-meter", s.id),
                Device(t, f"{s.id}-plug", "smart-plug", s.id),
            )
        ]
        self.log(f"registering {len(sites)} clients ({len(devices)} devices)")
        self._ok(
            self._admin.post(
                f"/api/v1/tenants/{t}/devices/import",
                content=to_registry_csv(sites, devices),
                headers={"Content-Type": "text/csv"},
            )
        )
        retailers = [f"r{n + 1:02d}" for n in range(self.retailers)]
        self.log(f"adding {len(sites)} customers, {len(retailers)} retailers and their contracts")
        self._bulk(
            f"/api/v1/tenants/{t}/stakeholders/bulk",
            "stakeholders",
            [{"id": "dso", "kind": "dso", "name": "sim DSO"}]
            + [{"id": r, "kind": "retailer", "name": f"Retailer {r}"} for r in retailers]
            + [{"id": self.customer(s.id), "kind": "customer", "site": s.id} for s in sites],
        )
        dso = self._ok(
            self._admin.post(
                f"/api/v1/tenants/{t}/tokens", json={"stakeholder": "dso", "name": "sim dso"}
            )
        )
        self._dso = self._client(dso["token"])
        for n, rid in enumerate(retailers):
            platform = RetailerPlatform(
                rid, delay=self.delay, answer=self.answer, seed=self.seed, hub_url=self.url
            )
            url = platform.start()
            record = self._ok(
                self._admin.put(
                    f"/api/v1/tenants/{t}/market/retailers/{rid}",
                    json={"name": f"Retailer {n + 1}", "webhook_url": url},
                )
            )
            platform.secret = record["webhook_secret"]
            platform.token = record.get("token")
            if platform.token is None:
                raise RuntimeError(
                    f"retailer {rid} exists already without a new token; use a fresh tenant"
                )
            self._retail[rid] = self._client(platform.token)
            self.platforms.append(platform)
        start = datetime.combine(self.day - timedelta(days=1), datetime.min.time(), UTC)
        for i, site in enumerate(self.sites):
            self.supplier[site] = retailers[i % self.retailers]
        self._bulk(
            f"/api/v1/tenants/{t}/contracts/bulk",
            "contracts",
            [
                {"customer": self.customer(s), "supplier": r, "start": start.isoformat()}
                for s, r in self.supplier.items()
            ],
        )
        if readings:
            self._readings()

    def _readings(self) -> None:
        """A day of hourly register readings per client meter (what billing reads)."""
        base = datetime.combine(self.day, datetime.min.time(), UTC)
        messages = []
        for i, site in enumerate(self.sites):
            register = 1000.0 + i
            for h in range(25):
                register += 0.2 + (i % 7) * 0.05
                messages.append(
                    {
                        "type": "DeviceMeasurements",
                        "hardwareId": f"{site}-meter",
                        "request": {
                            "measurements": {ENERGY_IDENTIFIER: round(register, 3)},
                            "eventDate": (base + timedelta(hours=h)).isoformat(),
                        },
                    }
                )
        self.log(f"storing {len(messages)} register readings")
        for k in range(0, len(messages), 10_000):
            resp = self._admin.post(
                f"/api/v1/tenants/{self.tenant}/events",
                content=json.dumps(messages[k : k + 10_000]),
                headers={"Content-Type": "application/json"},
            )
            self._ok(resp)

    def close(self) -> None:
        for p in self.platforms:
            p.stop()
        for c in (self._admin, self._dso, *self._retail.values()):
            if c is not None:
                c.close()

    # -- requests ----------------------------------------------------------------------------------

    def _pick(self, share: float) -> list[str]:
        with self._rng_lock:
            n = max(1, round(self.clients * share))
            return sorted(self._rng.sample(self.sites, n))

    def _key(self, kind: str) -> str:
        with self._rng_lock:
            self._seq += 1
            return f"sim-{kind}-{self.seed}-{self._seq}-{time.time_ns()}"

    def _wait(self, request_id: str, timeout: float = 120) -> dict[str, Any]:
        assert self._dso is not None
        deadline = time.monotonic() + timeout
        pause = 0.02
        while True:
            req = self._ok(
                self._dso.get(f"/api/v1/tenants/{self.tenant}/market/requests/{request_id}")
            )
            if req["status"] in FINAL or time.monotonic() > deadline:
                return dict(req)
            # polling the DSO interface; the latency is the hub's own finish time, so backing
            # off costs no precision — polling every 20 ms would load the hub it measures
            time.sleep(pause)
            pause = min(pause * 1.5, 0.25)

    def _dso_request(self, kind: str, path: str, body: dict[str, Any], clients: int) -> Sample:
        assert self._dso is not None
        t0 = time.time()
        resp = self._dso.post(
            f"/api/v1/tenants/{self.tenant}/market/{path}",
            json=body,
            headers={"Idempotency-Key": self._key(kind)},
        )
        if resp.status_code >= 400:
            return Sample(kind, t0, None, "error", clients, f"{resp.status_code} {resp.text[:200]}")
        req = self._wait(resp.json()["id"])
        if req["status"] not in FINAL:
            return Sample(kind, t0, None, req["status"], clients, "not finished in time")
        latency = _epoch(req["finished"]) - t0
        sample = Sample(kind, t0, latency, req["status"], clients)
        if kind == "load_reduction" and self.disconnect:
            available = sorted(
                s for a in (req.get("availability") or {}).values() if a for s in a["available"]
            )
            if available:
                self._samples_extra.append(
                    self._dso_request(
                        "disconnection",
                        f"load-reductions/{req['id']}/disconnections",
                        {"sites": available, "duration_s": 900},
                        len(available),
                    )
                )
        return sample

    def _retail_request(self, kind: str, path: str, sites: list[str]) -> Sample:
        per: dict[str, list[str]] = {}
        for s in sites:
            per.setdefault(self.supplier[s], []).append(s)
        body = {
            "from": datetime.combine(self.day, datetime.min.time(), UTC).isoformat(),
            "to": datetime.combine(
                self.day + timedelta(days=1), datetime.min.time(), UTC
            ).isoformat(),
        }
        t0 = time.time()
        errors: list[str] = []

        def one(retailer: str, mine: list[str]) -> None:
            resp = self._retail[retailer].post(
                f"/api/v1/tenants/{self.tenant}/market/{path}",
                json={**body, "sites": mine},
                headers={"Idempotency-Key": self._key(kind)},
            )
            if resp.status_code >= 400:
                errors.append(f"{resp.status_code} {resp.text[:200]}")

        threads = [threading.Thread(target=one, args=item) for item in per.items()]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        latency = time.time() - t0
        if errors:
            return Sample(kind, t0, None, "error", len(sites), errors[0])
        return Sample(kind, t0, latency, "completed", len(sites))

    def request(self, kind: str) -> Sample:
        """Make one request of ``kind`` with its share of clients; return its latency."""
        sites = self._pick(SHARE[kind])
        if kind == "billing":
            return self._retail_request(kind, "billing", sites)
        if kind == "profile":
            return self._retail_request(kind, "profiles", sites)
        area = {"sites": sites}
        if kind == "tariff":
            day = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
            periods = [
                {"start": "00:00", "end": "08:00", "price": 0.031, "label": "off-peak"},
                {"start": "08:00", "end": "24:00", "price": 0.058, "label": "peak"},
            ]
            body: dict[str, Any] = {"area": area, "days": [{"day": day, "periods": periods}]}
            return self._dso_request(kind, "tariffs", body, len(sites))
        now = datetime.now(UTC)
        if kind == "load_reduction":
            body = {
                "area": area,
                "from": (now + timedelta(minutes=15)).isoformat(),
                "to": (now + timedelta(minutes=75)).isoformat(),
                "reduction_kw": 50.0,
                "answer_within_s": 30,
            }
            return self._dso_request(kind, "load-reductions", body, len(sites))
        if kind == "emergency":
            body = {
                "area": area,
                "starts_at": (now + timedelta(minutes=30)).isoformat(),
                "limit_kw": 3.0,
                "reason": "simulated feeder overload",
            }
            return self._dso_request(kind, "emergencies", body, len(sites))
        raise ValueError(f"unknown request kind {kind!r}; one of {', '.join(DRIVEN)}")

    def run(
        self,
        rates: dict[str, float],
        duration_s: float,
        on_sample: Callable[[Sample], None] | None = None,
    ) -> list[Sample]:
        """Send each kind at ``rates[kind]`` requests per minute for ``duration_s``, evenly
        spaced with a random phase; wait for the last ones; return every sample."""
        schedule: list[tuple[float, str]] = []
        for kind, per_min in rates.items():
            if kind not in DRIVEN:
                raise ValueError(f"unknown request kind {kind!r}; one of {', '.join(DRIVEN)}")
            if per_min <= 0:
                continue
            gap = 60.0 / per_min
            t = self._rng.uniform(0, gap)
            while t < duration_s:
                schedule.append((t, kind))
                t += gap
        schedule.sort()
        samples: list[Sample] = []
        self._samples_extra = []
        lock = threading.Lock()

        def go(kind: str) -> None:
            try:
                s = self.request(kind)
            except Exception as exc:  # a failed request is a sample, not the end of the run
                s = Sample(kind, time.time(), None, "error", 0, str(exc)[:200])
            with lock:
                samples.append(s)
            if on_sample is not None:
                on_sample(s)

        start = time.monotonic()
        with ThreadPoolExecutor(64, thread_name_prefix="dso-sim") as pool:
            for at, kind in schedule:
                pause = start + at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # the DSO's pace, not a wait for a condition
                pool.submit(go, kind)
        return samples + self._samples_extra
