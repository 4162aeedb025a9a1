"""Where telegrams come from: a serial port, a TCP socket (ser2net-style), or a file.

``--source`` is a URL:

* ``serial:///dev/ttyUSB0`` — a P1 cable or an optical head, through pyserial. DSMR 4 and 5 run
  at 115200 baud 8N1, DSMR 2.2/3 at 9600 7E1, IEC 62056-21 mode C starts at 300 baud 7E1. What
  follows ``serial://`` goes to ``serial.serial_for_url``, so ``serial://rfc2217://host:port``
  and ``serial://loop://`` work too.
* ``tcp://host:port`` — a P1-to-Ethernet gateway or ser2net in raw mode, which stream the port.
* ``file://path`` — a capture to replay (``file:///abs/path`` or ``file://relative/path``).

A source's :meth:`Source.read` waits at most ``timeout`` and returns what arrived (possibly
nothing); it raises :class:`EOFError` at the end of the input (a file read to the end, a socket
the other side closed) and :class:`OSError` when the device fails (a USB cable pulled out). The
gateway reopens a failed serial or TCP source with a back-off; a file ends the input.

:class:`ModeCPoller` turns a passive source into an IEC 62056-21 mode C reader for meters that
only answer when asked (optical D0 port): it sends the request ``/?!`` periodically, answers the
identification with the acknowledgement ``ACK 0 Z 0`` (data readout at the baud rate ``Z`` the
meter offers) and switches a serial port to that rate.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import serial

log = logging.getLogger(__name__)

__all__ = ["MODE_C_BAUDS", "FileSource", "ModeCPoller", "SerialSource", "Source", "TcpSource"]

MODE_C_BAUDS = {"0": 300, "1": 600, "2": 1200, "3": 2400, "4": 4800, "5": 9600, "6": 19200}
"""Mode C baud-rate characters ``Z`` of the identification line and the acknowledgement."""

_SERIAL_MODES = {
    "8N1": (serial.EIGHTBITS, serial.PARITY_NONE, serial.STOPBITS_ONE),
    "7E1": (serial.SEVENBITS, serial.PARITY_EVEN, serial.STOPBITS_ONE),
}
SERIAL_MODES = tuple(_SERIAL_MODES)


class Source(Protocol):
    name: str

    def read(self, timeout: float) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def set_baudrate(self, baud: int) -> None: ...

    def close(self) -> None: ...


class FileSource:
    """A capture file, read in chunks; :class:`EOFError` at its end."""

    def __init__(self, path: Path | str, chunk: int = 64 * 1024) -> None:
        self.name = f"file://{path}"
        self._file = open(path, "rb")
        self._chunk = chunk

    def read(self, timeout: float) -> bytes:
        data = self._file.read(self._chunk)
        if not data:
            raise EOFError(f"end of {self.name}")
        return data

    def write(self, data: bytes) -> None:
        log.debug("%s is read-only; %d bytes not written", self.name, len(data))

    def set_baudrate(self, baud: int) -> None:
        pass

    def close(self) -> None:
        self._file.close()


class TcpSource:
    """A TCP stream of the meter port (ser2net ``raw`` mode, P1-to-Wi-Fi/Ethernet dongles)."""

    def __init__(self, host: str, port: int, connect_timeout: float = 10.0) -> None:
        self.name = f"tcp://{host}:{port}"
        self._sock = socket.create_connection((host, port), timeout=connect_timeout)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def read(self, timeout: float) -> bytes:
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(64 * 1024)
        except TimeoutError:
            return b""
        if not data:
            raise EOFError(f"{self.name} closed the connection")
        return data

    def write(self, data: bytes) -> None:
        self._sock.settimeout(5.0)
        self._sock.sendall(data)

    def set_baudrate(self, baud: int) -> None:
        log.debug("%s: the baud rate is the TCP gateway's; not switching to %d", self.name, baud)

    def close(self) -> None:
        self._sock.close()


class SerialSource:
    """A serial port (or any pyserial URL)."""

    def __init__(self, url: str, baud: int, mode: str = "8N1") -> None:
        if mode not in _SERIAL_MODES:
            raise ValueError(f"serial mode is one of {', '.join(_SERIAL_MODES)}, not {mode!r}")
        bytesize, parity, stopbits = _SERIAL_MODES[mode]
        self.name = f"serial://{url} {baud} {mode}"
        self._port: Any = serial.serial_for_url(
            url, baudrate=baud, bytesize=bytesize, parity=parity, stopbits=stopbits, timeout=0.5
        )

    def read(self, timeout: float) -> bytes:
        self._port.timeout = timeout
        first = bytes(self._port.read(1))  # waits for the first byte, up to the timeout
        if not first:
            return b""
        waiting = int(self._port.in_waiting)
        return first + (bytes(self._port.read(waiting)) if waiting else b"")

    def write(self, data: bytes) -> None:
        self._port.write(data)
        self._port.flush()  # until transmitted: a baud-rate switch must not cut it short

    def set_baudrate(self, baud: int) -> None:
        self._port.baudrate = baud

    def close(self) -> None:
        self._port.close()


def check_source(url: str, serial_mode: str = "8N1") -> tuple[str, str]:
    """(scheme, the rest) of a ``--source`` URL; :class:`ValueError` for one it cannot be."""
    scheme, _, rest = url.partition("://")
    if not rest or scheme not in ("serial", "tcp", "file"):
        raise ValueError(f"source must be serial://, tcp:// or file://, not {url!r}")
    if scheme == "tcp":
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:  # not a number, or out of range
            port = None
        if not parts.hostname or not port:
            raise ValueError(f"a TCP source is tcp://host:port, not {url!r}")
    if serial_mode not in _SERIAL_MODES:
        raise ValueError(f"serial mode is one of {', '.join(_SERIAL_MODES)}, not {serial_mode!r}")
    return scheme, rest


def open_source(url: str, *, baud: int, serial_mode: str) -> Source:
    """The source a ``--source`` URL names; :class:`ValueError` for a URL it cannot be."""
    scheme, rest = check_source(url, serial_mode)
    if scheme == "file":
        return FileSource(rest)
    if scheme == "tcp":
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        return TcpSource(parts.hostname, parts.port)
    return SerialSource(rest, baud, serial_mode)


class ModeCPoller:
    """Ask an IEC 62056-21 meter for a mode C data readout every ``every_s`` seconds.

    Wraps a source: the framer still sees every byte read. Per request the port goes back to
    ``initial_baud`` (300 by the standard), ``/?!`` CR LF is sent, and once the identification
    line ``/XXXZ...`` has arrived, ``ACK 0 Z 0`` CR LF is sent and the port switched to the baud
    rate of ``Z``. A readout that never comes is simply requested again at the next period.
    """

    def __init__(
        self,
        source: Source,
        every_s: float,
        *,
        initial_baud: int = 300,
        address: str = "",
        switch_baud: bool = True,
    ) -> None:
        self.name = f"{source.name} (mode C, every {every_s:g} s)"
        self._source, self._every = source, every_s
        self._initial, self._switch = initial_baud, switch_baud
        self._request = f"/?{address}!\r\n".encode("ascii")
        self._next = time.monotonic()
        self._ident: bytearray | None = None  # collecting the identification line
        self.requests = 0

    def read(self, timeout: float) -> bytes:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._every
            self._source.set_baudrate(self._initial)
            self._source.write(self._request)
            self._ident = bytearray()
            self.requests += 1
        data = self._source.read(min(timeout, max(0.05, self._next - now)))
        if self._ident is not None and data:
            self._ident += data
            self._answer()
        return data

    def _answer(self) -> None:
        assert self._ident is not None
        for line in bytes(self._ident).split(b"\n")[:-1]:
            line = line.strip(b"\r")
            start = line.find(b"/")
            ident = line[start:] if start >= 0 else b""
            if len(ident) < 5 or ident.startswith(b"/?"):
                continue  # our own request, echoed
            z = chr(ident[4])
            self._ident = None
            if z not in MODE_C_BAUDS:
                log.warning(
                    "mode C: identification %r offers no baud rate; not acknowledged", ident
                )
                return
            self._source.write(b"\x060" + z.encode() + b"0\r\n")
            if self._switch:
                self._source.set_baudrate(MODE_C_BAUDS[z])
            return
        if len(self._ident) > 256:  # no identification: wait for the next request
            self._ident = None

    def write(self, data: bytes) -> None:
        self._source.write(data)

    def set_baudrate(self, baud: int) -> None:
        self._source.set_baudrate(baud)

    def close(self) -> None:
        self._source.close()
