"""The gateway: meter port → framer → adapter → outbox → MQTT (``gridhub gateway``).

Two threads. The reader opens the source, frames telegrams, parses them with the same adapters
the hub uses (:mod:`gridhub.adapters.dsmr_p1`, :mod:`gridhub.adapters.iec62056`) and appends
the canonical messages of each read to the outbox in one fsynced transaction; what cannot be
parsed goes to the rejects file. The main thread runs the forwarder, which publishes the outbox
and deletes what the broker acknowledged. They share only the outbox, so a broker outage never
slows reading the meter, and a meter that falls silent never stops the backlog from draining.

A serial port or TCP source that fails (cable pulled, ser2net restarted) is reopened with a
back-off of 1 s doubling to 60 s; a telegram cut by the failure is rejected as incomplete.
With ``once`` the gateway reads the input to its end (a file; a socket closed by its peer; a
serial port or socket silent for ``idle_timeout_s``; or ``max_telegrams`` telegrams), then
waits until the outbox is empty — at most ``drain_timeout_s``, after which it exits with
:data:`EXIT_UNDELIVERED` and the rest waits in the outbox for the next run (cron).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gridhub.adapters.dsmr_p1 import parse_telegram
from gridhub.adapters.iec62056 import parse_readout
from gridhub.adapters.obis import MALFORMED_TELEGRAM, ObisMessage, ObisRejection
from gridhub.domain.registry import check_tenant_id, check_timezone
from gridhub.domain.validation import check_hardware_id
from gridhub.errors import InvalidRequest, RejectedMessage
from gridhub.gateway.forwarder import Forwarder, default_client_id
from gridhub.gateway.framing import Frame, make_framer
from gridhub.gateway.outbox import Entry, MiB, Outbox, OutboxFull
from gridhub.gateway.rejects import BROKER_REFUSED, PARSER_ERROR, RejectsFile
from gridhub.gateway.sources import ModeCPoller, Source, check_source, open_source

log = logging.getLogger(__name__)

__all__ = ["EXIT_READ_FAILED", "EXIT_UNDELIVERED", "Gateway", "GatewayConfig", "GatewayCounters"]

EXIT_READ_FAILED = 1
"""``once``: the source could not be read (the outbox was still drained)."""
EXIT_UNDELIVERED = 3
"""``once``: messages were still waiting for their PUBACK at the drain deadline."""

_DEFAULTS = {"dsmr": (115_200, "8N1"), "iec62056": (300, "7E1")}


@dataclass
class GatewayConfig:
    source: str
    tenant: str
    protocol: str = "dsmr"
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    zone: str = "Europe/Amsterdam"
    hardware_id: str | None = None
    outbox: Path = Path("gridhub-outbox.sqlite")
    max_outbox_bytes: int = 256 * MiB
    max_outbox_messages: int = 1_000_000
    rejects: Path | None = None  # default: next to the outbox, <outbox>.rejects.jsonl
    client_id: str | None = None
    mqtt_protocol: str = "5"
    baud: int | None = None  # default per protocol: DSMR 115200, IEC 300
    serial_mode: str | None = None  # default per protocol: DSMR 8N1, IEC 7E1
    iec_poll_s: float = 0.0  # > 0: request a mode C readout this often
    once: bool = False
    max_telegrams: int | None = None
    idle_timeout_s: float = 15.0
    drain_timeout_s: float = 60.0
    status_every_s: float = 60.0
    window: int = 200

    def check(self) -> None:
        """Raise :class:`ValueError` for settings that would fail on every telegram."""
        if self.protocol not in _DEFAULTS:
            raise ValueError(f"protocol is dsmr or iec62056, not {self.protocol!r}")
        check_source(self.source, self.serial_mode or _DEFAULTS[self.protocol][1])
        if self.mqtt_protocol not in ("5", "3.1.1"):
            raise ValueError(f"MQTT protocol is 5 or 3.1.1, not {self.mqtt_protocol!r}")
        try:
            check_tenant_id(self.tenant)
            check_timezone(self.zone)
            if self.hardware_id is not None:
                check_hardware_id(self.hardware_id)
        except InvalidRequest as exc:
            raise ValueError(str(exc)) from None
        except RejectedMessage as exc:
            raise ValueError(exc.detail) from None

    @property
    def rejects_path(self) -> Path:
        return self.rejects or self.outbox.with_name(self.outbox.name + ".rejects.jsonl")


@dataclass
class GatewayCounters:
    telegrams: int = 0  # frames read as telegrams
    messages: int = 0  # canonical messages appended to the outbox
    rejected_telegrams: int = 0  # telegrams refused whole (CRC, framing, no data)
    rejected_lines: int = 0  # single lines refused in otherwise good telegrams
    noise: int = 0  # byte runs outside any telegram, and incomplete telegrams
    refused_telegrams: int = 0  # good telegrams refused because the outbox was full
    source_failures: int = 0
    started: float = field(default_factory=time.monotonic)


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        config.check()
        self.config = config
        self.counters = GatewayCounters()
        self.reading_done = threading.Event()
        self.read_failed = False
        self._full_logged = 0.0
        self.rejects = RejectsFile(config.rejects_path)
        self.outbox = Outbox(
            config.outbox,
            max_bytes=config.max_outbox_bytes,
            max_messages=config.max_outbox_messages,
        )
        try:
            self.forwarder = Forwarder(
                self.outbox,
                config.mqtt_url,
                client_id=config.client_id or default_client_id(config.hardware_id),
                protocol=config.mqtt_protocol,
                window=config.window,
                on_refused=self._broker_refused,
            )
        except BaseException:
            self.outbox.close()
            raise

    # --- the whole run -----------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> int:
        """Run until ``stop`` is set (or, with ``once``, the input is forwarded); the exit code."""
        stop = stop or threading.Event()
        cfg = self.config
        log.info(
            "gateway: %s (%s) → %s as tenant %s; outbox %s (%d messages waiting)",
            cfg.source,
            cfg.protocol,
            self.forwarder.url,
            cfg.tenant,
            cfg.outbox,
            len(self.outbox),
        )
        self.forwarder.start()
        reader = threading.Thread(
            target=self._read_loop, args=(stop,), name="gateway-reader", daemon=True
        )
        reader.start()
        try:
            code = self._forward_loop(stop)
        finally:
            stop.set()
            reader.join(15.0)
            self.forwarder.settle(2.0)
            self.log_status("stopped")
            self.forwarder.close()
            self.outbox.close()
        return code

    def _forward_loop(self, stop: threading.Event) -> int:
        cfg = self.config
        next_status = time.monotonic() + cfg.status_every_s
        drain_deadline: float | None = None
        while not stop.is_set():
            self.forwarder.step()
            now = time.monotonic()
            if cfg.once and self.reading_done.is_set():
                if len(self.outbox) == 0:
                    return EXIT_READ_FAILED if self.read_failed else 0
                if drain_deadline is None:
                    drain_deadline = now + cfg.drain_timeout_s
                elif now > drain_deadline:
                    log.error(
                        "gateway: %d messages still without PUBACK after %g s; they stay in "
                        "the outbox for the next run",
                        len(self.outbox),
                        cfg.drain_timeout_s,
                    )
                    return EXIT_UNDELIVERED
            if now >= next_status:
                self.log_status("running")
                next_status = now + cfg.status_every_s
            self.forwarder.wait(0.5)
        return 0

    def log_status(self, what: str) -> None:
        c, f = self.counters, self.forwarder
        log.info(
            "gateway %s: %d telegrams, %d messages queued, %d published, %d acknowledged; "
            "rejected %d telegrams, %d lines, %d noise; refused (outbox full) %d telegrams; "
            "outbox %d messages (%d bytes), %d in flight; broker %s",
            what,
            c.telegrams,
            c.messages,
            f.published,
            f.acked,
            c.rejected_telegrams,
            c.rejected_lines,
            c.noise,
            c.refused_telegrams,
            len(self.outbox),
            self.outbox.size_bytes,
            f.in_flight,
            "connected" if f.connected.is_set() else "disconnected",
        )

    # --- reading (the reader thread) ---------------------------------------------------------

    def _open_source(self) -> Source:
        cfg = self.config
        baud, mode = _DEFAULTS[cfg.protocol]
        source = open_source(cfg.source, baud=cfg.baud or baud, serial_mode=cfg.serial_mode or mode)
        if cfg.protocol == "iec62056" and cfg.iec_poll_s > 0:
            return ModeCPoller(source, cfg.iec_poll_s, initial_baud=cfg.baud or baud)
        return source

    def _read_loop(self, stop: threading.Event) -> None:
        backoff = 1.0
        try:
            while not stop.is_set():
                try:
                    source = self._open_source()
                except OSError as exc:
                    self.counters.source_failures += 1
                    if self.config.once:
                        log.error("cannot open %s: %s", self.config.source, exc)
                        self.read_failed = True
                        return
                    log.warning(
                        "cannot open %s: %s; retrying in %g s", self.config.source, exc, backoff
                    )
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 60.0)
                    continue
                log.info("reading %s", source.name)
                backoff = 1.0
                try:
                    ended = self._pump(source, stop)
                finally:
                    source.close()
                if ended:
                    return
                stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)
        except Exception:  # a bug: say so, and let the forwarder drain what was read
            log.exception("gateway reader failed")
            self.read_failed = True
        finally:
            self.reading_done.set()
            self.forwarder.wake()

    def _pump(self, source: Source, stop: threading.Event) -> bool:
        """Read until the input ends (``True``) or the source fails (``False``: reopen it)."""
        cfg = self.config
        framer = make_framer(cfg.protocol)
        last_data = time.monotonic()
        skipped = 0
        while not stop.is_set():
            try:
                data = source.read(0.5)
            except EOFError as exc:
                self._handle(framer.flush(), source.name)
                is_file = cfg.source.startswith("file://")
                if not is_file:
                    log.warning("%s", exc)
                return is_file or cfg.once
            except OSError as exc:
                self.counters.source_failures += 1
                self._handle(framer.flush(), source.name)  # a telegram cut short: rejected
                if cfg.once:
                    log.error("reading %s failed: %s", source.name, exc)
                    self.read_failed = True
                    return True
                log.warning("reading %s failed: %s; reopening", source.name, exc)
                return False
            now = time.monotonic()
            if data:
                last_data = now
                if not self._handle(framer.feed(data), source.name):
                    return True
            elif cfg.once and now - last_data > cfg.idle_timeout_s:
                log.info("%s silent for %g s: end of input", source.name, cfg.idle_timeout_s)
                self._handle(framer.flush(), source.name)
                return True
            if framer.skipped != skipped:
                skipped = framer.skipped
                log.info("skipped %d bytes before the first telegram (joined mid-way)", skipped)
        self._handle(framer.flush(), source.name)  # stopping: a partial telegram is recorded
        return True

    def _handle(self, frames: list[Frame], source: str) -> bool:
        """Parse frames and append their messages at once; ``False`` once ``max_telegrams``."""
        items: list[tuple[str, bytes]] = []
        telegrams = 0
        limit = self.config.max_telegrams
        more = True
        for frame in frames:
            if frame.kind == "noise":
                self.counters.noise += 1
                self.rejects.write(MALFORMED_TELEGRAM, frame.detail, frame.data, source=source)
                continue
            if limit is not None and self.counters.telegrams + telegrams >= limit:
                more = False
                break
            telegrams += 1
            items.extend(self._parse(frame.data, source))
        if limit is not None and self.counters.telegrams + telegrams >= limit:
            more = False
        self.counters.telegrams += telegrams
        if items:
            try:
                self.outbox.append(items)
            except OutboxFull as exc:
                self.counters.refused_telegrams += telegrams
                now = time.monotonic()
                if now - self._full_logged >= 60.0:
                    self._full_logged = now
                    log.error(
                        "%s; %d telegrams refused so far (this message repeats at most once "
                        "a minute)",
                        exc,
                        self.counters.refused_telegrams,
                    )
            else:
                self.counters.messages += len(items)
                self.forwarder.wake()
        return more

    def _parse(self, raw: bytes, source: str) -> list[tuple[str, bytes]]:
        cfg = self.config
        received_at = datetime.now(UTC)
        messages: list[ObisMessage]
        rejections: list[ObisRejection]
        try:
            if cfg.protocol == "dsmr":
                result = parse_telegram(
                    raw, hardware_id=cfg.hardware_id, zone=cfg.zone, received_at=received_at
                )
                messages, rejections = result.messages, result.rejections
            else:
                iec = parse_readout(
                    raw, hardware_id=cfg.hardware_id, zone=cfg.zone, received_at=received_at
                )
                messages, rejections = iec.messages, iec.rejections
        except Exception as exc:  # a bug in an adapter: keep the telegram all the same
            log.exception("could not parse a telegram from %s", source)
            self.counters.rejected_telegrams += 1
            self.rejects.write(PARSER_ERROR, repr(exc)[:500], raw, source=source)
            return []
        for rejection in rejections:
            if rejection.line is None:
                self.counters.rejected_telegrams += 1
            else:
                self.counters.rejected_lines += 1
            self.rejects.write(
                rejection.reason,
                rejection.detail,
                rejection.raw,
                source=source,
                line=rejection.line,
            )
        if not messages and not rejections:
            self.counters.rejected_telegrams += 1
            self.rejects.write(
                MALFORMED_TELEGRAM, "no meter data in this telegram", raw, source=source
            )
        return [(f"gridhub/{cfg.tenant}/{m.hardware_id}/events", m.payload) for m in messages]

    # --- the forwarder's callback --------------------------------------------------------------

    def _broker_refused(self, entry: Entry, reason: str) -> None:
        self.rejects.write(
            BROKER_REFUSED,
            f"the broker refused the message: {reason}",
            entry.payload,
            source=self.forwarder.url,
            topic=entry.topic,
        )
