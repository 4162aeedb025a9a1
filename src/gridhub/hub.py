"""Composition root: :func:`build_hub` wires store, registry, tokens, pipeline and services.

The API, the CLI and the tests all start from here, so there is one way to put a hub together.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from gridhub.access.audit import AuditLog
from gridhub.access.directory import Directory
from gridhub.access.enforce import AccessControl
from gridhub.access.mqtt_auth import HUB_USERNAME
from gridhub.access.tokens import ADMIN, TokenService
from gridhub.config import Settings
from gridhub.domain.registry import Device
from gridhub.errors import StoreRejected
from gridhub.grid.fault_monitor import FaultMonitor
from gridhub.grid.luminaire_monitor import LuminaireService
from gridhub.grid.monitoring import TenantMonitor
from gridhub.grid.outage_monitor import OutageMonitor
from gridhub.grid.runs import GridRuns
from gridhub.grid.schedule import GridSchedule
from gridhub.grid.topologies import TopologyService
from gridhub.ingest.embedded_broker import EmbeddedBroker, MosquittoAuth, MosquittoTls
from gridhub.ingest.meter_reader import MeterReader
from gridhub.ingest.mqtt_source import MqttSource
from gridhub.ingest.pipeline import Pipeline, Receipt
from gridhub.ingest.validate import GRID_SOURCE, Envelope, Limits
from gridhub.outbound.mqtt_publisher import MqttPublisher
from gridhub.services.commands import CommandService, command_config
from gridhub.services.devices import DeviceTypes, MqttCredentials
from gridhub.services.market_flows import MarketService
from gridhub.services.query import QueryService
from gridhub.services.reports import ReportService
from gridhub.services.sql_console import SqlConsole
from gridhub.services.subscriptions import SubscriptionService, subscription_config
from gridhub.services.tariffs import TariffService
from gridhub.services.webhook_guard import WebhookGuard
from gridhub.services.webhooks import WebhookConfig
from gridhub.storage.access_catalog import DuckDBAccessCatalog
from gridhub.storage.compaction import Compactor
from gridhub.storage.devices_catalog import DevicesCatalog
from gridhub.storage.duckdb_catalog import DuckDBCatalog
from gridhub.storage.duckdb_reports import DuckDBReportStore
from gridhub.storage.duckdb_store import DuckDBDatabase, DuckDBStore
from gridhub.storage.duckdb_topologies import DuckDBTopologies
from gridhub.storage.market_readings import MarketReadings
from gridhub.storage.market_store import MarketStore
from gridhub.storage.outbound_store import OutboundStore
from gridhub.storage.registry import Registry
from gridhub.storage.subscriptions_store import SubscriptionStore

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
    topologies: TopologyService
    outages: OutageMonitor
    grid_monitors: list[TenantMonitor[Any, Any]]  # G2 faults, G3 luminaires (on arrival)
    device_types: DeviceTypes
    mqtt_credentials: MqttCredentials
    commands: CommandService
    tariffs: TariffService
    reports: ReportService
    sql: SqlConsole
    access: AccessControl
    audit: AuditLog
    subscriptions: SubscriptionService
    grid_runs: GridRuns
    market: MarketService
    meter_readers: list[MeterReader] = field(default_factory=list)
    mqtt: MqttSource | None = None
    publisher: MqttPublisher | None = None
    broker: EmbeddedBroker | None = None
    admin_secret: str | None = field(default=None, repr=False)
    grid_schedule: GridSchedule | None = None  # periodic grid runs (settings.grid_schedule)
    compactor: Compactor | None = None  # settled days in key order (settings.compact_after_days)

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
        self.outages.start()
        for monitor in self.grid_monitors:
            monitor.start()
        if self.grid_schedule is not None:
            self.grid_schedule.start()
        self.market.start()
        # meter ports (issue #6): checked before anything else starts, so a bad one fails fast
        self.meter_readers = [
            MeterReader(source, self.pipeline, self.registry)
            for source in self.settings.meter_sources
        ]
        for reader in self.meter_readers:
            reader.start()
        if not mqtt:
            self.commands.start(None)  # no transport: commands wait, then expire
            self.subscriptions.start(None)  # MQTT notifications wait and are retried
            return
        s = self.settings
        url = s.mqtt_url
        mqtt5 = s.mqtt_protocol == "5"
        username, password = s.mqtt_username, s.mqtt_password
        out_user, out_password = s.mqtt_out_username, s.mqtt_out_password  # the publisher's
        if url is None:
            auth = tls = None
            if s.mqtt_auth:  # the hub's own users for this run (ingest, commands), then the files
                username, password = self.mqtt_credentials.runtime_hub_credential()
                out_user, out_password = self.mqtt_credentials.runtime_hub_credential(
                    f"{HUB_USERNAME}-out"
                )
                files = self.mqtt_credentials.write_files(s.mqtt_auth_dir)
                auth = MosquittoAuth(files.password_file, files.acl_file)
            if s.tls_cert is not None and s.tls_key is not None:
                tls = MosquittoTls(s.tls_cert.resolve(), s.tls_key.resolve(), s.mqtts_port)
            self.broker = EmbeddedBroker(s.mqtt_listen_host, s.mqtt_listen_port, auth=auth, tls=tls)
            self.broker.start()
            url = self.broker.url
            mqtt5 = self.broker.kind == "mosquitto"  # amqtt speaks MQTT 3.1.1 only
        self.mqtt = MqttSource(
            self.pipeline,
            url,
            # with auth the embedded broker uses the username as client id anyway
            client_id=username if s.mqtt_auth and username else s.mqtt_client_id,
            topic=s.mqtt_topic,
            mqtt5=mqtt5,
            username=username,
            password=password,
            ca_file=str(s.mqtt_ca_file) if s.mqtt_ca_file is not None else None,
        )
        self.mqtt.start()
        self.publisher = MqttPublisher(
            url,
            # the broker takes a username as client id (use_username_as_clientid): one each
            client_id=out_user if s.mqtt_auth and out_user else f"{s.mqtt_client_id}-outbound",
            username=out_user,
            password=out_password,
            ca_file=str(s.mqtt_ca_file) if s.mqtt_ca_file is not None else None,
        )
        self.publisher.start()
        self.commands.start(self.publisher)
        self.subscriptions.start(self.publisher)

    def reload_broker(self, _files: object = None) -> None:
        """After a credential change: the embedded Mosquitto re-reads its files (SIGHUP)."""
        if self.broker is not None and self.settings.mqtt_auth and self.broker.running:
            self.broker.reload()

    @property
    def mqtt_url(self) -> str | None:
        return self.mqtt.url if self.mqtt is not None else None

    def stop(self) -> None:
        # intake first, so an MQTT callback waiting for buffer room lets paho's thread finish
        for reader in self.meter_readers:
            reader.stop()
        self.pipeline.close_intake()
        if self.mqtt is not None:
            self.mqtt.stop()
            self.mqtt = None
        self.outages.stop()
        for monitor in self.grid_monitors:
            monitor.stop()
        if self.grid_schedule is not None:
            self.grid_schedule.stop()
        self.pipeline.stop()
        self.market.stop()
        self.commands.stop()
        self.subscriptions.stop()
        if self.publisher is not None:
            self.publisher.stop()
            self.publisher = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        self.audit.stop()
        self.db.close()


def build_hub(settings: Settings) -> Hub:
    db = DuckDBDatabase(settings.db_path, checkpoint_mb=settings.duckdb_checkpoint_mb)
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
    compactor: Compactor | None = None
    if settings.compact_after_days:
        compactor = Compactor(db, settle=timedelta(days=settings.compact_after_days))
        pipeline.add_maintenance(compactor.step)
    topologies = TopologyService(DuckDBTopologies(db), registry)

    def write_back(tenant: str, messages: list[bytes]) -> None:
        """Grid service results in through the pipeline, like any device's messages."""
        received = time.time_ns() // 1000
        pipeline.submit(
            [Envelope(GRID_SOURCE, raw, tenant, received) for raw in messages],
            _log_refused,
            timeout=None,
        )

    outages = OutageMonitor(topologies, registry, store, write_back)

    def write_back_durable(tenant: str, messages: list[bytes]) -> None:
        """On-demand results: the run answers once they are stored (and readable); a refused
        result is a bug of ours, not the caller's, and fails the run."""
        received = time.time_ns() // 1000
        envelopes = [Envelope(GRID_SOURCE, raw, tenant, received) for raw in messages]
        for i in range(0, len(envelopes), 5000):
            receipt = pipeline.submit_and_wait(envelopes[i : i + 5000], timeout=120)
            if receipt.rejected:
                first = receipt.rejected[0]
                raise StoreRejected(f"grid result refused: {first.reason} {first.detail}")

    pipeline.add_observer(outages.observe)
    grid_monitors: list[TenantMonitor[Any, Any]] = [
        FaultMonitor(topologies, registry, store, write_back),
        LuminaireService(topologies, registry, store, write_back),
    ]
    for monitor in grid_monitors:
        pipeline.add_observer(monitor.observe)
    devices_catalog = DevicesCatalog(db)
    credentials = MqttCredentials(
        devices_catalog, registry, settings.mqtt_auth_dir if settings.mqtt_auth else None
    )
    outbound = OutboundStore(db)
    commands = CommandService(outbound, registry, command_config(settings))
    tariffs = TariffService(outbound, registry, commands)
    tokens = TokenService(catalog)  # one instance: its cache is what authenticates
    pipeline.add_observer(commands.observe)  # acks and devices heard from
    report_store = DuckDBReportStore(db)
    device_types = DeviceTypes(devices_catalog, registry)
    access_catalog = DuckDBAccessCatalog(db)
    access = AccessControl(Directory(access_catalog, registry), registry)
    audit = AuditLog(access_catalog)
    # market hub (O4): who supplies whom is the access layer's contracts, and reads of client
    # data pass the same enforcement point as the series API (services/market_reads.py)
    market = MarketService(
        MarketStore(db),
        MarketReadings(db),
        registry,
        topologies,
        tokens,
        tariffs,
        commands,
        outbound,
        access,
        audit,
        webhook_config=WebhookConfig(
            workers=settings.market_webhook_workers,
            timeout_s=settings.market_webhook_timeout_s,
            max_attempts=settings.market_webhook_attempts,
            guard=WebhookGuard(settings.webhook_allow),
        ),
    )
    pipeline.add_observer(audit.record_ingest)  # one audit entry per MQTT batch and tenant
    subscriptions = SubscriptionService(
        SubscriptionStore(db),
        store,
        registry,
        tokens,
        subscription_config(settings),
        access.may_read,  # every notification passes the one enforcement point
        on_notify=lambda sub, who, payload: audit.record(
            sub.tenant,
            who.token_id,
            who.stakeholder,
            "read",
            f"subscription {sub.id} {sub.device}/{sub.identifier}",
            "ok",
            str(payload["delivery"]),
        ),
    )
    pipeline.add_observer(subscriptions.observe)  # new readings of subscribed series
    hub = Hub(
        settings=settings,
        db=db,
        store=store,
        registry=registry,
        tokens=tokens,
        pipeline=pipeline,
        query=QueryService(store, registry, access),
        access=access,
        audit=audit,
        topologies=topologies,
        outages=outages,
        grid_monitors=grid_monitors,
        device_types=device_types,
        mqtt_credentials=credentials,
        commands=commands,
        tariffs=tariffs,
        reports=ReportService(
            store,
            report_store,
            registry,
            pipeline.metrics,
            interval_of=lambda tenant, device: _interval_s(device_types, tenant, device),
        ),
        sql=SqlConsole(report_store),
        subscriptions=subscriptions,
        grid_runs=GridRuns(
            topologies, registry, store, write_back_durable, horizon_s=settings.max_future_s
        ),
        market=market,
        compactor=compactor,
    )
    credentials.on_change = hub.reload_broker
    if settings.grid_schedule:
        hub.grid_schedule = GridSchedule(hub.grid_runs, registry)
    return hub


def _log_refused(receipt: Receipt) -> None:
    if receipt.error is not None or receipt.rejected:
        log.error("grid results not stored: %s %s", receipt.error, receipt.rejected[:3])


def _interval_s(types: DeviceTypes, tenant: str, device: Device) -> int | None:
    """How often a device reports, for completeness: its type's interval (None: nothing is
    expected of it); a type nobody defined is taken as a 15-minute meter."""
    found = types.find(tenant, device.device_type)
    return found.interval_s if found is not None else 900
