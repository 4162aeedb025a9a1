"""Configuration: one validated object, built from the environment and an optional TOML file.

Environment variables use the prefix ``GRIDHUB_`` (``GRIDHUB_HTTP_PORT=8080``); a TOML file given
with ``--config`` (or ``GRIDHUB_CONFIG``) holds the same keys. Nothing here runs at import time:
callers build a :class:`Settings` and pass it down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class MeterSourceSettings(BaseModel):
    """One meter port ``gridhub serve`` reads itself (issue #6): ``[[meter_sources]]`` in TOML."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="serial:///dev/ttyUSB0, tcp://host:port or file://path")
    tenant: str
    protocol: Literal["dsmr", "iec62056"] = "dsmr"
    zone: str = Field("Europe/Amsterdam", description="the meter clock's time zone")
    hardware_id: str | None = Field(None, description="overrides the id in the telegram")
    baud: int | None = Field(None, ge=50, le=4_000_000, description="default per protocol")
    serial_mode: Literal["8N1", "7E1"] | None = None
    iec_poll_s: float = Field(0.0, ge=0, description="> 0: request a mode C readout this often")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GRIDHUB_", extra="forbid")

    data_dir: Path = Field(Path("gridhub-data"), description="where the DuckDB file lives")
    http_host: str = "127.0.0.1"
    http_port: int = Field(8480, ge=0, le=65535, description="0 picks a free port")
    mqtt_url: str | None = Field(
        None, description="external broker, e.g. mqtt://127.0.0.1:1883; none: embedded broker"
    )
    mqtt_client_id: str = "gridhub-ingest"
    mqtt_topic: str = "gridhub/+/+/events"
    mqtt_protocol: Literal["5", "3.1.1"] = Field(
        "5", description="5 lets the hub ask for a wide in-flight window (Receive Maximum)"
    )
    # limits (N3): every input is bounded
    max_message_bytes: int = Field(64 * 1024, ge=256, description="one canonical message")
    max_request_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="one HTTP body")
    max_batch_messages: int = Field(10_000, ge=1, description="messages in one HTTP batch")
    max_future_s: float = Field(86_400.0, ge=0, description="how far ahead an eventDate may be")
    grid_schedule: bool = Field(
        False, description="run losses, forecasts and quality periodically (grid/schedule.py)"
    )
    # the pipeline: a bounded buffer between sources and the store's batch writer
    buffer_rows: int = Field(500_000, ge=1000, description="readings held before backpressure")
    batch_rows: int = Field(50_000, ge=1, description="most readings in one store write")
    batch_delay_ms: float = Field(
        20.0, ge=0, description="longest wait to fill a batch, when 64+ submissions are waiting"
    )
    confirm_timeout_s: float = Field(30.0, gt=0, description="HTTP wait for durability")
    duckdb_checkpoint_mb: int = Field(
        128,
        ge=1,
        le=65_536,
        description="WAL size at which DuckDB folds it into the file (DuckDB's own default 16)",
    )
    compact_after_days: int = Field(
        2,
        ge=0,
        description="rewrite each local day of readings sorted by device this many days after"
        " it ends, for fast per-meter reads (storage/compaction.py); 0: never",
    )
    # devices (issue #6): broker credentials, TLS, meter ports read directly
    mqtt_auth: bool = Field(
        False, description="embedded broker: per-device passwords and ACLs (needs Mosquitto)"
    )
    mqtt_username: str | None = Field(None, description="the hub's user on an external broker")
    mqtt_password: str | None = Field(None, description="its password", repr=False)
    mqtt_out_username: str | None = Field(
        None, description="the command publisher's own user on an external broker"
    )
    mqtt_out_password: str | None = Field(None, description="its password", repr=False)
    mqtt_ca_file: Path | None = Field(None, description="CA to trust for an mqtts:// broker")
    mqtt_listen_host: str = Field("127.0.0.1", description="embedded broker's address")
    mqtt_listen_port: int = Field(0, ge=0, le=65535, description="embedded broker; 0: free")
    mqtts_port: int = Field(8883, ge=0, le=65535, description="embedded MQTT over TLS; 0: free")
    tls_cert: Path | None = Field(None, description="PEM certificate: HTTPS and MQTTS")
    tls_key: Path | None = Field(None, description="its PEM private key")
    meter_sources: list[MeterSourceSettings] = Field(
        default_factory=list, description="meter ports (P1, IEC 62056-21) read by serve"
    )
    # outbound commands (O1): time to live, timed sends, backoff between them
    command_ttl_s: float = Field(3600.0, gt=0, description="default time to live of a command")
    command_max_attempts: int = Field(5, ge=1, le=50, description="timed sends per command")
    command_retry_s: float = Field(30.0, gt=0, description="first resend delay (then doubling)")
    command_retry_max_s: float = Field(600.0, gt=0, description="longest delay between resends")
    # subscriptions (Q3): limits, webhook retries with exponential backoff
    subscription_max_per_tenant: int = Field(1000, ge=1, description="subscriptions per tenant")
    subscription_max_per_token: int = Field(100, ge=1, description="subscriptions per token")
    subscription_min_period_s: float = Field(1.0, gt=0, description="shortest periodic period")
    subscription_max_per_minute: int = Field(
        600, ge=1, description="notifications per subscription per minute; more are dropped"
    )
    subscription_max_pending: int = Field(
        10_000, ge=10, description="MQTT/webhook notifications waiting to be (re)sent"
    )
    subscription_retry_s: float = Field(2.0, gt=0, description="first webhook/MQTT retry delay")
    subscription_retry_max_s: float = Field(300.0, gt=0, description="longest retry delay")
    subscription_max_attempts: int = Field(8, ge=1, le=50, description="sends per notification")
    subscription_webhook_timeout_s: float = Field(5.0, gt=0, description="one webhook POST")
    # where webhooks (market platforms, subscriptions) may go besides public addresses
    webhook_allow: list[str] = Field(
        default_factory=list,
        description="networks (10.0.0.0/8, 127.0.0.1) and host names webhooks may go to although "
        "not public; loopback, link-local, private and metadata addresses are refused otherwise "
        "(services/webhook_guard.py)",
    )
    # market hub (O4): webhooks to retailer platforms
    market_webhook_workers: int = Field(16, ge=1, le=256, description="parallel webhook calls")
    market_webhook_timeout_s: float = Field(10.0, gt=0, le=120, description="per webhook call")
    market_webhook_attempts: int = Field(8, ge=1, le=50, description="calls per webhook at most")
    fault_injection: bool = Field(
        False, description="allow POST /api/v1/faults/* (S3: benchmarks and fault drills only)"
    )

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("mqtt://", "tcp://", "mqtts://")):
            raise ValueError("mqtt_url must look like mqtt://host:port or mqtts://host:port")
        return value

    @model_validator(mode="after")
    def _check_tls(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if (self.mqtt_username is None) != (self.mqtt_password is None):
            raise ValueError("mqtt_username and mqtt_password go together")
        if (self.mqtt_out_username is None) != (self.mqtt_out_password is None):
            raise ValueError("mqtt_out_username and mqtt_out_password go together")
        if self.mqtt_username is not None and self.mqtt_out_username is None:
            # the broker configuration gridhub writes takes usernames as client ids: two
            # connections under one user would throw each other off (and the persistent
            # ingest session with them)
            raise ValueError(
                "with mqtt_username, set mqtt_out_username/mqtt_out_password too: the command "
                "publisher needs its own broker user (gridhub mqtt credentials --hub-user NAME)"
            )
        if (
            self.mqtt_url is None
            and not self.mqtt_auth
            and self.mqtt_listen_host not in ("127.0.0.1", "::1", "localhost")
        ):
            raise ValueError(
                f"the embedded broker would listen on {self.mqtt_listen_host} without passwords: "
                "anyone could publish commands or read everything; set mqtt_auth = true"
            )
        return self

    @property
    def mqtt_auth_dir(self) -> Path:
        """Where the hub writes the broker's password and ACL files."""
        return self.data_dir / "mqtt"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "gridhub.duckdb"

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Settings:
        """Settings from (highest first) ``overrides``, the environment, then ``config_file``."""
        if config_file is None:
            return cls(**{k: v for k, v in overrides.items() if v is not None})

        class _FromFile(cls):  # type: ignore[valid-type,misc]
            @classmethod
            def settings_customise_sources(
                cls,
                settings_cls: type[BaseSettings],
                init_settings: PydanticBaseSettingsSource,
                env_settings: PydanticBaseSettingsSource,
                dotenv_settings: PydanticBaseSettingsSource,
                file_secret_settings: PydanticBaseSettingsSource,
            ) -> tuple[PydanticBaseSettingsSource, ...]:
                return (
                    init_settings,
                    env_settings,
                    TomlConfigSettingsSource(settings_cls, toml_file=config_file),
                )

        loaded = _FromFile(**{k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(loaded.model_dump())
