"""Settings refuse combinations that would be unsafe or break the hub at run time."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gridhub.config import Settings


def test_an_embedded_broker_off_loopback_needs_passwords(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="without passwords"):
        Settings(data_dir=tmp_path, mqtt_listen_host="0.0.0.0")
    Settings(data_dir=tmp_path, mqtt_listen_host="0.0.0.0", mqtt_auth=True)
    Settings(data_dir=tmp_path, mqtt_listen_host="127.0.0.1")
    # an external broker is configured on its own side
    Settings(data_dir=tmp_path, mqtt_url="mqtt://broker:1883", mqtt_listen_host="0.0.0.0")


def test_the_command_publisher_needs_its_own_broker_user(tmp_path: Path) -> None:
    external = {"data_dir": tmp_path, "mqtt_url": "mqtts://broker:8883"}
    with pytest.raises(ValidationError, match="mqtt_out_username"):
        Settings(**external, mqtt_username="hub", mqtt_password="x")
    with pytest.raises(ValidationError, match="go together"):
        Settings(**external, mqtt_username="hub", mqtt_password="x", mqtt_out_username="out")
    Settings(
        **external,
        mqtt_username="hub",
        mqtt_password="x",
        mqtt_out_username="out",
        mqtt_out_password="y",
    )
