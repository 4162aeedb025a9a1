"""Cutting a byte stream into telegrams: DSMR P1 and IEC 62056-21 mode C.

A serial port or a ser2net socket delivers bytes in arbitrary pieces, and a gateway usually
starts listening in the middle of a telegram. A framer is fed those pieces and returns whole
frames, which the adapters then parse and check (CRC, BCC): framing only finds boundaries.

* DSMR: from an identification line ``/XXX5...`` to the end line ``!`` + CRC (4 hex digits,
  none in DSMR 2.2/3) and its line end.
* IEC 62056-21 mode C: from the identification line ``/XXXZ...`` (or ``STX`` when a reader
  strips it) to ``ETX`` and the block check character after it. Bytes between the
  identification line and ``STX`` (our own acknowledgement echoed by an optical head, noise
  around a baud-rate change) are dropped, and an echoed request ``/?...!`` is skipped.

Bytes before the first telegram are the tail of one we joined late: skipped, not rejected.
Anything else that is not a telegram comes back as a :class:`Frame` of kind ``noise`` with the
reason, for the rejects file — a truncated telegram (a new one starts before its end), bytes
between telegrams, a telegram longer than the adapter's limit — never dropped in silence.
"""

from __future__ import annotations

import re
from typing import Literal, NamedTuple, Protocol

from gridhub.adapters.dsmr_p1 import MAX_TELEGRAM_BYTES
from gridhub.adapters.iec62056 import ETX, MAX_READOUT_BYTES, STX

__all__ = ["DsmrFramer", "Frame", "Framer", "IecFramer", "make_framer"]

_STX, _ETX = bytes([STX]), bytes([ETX])
_WHITESPACE = b" \t\r\n\x00"
_DSMR_END = re.compile(rb"\n!([0-9A-Fa-f]{4})?\r?\n")
_HEADER = re.compile(rb"/[A-Za-z]{3}[0-9][\x20-\x7e]{1,96}\r?\n")
_ECHO = re.compile(rb"/\?[^\r\n]{0,40}!\r?\n")  # a mode C request "/?!" or "/?<address>!"


class Frame(NamedTuple):
    kind: Literal["telegram", "noise"]
    data: bytes
    detail: str = ""


class Framer(Protocol):
    skipped: int  # bytes skipped before the first telegram

    def feed(self, data: bytes) -> list[Frame]: ...

    def flush(self) -> list[Frame]: ...


def _header_at(buf: bytearray, begin: int) -> int:
    """Where the next identification line starts, at or after ``begin``, or -1.

    A ``/`` at the start of a line, or anywhere a whole header ``/XXXZ...`` CR LF follows: a
    telegram cut off mid-line by a serial glitch must not swallow the next one.
    """
    at = begin
    while True:
        at = buf.find(b"/", at)
        if at < 0 or at == 0 or buf[at - 1 : at] == b"\n" or _HEADER.match(buf, at):
            return at
        at += 1


class _Base:
    max_bytes: int

    def __init__(self) -> None:
        self._buf = bytearray()
        self._synced = False  # a telegram start has been seen
        self.skipped = 0

    def _noise(self, data: bytes, detail: str, out: list[Frame]) -> None:
        if not data.strip(_WHITESPACE):
            return
        if self._synced:
            out.append(Frame("noise", bytes(data), detail))
        else:
            self.skipped += len(data)

    def flush(self) -> list[Frame]:
        """The end of the input: what is left is an incomplete telegram or noise."""
        out: list[Frame] = []
        self._synced = self._synced or self._start() == 0
        self._noise(bytes(self._buf), "incomplete telegram at the end of the input", out)
        self._buf.clear()
        return out

    def _start(self) -> int:
        raise NotImplementedError


class DsmrFramer(_Base):
    """``/`` … ``!XXXX`` CR LF."""

    def __init__(self, max_bytes: int = MAX_TELEGRAM_BYTES) -> None:
        super().__init__()
        self.max_bytes = max_bytes

    def _start(self) -> int:
        return _header_at(self._buf, 0)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out: list[Frame] = []
        while True:
            start = self._start()
            if start < 0:
                if len(self._buf) > self.max_bytes:  # a long run without any telegram
                    self._noise(bytes(self._buf), "bytes outside a telegram", out)
                    self._buf.clear()
                return out
            if start > 0:
                self._noise(bytes(self._buf[:start]), "bytes outside a telegram", out)
                del self._buf[:start]
            self._synced = True
            end = _DSMR_END.search(self._buf, 1)
            restart = _header_at(self._buf, 1)
            if restart > 0 and (end is None or restart < end.start()):
                why = "incomplete telegram: the next one began before its end line '!'"
                out.append(Frame("noise", bytes(self._buf[:restart]), why))
                del self._buf[:restart]
                continue
            if end is None:
                if len(self._buf) > self.max_bytes:
                    why = f"no end line '!' within {self.max_bytes} bytes"
                    out.append(Frame("noise", bytes(self._buf), why))
                    self._buf.clear()
                return out
            out.append(Frame("telegram", bytes(self._buf[: end.end()])))
            del self._buf[: end.end()]


class IecFramer(_Base):
    """``/XXXZ...`` CR LF ``STX`` … ``ETX`` BCC (or from ``STX`` without identification)."""

    def __init__(self, max_bytes: int = MAX_READOUT_BYTES) -> None:
        super().__init__()
        self.max_bytes = max_bytes

    def _start(self) -> int:
        starts = [at for at in (_header_at(self._buf, 0), self._buf.find(_STX)) if at >= 0]
        return min(starts, default=-1)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out: list[Frame] = []
        while True:
            start = self._start()
            if start < 0:
                if len(self._buf) > self.max_bytes:
                    self._noise(bytes(self._buf), "bytes outside a readout", out)
                    self._buf.clear()
                return out
            if start > 0:
                self._noise(bytes(self._buf[:start]), "bytes outside a readout", out)
                del self._buf[:start]
            echo = _ECHO.match(self._buf)
            if echo is not None:  # our own request, echoed by a half-duplex optical head
                del self._buf[: echo.end()]
                continue
            if self._buf[:1] == b"/" and b"\n" not in self._buf and len(self._buf) < 80:
                return out  # the identification line is still arriving
            self._synced = True
            if not self._take(out):
                return out

    def _take(self, out: list[Frame]) -> bool:
        """Consume the readout (or noise) at the start of the buffer; ``False``: wait for more."""
        buf = self._buf
        header, body_at = b"", 0
        if buf[:1] == b"/":
            line_end = buf.find(b"\n")
            if line_end < 0:
                out.append(Frame("noise", bytes(buf), "identification line without its end"))
                buf.clear()
                return False
            header = bytes(buf[: line_end + 1])
            body_at = buf.find(_STX, line_end + 1)
            restart = _header_at(buf, 1)
            if restart > 0 and (body_at < 0 or restart < body_at):
                why = "identification line without a data message"
                out.append(Frame("noise", bytes(buf[:restart]), why))
                del buf[:restart]
                return True
        etx = buf.find(_ETX, body_at) if body_at >= 0 else -1
        if etx < 0 or etx + 1 >= len(buf):  # not yet whole
            if len(buf) > self.max_bytes:
                why = f"no ETX and BCC within {self.max_bytes} bytes"
                out.append(Frame("noise", bytes(buf), why))
                buf.clear()
            return False
        out.append(Frame("telegram", header + bytes(buf[body_at : etx + 2])))
        del buf[: etx + 2]
        return True


def make_framer(protocol: str) -> DsmrFramer | IecFramer:
    if protocol == "dsmr":
        return DsmrFramer()
    if protocol == "iec62056":
        return IecFramer()
    raise ValueError(f"protocol is dsmr or iec62056, not {protocol!r}")
