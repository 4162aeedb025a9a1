"""Composition root: :func:`build_hub` wires store, registry, tokens, pipeline and services.

The API, the CLI and the tests all start from here, so there is one way to put a hub together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from gridhub.access.audit import AuditLog
from gridhub.access.directory import Directory
from gridhub.access.enforce import AccessControl
from gridhub.access.tokens import ADMIN, TokenService
from gridhub.config import Settings
from gridhub.ingest.embedded_broker import EmbeddedBroker
from gridhub.ingest.mqtt_source import MqttSource
from gridhub.ingest.pipeline import Pipeline
from gridhub.ingest.validate import Limits
from gridhub.services.query import QueryService
from gridhub.storage.access_catalog import DuckDBAccessCatalog
from gridhub.storage.duckdb_catalog import DuckDBCatalog
from gridhub.storage.duckdb_store import DuckDBDatabase, DuckDBStore
from gridhub.storage.registry import Registry

log = logging.getLogger(__name__)


@dataclass
class Hub:
    settings: Settings
    db: DuckDBDatabase
    store: DuckDBStore
    registry: Registry
    tokens: TokenService
    pipeline: Pipeline
    query: QueryService
    access: AccessControl
    audit: AuditLog
    mqtt: MqttSource | None = None
    broker: EmbeddedBroker | None = None
    admin_secret: str | None = field(default=None, repr=False)

    def ensure_admin_token(self) -> str | None:
        """Create the installation's admin token on first start; return its secret once."""
        if self.tokens.has_admin():
            return None
        _record, secret = self.tokens.create(None, ADMIN, "installation admin")
        self.admin_secret = secret
        return secret

    def start(self, *, mqtt: bool = True) -> None:
        """Start the writer, and MQTT ingest (an embedded broker if no URL is configured)."""
        self.audit.start()
        self.pipeline.start()
        if not mqtt:
            return
        url = self.settings.mqtt_url
        mqtt5 = self.settings.mqtt_protocol == "5"
        if url is None:
            self.broker = EmbeddedBroker()
            self.broker.start()
            url = self.broker.url
            mqtt5 = self.broker.kind == "mosquitto"  # amqtt speaks MQTT 3.1.1 only
        self.mqtt = MqttSource(
            self.pipeline,
            url,
            client_id=self.settings.mqtt_client_id,
            topic=self.settings.mqtt_topic,
            mqtt5=mqtt5,
        )
        self.mqtt.start()

    @property
    def mqtt_url(self) -> str | None:
        return self.mqtt.url if self.mqtt is not None else None

    def stop(self) -> None:
        # intake first, so an MQTT callback waiting for buffer room lets paho's thread finish
        self.pipeline.close_intake()
        if self.mqtt is not None:
            self.mqtt.stop()
            self.mqtt = None
        self.pipeline.stop()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        self.audit.stop()
        self.db.close()


def build_hub(settings: Settings) -> Hub:
    db = DuckDBDatabase(settings.db_path)
    store = DuckDBStore(db)
    catalog = DuckDBCatalog(db)
    registry = Registry(catalog)
    pipeline = Pipeline(
        store,
        registry,
        limits=Limits(settings.max_message_bytes, settings.max_future_s),
        buffer_rows=settings.buffer_rows,
        batch_rows=settings.batch_rows,
        batch_delay_s=settings.batch_delay_ms / 1000,
    )
    access_catalog = DuckDBAccessCatalog(db)
    access = AccessControl(Directory(access_catalog, registry), registry)
    audit = AuditLog(access_catalog)
    pipeline.on_written = audit.record_ingest
    return Hub(
        settings=settings,
        db=db,
        store=store,
        registry=registry,
        tokens=TokenService(catalog),
        pipeline=pipeline,
        query=QueryService(store, registry, access),
        access=access,
        audit=audit,
    )
