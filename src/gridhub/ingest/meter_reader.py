"""``gridhub serve`` reading meter ports itself: P1 or IEC 62056-21 over serial or TCP (issue #6).

For a hub that sits next to the meters (a small box with a P1 cable, or a LAN with
P1-to-Ethernet dongles or ser2net), no gateway process and no broker are needed: a
:class:`MeterReader` thread per configured port opens it with the gateway's sources
(:mod:`gridhub.gateway.sources`), cuts the byte stream into telegrams with the gateway's framers,
parses them with the same adapters as ``POST .../telegrams/{protocol}`` and submits the canonical
messages to the pipeline. Telegrams and lines that cannot be read become dead letters with their
reason and bytes (source ``p1:<port>`` / ``iec62056:<port>``), as over HTTP.

A port that fails (cable pulled, dongle rebooted, the TCP peer closed) is reopened with a back-off
of 1 s doubling to 60 s; a ``file://`` source ends at its end. There is no outbox: what the meter
sends while the hub is down is lost, as with any live reading of a P1 port (use ``gridhub
gateway`` where that matters).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from gridhub.adapters.dsmr_p1 import parse_telegram
from gridhub.adapters.iec62056 import parse_readout
from gridhub.adapters.obis import OBIS_CUSTOM_IDENTIFIERS, ObisMessage, ObisRejection
from gridhub.config import MeterSourceSettings
from gridhub.domain.registry import check_timezone
from gridhub.domain.rejections import RejectReason
from gridhub.domain.validation import check_hardware_id
from gridhub.errors import ConfigError, GridhubError, InvalidRequest, RejectedMessage
from gridhub.gateway.framing import Frame, make_framer
from gridhub.gateway.sources import ModeCPoller, Source, check_source, open_source
from gridhub.ingest.pipeline import Pipeline, Receipt
from gridhub.ingest.validate import Envelope
from gridhub.storage.registry import Registry

__all__ = ["MeterReader", "MeterReaderCounters"]

log = logging.getLogger(__name__)

_DEFAULTS = {"dsmr": (115_200, "8N1"), "iec62056": (300, "7E1")}
_SOURCE_PREFIX = {"dsmr": "p1", "iec62056": "iec62056"}
_MAX_BACKOFF_S = 60.0


class MeterReaderCounters:
    """What one reader did; read by tests and the status log."""

    __slots__ = ("lost", "messages", "opens", "rejected", "source_failures", "telegrams")

    def __init__(self) -> None:
        self.telegrams = 0
        self.messages = 0
        self.rejected = 0
        self.opens = 0
        self.source_failures = 0
        self.lost = 0  # messages whose store write failed (a live port cannot resend them)


class MeterReader:
    """One meter port feeding the pipeline, in its own daemon thread."""

    def __init__(self, config: MeterSourceSettings, pipeline: Pipeline, registry: Registry) -> None:
        """Check the configuration now, so a bad one stops ``serve`` at start-up
        (:class:`~gridhub.errors.ConfigError`)."""
        baud, mode = _DEFAULTS[config.protocol]
        try:
            check_source(config.url, config.serial_mode or mode)
            check_timezone(config.zone)
            if config.hardware_id is not None:
                check_hardware_id(config.hardware_id)
            registry.tenant(config.tenant)
        except (ValueError, InvalidRequest) as exc:
            raise ConfigError(f"meter source {config.url}: {exc}") from None
        except RejectedMessage as exc:
            raise ConfigError(f"meter source {config.url}: {exc.detail}") from None
        except GridhubError as exc:  # NotFound: the tenant does not exist
            raise ConfigError(f"meter source {config.url}: {exc}") from None
        self.config = config
        self._pipeline, self._registry = pipeline, registry
        self._baud, self._mode = config.baud or baud, config.serial_mode or mode
        self._prefix = _SOURCE_PREFIX[config.protocol]
        self.counters = MeterReaderCounters()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._registry.ensure_identifiers(self.config.tenant, OBIS_CUSTOM_IDENTIFIERS)
        self._thread = threading.Thread(
            target=self._run, name=f"meter-{self.config.url[:40]}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- the reader thread ----------------------------------------------------------------------

    def _open(self) -> Source:
        cfg = self.config
        source = open_source(cfg.url, baud=self._baud, serial_mode=self._mode)
        if cfg.protocol == "iec62056" and cfg.iec_poll_s > 0:
            return ModeCPoller(source, cfg.iec_poll_s, initial_baud=self._baud)
        return source

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                source = self._open()
            except OSError as exc:
                self.counters.source_failures += 1
                log.warning("cannot open %s: %s; retrying in %g s", self.config.url, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            self.counters.opens += 1
            log.info("reading meter port %s (%s)", source.name, self.config.protocol)
            backoff = 1.0
            try:
                ended = self._pump(source)
            except Exception:  # a bug: log it, and try again after the back-off
                log.exception("meter reader %s failed", self.config.url)
                ended = False
            finally:
                source.close()
            if ended:
                return
            self._stop.wait(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)

    def _pump(self, source: Source) -> bool:
        """Read until stopped or the input ends (True), or the port fails (False: reopen)."""
        framer = make_framer(self.config.protocol)
        while not self._stop.is_set():
            try:
                data = source.read(0.5)
            except EOFError as exc:
                self._handle(framer.flush(), source.name)
                if self.config.url.startswith("file://"):
                    return True
                log.warning("%s; reconnecting", exc)
                return False
            except OSError as exc:
                self.counters.source_failures += 1
                self._handle(framer.flush(), source.name)
                log.warning("reading %s failed: %s; reopening", source.name, exc)
                return False
            if data:
                self._handle(framer.feed(data), source.name)
        return True

    def _handle(self, frames: list[Frame], port: str) -> None:
        where = f"{self._prefix}:{port}"[:200]
        envelopes: list[Envelope] = []
        for frame in frames:
            received_us = time.time_ns() // 1000
            if frame.kind == "noise":
                self.counters.rejected += 1
                problem = (RejectReason.MALFORMED_TELEGRAM, frame.detail or "not a telegram")
                envelopes.append(
                    Envelope(where, frame.data, self.config.tenant, received_us, problem=problem)
                )
                continue
            self.counters.telegrams += 1
            envelopes.extend(self._parse(frame.data, where, received_us))
        if not envelopes:
            return
        try:
            self._pipeline.submit(envelopes, self._confirmed, timeout=None)
        except GridhubError as exc:  # shutting down
            log.warning("%d messages from %s not queued: %s", len(envelopes), port, exc)

    def _confirmed(self, receipt: Receipt) -> None:
        """A meter port has no sender to tell: a write that failed is logged and counted."""
        if receipt.error is not None:
            self.counters.lost += len(receipt.rejected) + receipt.accepted
            log.error("telegrams from %s not stored: %s", self.config.url, receipt.error)

    def _parse(self, raw: bytes, where: str, received_us: int) -> list[Envelope]:
        cfg, tenant = self.config, self.config.tenant
        now = datetime.fromtimestamp(received_us / 1e6, UTC)
        messages: list[ObisMessage]
        rejections: list[ObisRejection]
        if cfg.protocol == "dsmr":
            p1 = parse_telegram(raw, hardware_id=cfg.hardware_id, zone=cfg.zone, received_at=now)
            messages, rejections = p1.messages, p1.rejections
        else:
            iec = parse_readout(raw, hardware_id=cfg.hardware_id, zone=cfg.zone, received_at=now)
            messages, rejections = iec.messages, iec.rejections
        out = [Envelope(where, m.payload, tenant, received_us) for m in messages]
        self.counters.messages += len(out)
        for rejection in rejections:
            self.counters.rejected += 1
            line_where = where if rejection.line is None else f"{where}:{rejection.line}"
            problem = (RejectReason(rejection.reason), rejection.detail)
            out.append(Envelope(line_where, rejection.raw, tenant, received_us, problem=problem))
        if not out:
            self.counters.rejected += 1
            problem = (RejectReason.MALFORMED_TELEGRAM, "no meter data in this telegram")
            out.append(Envelope(where, raw, tenant, received_us, problem=problem))
        return out
