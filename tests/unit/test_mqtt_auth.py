"""MQTT credentials: the $7$ hash format, usernames that cannot inject, the rendered files."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gridhub.access.mqtt_auth import (
    MqttCredential,
    acl_file,
    check_username,
    device_username,
    hash_password,
    password_file,
    verify_password,
    write_auth_files,
)
from gridhub.errors import InvalidRequest
from helpers import require

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def device(tenant: str, hw: str, password: str = "secret") -> MqttCredential:
    return MqttCredential(
        f"{tenant}/{hw}", "device", hash_password(password, iterations=10), NOW, NOW, tenant, hw
    )


def test_hash_round_trip_and_format() -> None:
    encoded = hash_password("correct horse", iterations=101, salt=b"\x01" * 12)
    prefix, iterations, salt, digest = encoded.split("$")[1:]
    assert (prefix, iterations, salt) == ("7", "101", "AQEBAQEBAQEBAQEB")
    assert len(digest) == 88  # base64 of a 64-byte SHA-512 digest
    assert verify_password("correct horse", encoded)
    assert not verify_password("correct horsE", encoded)
    assert not verify_password("x", "$6$abc$def")  # the old SHA-512 format is not ours
    assert hash_password("a") != hash_password("a")  # a fresh salt each time


def test_hashes_of_the_real_mosquitto_passwd_verify(tmp_path: Path) -> None:
    """A hash written by mosquitto_passwd verifies here: same format, same derivation."""
    binary = shutil.which("mosquitto_passwd")
    require(binary is not None, "mosquitto_passwd is not installed (package mosquitto)")
    assert binary is not None
    path = tmp_path / "passwd"
    subprocess.run([binary, "-c", "-b", str(path), "meter", "s3cret pass"], check=True)
    user, encoded = path.read_text().strip().split(":", 1)
    assert user == "meter" and encoded.startswith("$7$")
    assert verify_password("s3cret pass", encoded)
    assert not verify_password("s3cret pas", encoded)


@pytest.mark.parametrize(
    "hardware_id",
    ["a+b", "a#", "a/b", "a b", "a\nuser hub", "aa:bb:cc", "", "-x", "%u", "x" * 129],
)
def test_usernames_cannot_carry_wildcards_separators_or_lines(hardware_id: str) -> None:
    with pytest.raises(InvalidRequest):
        device_username("pilot", hardware_id)


def test_usernames() -> None:
    assert device_username("pilot", "hh001-meter.A@2") == "pilot/hh001-meter.A@2"
    with pytest.raises(InvalidRequest):
        device_username("Pilot", "m1")  # tenant ids are lowercase slugs
    assert check_username("gridhub-hub") == "gridhub-hub"
    for bad in ("a/b", "a b", "", "a:b"):
        with pytest.raises(InvalidRequest):
            check_username(bad)


def test_files_name_every_user_explicitly(tmp_path: Path) -> None:
    hub = MqttCredential("gridhub-hub", "hub", hash_password("h", iterations=10), NOW, NOW)
    creds = [device("pilot", "m2"), hub, device("pilot", "m1")]
    passwd = password_file(creds)
    assert [line.split(":")[0] for line in passwd.splitlines()] == [
        "gridhub-hub",
        "pilot/m1",
        "pilot/m2",
    ]
    acl = acl_file(creds)
    assert "pattern" not in acl and "%" not in acl
    blocks = acl.split("\n\n")[1:]
    assert blocks[0].splitlines() == [
        "user gridhub-hub",
        "topic read gridhub/+/+/events",
        "topic write gridhub/+/+/commands",
        "topic write gridhub/+/subscriptions/+",
    ]
    assert blocks[1].splitlines() == [
        "user pilot/m1",
        "topic write gridhub/pilot/m1/events",
        "topic read gridhub/pilot/m1/commands",
    ]
    files = write_auth_files(tmp_path / "mqtt", creds)
    assert files.password_file.read_text() == passwd
    assert files.acl_file.stat().st_mode & 0o777 == 0o600
    # written through temporary files that are renamed: none is left behind
    assert sorted(p.name for p in (tmp_path / "mqtt").iterdir()) == [
        "mosquitto.acl",
        "mosquitto.passwd",
    ]


def test_a_tampered_row_is_refused_not_written() -> None:
    bad = MqttCredential(
        "pilot/m1", "device", hash_password("x", iterations=10), NOW, NOW, "pilot", "m1\n#"
    )
    with pytest.raises(InvalidRequest):
        acl_file([bad])
    mismatched = MqttCredential(
        "pilot/m2", "device", hash_password("x", iterations=10), NOW, NOW, "pilot", "m1"
    )
    with pytest.raises(InvalidRequest):
        password_file([mismatched])
    no_hash = MqttCredential("pilot/m1", "device", "plain", NOW, NOW, "pilot", "m1")
    with pytest.raises(InvalidRequest):
        password_file([no_hash])
