"""Per-device MQTT credentials: Mosquitto password and ACL files (issue #6).

Each device gets the username ``<tenant>/<hardwareId>`` and a random password, shown once; the
catalog keeps only its hash, which is exactly the line Mosquitto's ``password_file`` needs, so
the files can be written again at any time without knowing a password. The hub's own subscriber
has a credential of its own (role ``hub``).

The password hash is Mosquitto 2.x's ``$7$`` format, what ``mosquitto_passwd`` writes:
``$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512(password, salt)>`` with a 12-byte
salt and a 64-byte digest (mosquitto ``common/password_mosq.c``; checked against a real
Mosquitto by ``tests/integration/test_mqtt_auth.py``).

The ACL file names every user explicitly (``user`` blocks, no ``pattern`` lines): a device may
publish only to ``gridhub/<tenant>/<hardwareId>/events`` and read only ``.../commands``; the hub
reads every events topic and writes every commands topic. Explicit blocks do not depend on
``%u``/``%c`` substitution: a pattern applies to every user (the hub included), Mosquitto denies
every client whose username or client id holds ``+`` or ``#`` once any pattern exists, and our
``<tenant>/<hardwareId>`` would fill two topic levels where ``%u`` stands. Injection is prevented by
the names themselves: a tenant id is a lowercase slug and a hardware id is
``[A-Za-z0-9][A-Za-z0-9._@-]*`` here, so neither can hold an MQTT wildcard (``+``, ``#``), a topic
separator beyond the one we put, whitespace, a line break (a new ACL directive) or ``:`` (the
password file's separator; hardware ids that contain one cannot get an MQTT credential). The broker
is also told ``use_username_as_clientid true``, so a device cannot take over another device's
session by choosing its client id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gridhub.domain.mqtt_credentials import MqttCredential
from gridhub.domain.registry import check_tenant_id
from gridhub.errors import InvalidRequest

__all__ = [
    "HASH_ITERATIONS",
    "HUB_USERNAME",
    "AuthFiles",
    "MqttCredential",
    "acl_file",
    "check_username",
    "device_username",
    "hash_password",
    "new_password",
    "password_file",
    "verify_password",
    "write_auth_files",
]

#: PBKDF2 rounds. mosquitto_passwd's default is 101 (2.0) or 1000 (2.1); more makes a stolen
#: password file slower to attack and costs the broker a few milliseconds per CONNECT.
HASH_ITERATIONS = 20_000
_SALT_BYTES = 12
#: The hub subscriber's username (no ``/``, so it can never be a device's).
HUB_USERNAME = "gridhub-hub"
_HARDWARE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
_HUB_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HASH_RE = re.compile(r"\$7\$(\d{1,9})\$([A-Za-z0-9+/=]{4,})\$([A-Za-z0-9+/=]{4,})")


def device_username(tenant: str, hardware_id: str) -> str:
    """``<tenant>/<hardwareId>``; refuses ids that could not be a safe MQTT username."""
    check_tenant_id(tenant)
    if not _HARDWARE_ID_RE.fullmatch(hardware_id):
        raise InvalidRequest(
            f"hardwareId {hardware_id[:80]!r} cannot get an MQTT credential: it must be 1..128 "
            "letters, digits or . _ @ - (no ':', the separator of Mosquitto's password file)"
        )
    return f"{tenant}/{hardware_id}"


def check_username(username: str) -> str:
    """A hub username (configurable): letters, digits, ``. _ -``; no ``/`` (devices have one)."""
    if not _HUB_NAME_RE.fullmatch(username):
        raise InvalidRequest(
            f"MQTT username {username[:80]!r} must be 1..64 letters, digits or . _ - (no '/')"
        )
    return username


def new_password() -> str:
    """A random password: 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


def hash_password(
    password: str, *, iterations: int = HASH_ITERATIONS, salt: bytes | None = None
) -> str:
    """Mosquitto's ``$7$`` PBKDF2-SHA512 hash of ``password``, as ``mosquitto_passwd`` writes it."""
    if not 1 <= iterations <= 10_000_000:
        raise ValueError(f"iterations must be 1..10 000 000, got {iterations}")
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (constant-time comparison)."""
    match = _HASH_RE.fullmatch(encoded)
    if match is None:
        return False
    iterations = int(match.group(1))
    salt, expected = base64.b64decode(match.group(2)), base64.b64decode(match.group(3))
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(digest, expected)


def password_file(credentials: Iterable[MqttCredential]) -> str:
    """mosquitto ``password_file`` content: ``username:hash`` lines, sorted."""
    lines = []
    for cred in sorted(credentials, key=lambda c: c.username):
        _check_line_safe(cred)
        lines.append(f"{cred.username}:{cred.hash}")
    return "\n".join(lines) + ("\n" if lines else "")


def acl_file(credentials: Iterable[MqttCredential]) -> str:
    """mosquitto ``acl_file`` content: one explicit ``user`` block per credential."""
    out = [
        "# Written by gridhub (gridhub mqtt credentials); regenerated on every change.",
        "# Anything not granted here is denied.",
    ]
    for cred in sorted(credentials, key=lambda c: (c.role != "hub", c.username)):
        _check_line_safe(cred)
        out.append("")
        out.append(f"user {cred.username}")
        if cred.role == "hub":
            out += [
                "topic read gridhub/+/+/events",
                "topic write gridhub/+/+/commands",
                "topic write gridhub/+/subscriptions/+",  # subscription notifications (Q3)
            ]
        else:
            out += [f"topic write {cred.events_topic}", f"topic read {cred.commands_topic}"]
    return "\n".join(out) + "\n"


def _check_line_safe(cred: MqttCredential) -> None:
    """Last line of defence against a catalog row that would inject into the files."""
    if cred.role == "hub":
        check_username(cred.username)
    else:
        if cred.tenant is None or cred.hardware_id is None:
            raise InvalidRequest(f"device credential {cred.username!r} without tenant/hardwareId")
        if device_username(cred.tenant, cred.hardware_id) != cred.username:
            raise InvalidRequest(f"credential {cred.username!r} does not match its device")
    if not _HASH_RE.fullmatch(cred.hash):
        raise InvalidRequest(f"credential {cred.username!r} has no valid $7$ hash")


@dataclass(frozen=True, slots=True)
class AuthFiles:
    """Where the password and ACL files were written."""

    password_file: Path
    acl_file: Path


def write_auth_files(directory: Path, credentials: Iterable[MqttCredential]) -> AuthFiles:
    """Write ``mosquitto.passwd`` and ``mosquitto.acl`` into ``directory`` atomically (0600).

    Each file is written to a temporary name and renamed, so a broker reloading at that moment
    reads the old file or the new one, never half of one.
    """
    creds = list(credentials)
    directory.mkdir(parents=True, exist_ok=True)
    files = AuthFiles(directory / "mosquitto.passwd", directory / "mosquitto.acl")
    _atomic_write(files.password_file, password_file(creds))
    _atomic_write(files.acl_file, acl_file(creds))
    return files


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
