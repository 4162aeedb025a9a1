"""DuckDB schema, versioned. Each migration runs once, in order, inside a transaction."""

from __future__ import annotations

import duckdb

# Rollups have no primary key on purpose: an ART index on a table as large as the raw one costs
# memory and makes every merge slower; the writer merges with MERGE INTO restricted to the
# batch's bucket span instead (see storage/duckdb_store.py).
_ROLLUP = """
CREATE TABLE IF NOT EXISTS {name} (
    tenant VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    identifier VARCHAR NOT NULL,
    bucket TIMESTAMPTZ NOT NULL,
    count BIGINT NOT NULL,
    sum DOUBLE NOT NULL,
    min DOUBLE NOT NULL,
    max DOUBLE NOT NULL,
    first_ts TIMESTAMPTZ NOT NULL,
    first DOUBLE NOT NULL,
    last_ts TIMESTAMPTZ NOT NULL,
    last DOUBLE NOT NULL
);
"""

MIGRATIONS: tuple[str, ...] = (
    # 1: time series, events, dead letters
    """
    CREATE TABLE IF NOT EXISTS measurements (
        tenant VARCHAR NOT NULL,
        device VARCHAR NOT NULL,
        identifier VARCHAR NOT NULL,
        ts TIMESTAMPTZ NOT NULL,
        value DOUBLE NOT NULL
    );
    CREATE TABLE IF NOT EXISTS state (
        tenant VARCHAR NOT NULL,
        device VARCHAR NOT NULL,
        identifier VARCHAR NOT NULL,
        ts TIMESTAMPTZ NOT NULL,
        value DOUBLE NOT NULL,
        received TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (tenant, device, identifier)
    );
    CREATE TABLE IF NOT EXISTS alerts (
        tenant VARCHAR NOT NULL,
        device VARCHAR NOT NULL,
        ts TIMESTAMPTZ NOT NULL,
        type VARCHAR NOT NULL,
        level VARCHAR NOT NULL,
        message VARCHAR NOT NULL,
        metadata VARCHAR NOT NULL,
        received TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE IF NOT EXISTS acks (
        tenant VARCHAR NOT NULL,
        device VARCHAR NOT NULL,
        ts TIMESTAMPTZ NOT NULL,
        originating_event_id VARCHAR NOT NULL,
        response VARCHAR NOT NULL,
        received TIMESTAMPTZ NOT NULL
    );
    CREATE SEQUENCE IF NOT EXISTS dead_letter_ids;
    CREATE TABLE IF NOT EXISTS dead_letters (
        id BIGINT PRIMARY KEY DEFAULT nextval('dead_letter_ids'),
        tenant VARCHAR,
        source VARCHAR NOT NULL,
        received TIMESTAMPTZ NOT NULL,
        reason VARCHAR NOT NULL,
        detail VARCHAR NOT NULL,
        raw BLOB NOT NULL
    );
    """
    + _ROLLUP.format(name="rollup_15m")
    + _ROLLUP.format(name="rollup_1h")
    + _ROLLUP.format(name="rollup_1d"),
    # 2: the registry
    """
    CREATE TABLE IF NOT EXISTS tenants (
        id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        timezone VARCHAR NOT NULL,
        unknown_devices VARCHAR NOT NULL
    );
    CREATE TABLE IF NOT EXISTS sites (
        tenant VARCHAR NOT NULL,
        id VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        location VARCHAR NOT NULL,
        pilot_phase VARCHAR NOT NULL,
        experiment VARCHAR NOT NULL,
        appliance_types VARCHAR[] NOT NULL,
        has_pv BOOLEAN NOT NULL,
        PRIMARY KEY (tenant, id)
    );
    CREATE TABLE IF NOT EXISTS devices (
        tenant VARCHAR NOT NULL,
        hardware_id VARCHAR NOT NULL,
        device_type VARCHAR NOT NULL,
        site VARCHAR,
        name VARCHAR NOT NULL,
        PRIMARY KEY (tenant, hardware_id)
    );
    CREATE TABLE IF NOT EXISTS identifiers (
        tenant VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        unit VARCHAR NOT NULL,
        PRIMARY KEY (tenant, name)
    );
    CREATE TABLE IF NOT EXISTS tokens (
        id VARCHAR PRIMARY KEY,
        hash VARCHAR NOT NULL UNIQUE,
        tenant VARCHAR,
        role VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        created TIMESTAMPTZ NOT NULL,
        revoked BOOLEAN NOT NULL
    );
    """,
    # 3: readings stored but not yet merged into the rollups (merged in their own transaction,
    # so that a reading is confirmed as soon as it is durable; see duckdb_store.merge_rollups)
    """
    CREATE TABLE IF NOT EXISTS rollup_pending (
        tenant VARCHAR NOT NULL,
        device VARCHAR NOT NULL,
        identifier VARCHAR NOT NULL,
        ts TIMESTAMPTZ NOT NULL,
        value DOUBLE NOT NULL,
        zone VARCHAR NOT NULL
    );
    """,
    # 4: each tenant's grid topology (P5), as its JSON document (grid/topology_json.py)
    """
    CREATE TABLE IF NOT EXISTS topologies (
        tenant VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        document VARCHAR NOT NULL,
        updated TIMESTAMPTZ NOT NULL
    );
    """,
    # 5: devices (issue #6): tenant-defined device types; MQTT credentials (only their hashes)
    """
    CREATE TABLE IF NOT EXISTS device_types (
        tenant VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        description VARCHAR NOT NULL,
        identifiers VARCHAR[] NOT NULL,
        interval_s INTEGER,
        PRIMARY KEY (tenant, name)
    );
    CREATE TABLE IF NOT EXISTS mqtt_credentials (
        username VARCHAR PRIMARY KEY,
        tenant VARCHAR,
        hardware_id VARCHAR,
        role VARCHAR NOT NULL,
        hash VARCHAR NOT NULL,
        created TIMESTAMPTZ NOT NULL,
        rotated TIMESTAMPTZ NOT NULL
    );
    """,
    # 6: outbound (O1–O3): command specs and invocations, tariffs, control signals
    # (storage/outbound_store.py). Invocations are upserted whole by their id; idempotency keys
    # live in their own insert-only table, so no indexed column is ever updated.
    """
    CREATE TABLE IF NOT EXISTS command_specs (
        tenant VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        spec VARCHAR NOT NULL,
        PRIMARY KEY (tenant, name)
    );
    CREATE TABLE IF NOT EXISTS command_invocations (
        id VARCHAR PRIMARY KEY,
        tenant VARCHAR NOT NULL,
        device VARCHAR NOT NULL,
        command VARCHAR NOT NULL,
        parameters VARCHAR NOT NULL,
        created TIMESTAMPTZ NOT NULL,
        expires TIMESTAMPTZ NOT NULL,
        max_attempts INTEGER NOT NULL,
        status VARCHAR NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt TIMESTAMPTZ NOT NULL,
        last_sent TIMESTAMPTZ,
        finished TIMESTAMPTZ,
        response VARCHAR,
        initiator VARCHAR NOT NULL,
        idempotency_key VARCHAR,
        origin VARCHAR,
        metadata VARCHAR NOT NULL
    );
    CREATE TABLE IF NOT EXISTS command_idempotency (
        tenant VARCHAR NOT NULL,
        key VARCHAR NOT NULL,
        invocation VARCHAR NOT NULL,
        PRIMARY KEY (tenant, key)
    );
    CREATE TABLE IF NOT EXISTS tariffs (
        id VARCHAR PRIMARY KEY,
        tenant VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        day DATE NOT NULL,
        target VARCHAR NOT NULL,
        sites VARCHAR[] NOT NULL,
        currency VARCHAR NOT NULL,
        unit VARCHAR NOT NULL,
        periods VARCHAR NOT NULL,
        published TIMESTAMPTZ NOT NULL,
        publisher VARCHAR NOT NULL
    );
    CREATE TABLE IF NOT EXISTS control_signals (
        id VARCHAR PRIMARY KEY,
        tenant VARCHAR NOT NULL,
        direction VARCHAR NOT NULL,
        limit_kw DOUBLE NOT NULL,
        start TIMESTAMPTZ NOT NULL,
        "end" TIMESTAMPTZ,
        target VARCHAR NOT NULL,
        sites VARCHAR[] NOT NULL,
        created TIMESTAMPTZ NOT NULL,
        issuer VARCHAR NOT NULL
    );
    """,
    # 7: access (issue #4): stakeholders, contracts, versioned owner policies, the audit log; tokens
    # gain their stakeholder, service and expiry
    """
    ALTER TABLE tokens ADD COLUMN IF NOT EXISTS stakeholder VARCHAR;
    ALTER TABLE tokens ADD COLUMN IF NOT EXISTS service VARCHAR;
    ALTER TABLE tokens ADD COLUMN IF NOT EXISTS expires TIMESTAMPTZ;
    CREATE TABLE IF NOT EXISTS stakeholders (
        tenant VARCHAR NOT NULL,
        id VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        site VARCHAR,
        created TIMESTAMPTZ NOT NULL,
        disabled BOOLEAN NOT NULL,
        PRIMARY KEY (tenant, id)
    );
    CREATE TABLE IF NOT EXISTS contracts (
        tenant VARCHAR NOT NULL,
        id VARCHAR NOT NULL,
        customer VARCHAR NOT NULL,
        supplier VARCHAR NOT NULL,
        "start" TIMESTAMPTZ NOT NULL,
        "end" TIMESTAMPTZ,
        created TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (tenant, id)
    );
    CREATE TABLE IF NOT EXISTS policies (
        tenant VARCHAR NOT NULL,
        id VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        grantee VARCHAR NOT NULL,
        service VARCHAR NOT NULL,
        identifier VARCHAR NOT NULL,
        can_read BOOLEAN NOT NULL,
        can_write BOOLEAN NOT NULL,
        min_delay_s DOUBLE NOT NULL,
        valid_from TIMESTAMPTZ NOT NULL,
        site VARCHAR,
        device VARCHAR,
        created TIMESTAMPTZ NOT NULL,
        created_by VARCHAR NOT NULL,
        PRIMARY KEY (tenant, id, version)
    );
    CREATE SEQUENCE IF NOT EXISTS audit_ids;
    CREATE TABLE IF NOT EXISTS audit (
        id BIGINT DEFAULT nextval('audit_ids'),
        ts TIMESTAMPTZ NOT NULL,
        tenant VARCHAR,
        actor VARCHAR NOT NULL,
        stakeholder VARCHAR,
        action VARCHAR NOT NULL,
        target VARCHAR NOT NULL,
        result VARCHAR NOT NULL,
        detail VARCHAR NOT NULL
    );
    """,
    # 8: subscriptions (Q3): what each subscriber asked for, and the webhook delivery log
    """
    CREATE TABLE IF NOT EXISTS subscriptions (
        id VARCHAR PRIMARY KEY,
        tenant VARCHAR NOT NULL,
        token_id VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        device VARCHAR NOT NULL,
        identifier VARCHAR NOT NULL,
        channel VARCHAR NOT NULL,
        spec VARCHAR NOT NULL,
        webhook_url VARCHAR,
        webhook_secret VARCHAR,
        created TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE IF NOT EXISTS subscription_deliveries (
        tenant VARCHAR NOT NULL,
        subscription VARCHAR NOT NULL,
        delivery VARCHAR NOT NULL,
        attempt INTEGER NOT NULL,
        sent TIMESTAMPTZ NOT NULL,
        outcome VARCHAR NOT NULL,
        status INTEGER,
        detail VARCHAR NOT NULL
    );
    """,
    # 9: market hub (O4): retailers, supplies, requests under idempotency keys, webhook deliveries
    """
    CREATE TABLE IF NOT EXISTS market_retailers (
        tenant VARCHAR NOT NULL,
        id VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        webhook_url VARCHAR NOT NULL,
        secret VARCHAR NOT NULL,
        token_id VARCHAR,
        created TIMESTAMPTZ NOT NULL,
        disabled BOOLEAN NOT NULL DEFAULT false,
        PRIMARY KEY (tenant, id)
    );
    CREATE TABLE IF NOT EXISTS market_supplies (
        tenant VARCHAR NOT NULL,
        site VARCHAR NOT NULL,
        retailer VARCHAR NOT NULL,
        start TIMESTAMPTZ NOT NULL,
        "end" TIMESTAMPTZ,
        PRIMARY KEY (tenant, site, start)
    );
    CREATE TABLE IF NOT EXISTS market_requests (
        id VARCHAR PRIMARY KEY,
        tenant VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        issuer VARCHAR NOT NULL,
        key VARCHAR NOT NULL,
        fingerprint VARCHAR NOT NULL,
        created TIMESTAMPTZ NOT NULL,
        status VARCHAR NOT NULL,
        params VARCHAR NOT NULL,
        result VARCHAR,
        deadline TIMESTAMPTZ,
        finished TIMESTAMPTZ,
        parent VARCHAR,
        UNIQUE (tenant, issuer, key)
    );
    CREATE TABLE IF NOT EXISTS market_deliveries (
        id VARCHAR PRIMARY KEY,
        tenant VARCHAR NOT NULL,
        request VARCHAR NOT NULL,
        retailer VARCHAR NOT NULL,
        event VARCHAR NOT NULL,
        body BLOB NOT NULL,
        status VARCHAR NOT NULL,
        created TIMESTAMPTZ NOT NULL,
        next_attempt TIMESTAMPTZ NOT NULL,
        attempts INTEGER NOT NULL,
        last_code INTEGER,
        last_error VARCHAR,
        delivered TIMESTAMPTZ,
        answer VARCHAR,
        answered TIMESTAMPTZ,
        clients VARCHAR[] NOT NULL
    );
    CREATE INDEX IF NOT EXISTS market_deliveries_request ON market_deliveries (request);
    """,
    # 10: the latest state is folded in at the rollup merge instead of upserted on every write
    # (issue #3: the upsert was a third of a live reading's write). Pending readings carry their
    # state flag and arrival; ``current_state`` is what reads see: the state table and the
    # pending readings together (older pending rows were upserted already: flag false).
    """
    ALTER TABLE rollup_pending ADD COLUMN update_state BOOLEAN NOT NULL DEFAULT false;
    ALTER TABLE rollup_pending ADD COLUMN received TIMESTAMPTZ;
    CREATE OR REPLACE VIEW current_state AS
    SELECT tenant, device, identifier, max(ts) AS ts, arg_max(value, ts) AS value,
           arg_max(received, ts) AS received
    FROM (
        SELECT tenant, device, identifier, ts, value, received FROM state
        UNION ALL
        SELECT tenant, device, identifier, ts, value, received FROM rollup_pending
        WHERE update_state
    )
    GROUP BY tenant, device, identifier;
    """,
    # 11: who supplies whom is the access layer's contracts alone (customer ↔ retailer, with
    # validity): the market hub's own supplier table goes. Its rows are not carried over — a
    # supply names a site, a contract a customer stakeholder; re-create them as contracts.
    """
    DROP TABLE IF EXISTS market_supplies;
    """,
    # 12: compaction (storage/compaction.py): the local days of each tenant's measurements that
    # were rewritten in (device, identifier, ts) order, and how many rows each held then
    """
    CREATE TABLE IF NOT EXISTS compacted_days (
        tenant VARCHAR NOT NULL,
        day DATE NOT NULL,
        rows BIGINT NOT NULL,
        compacted TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (tenant, day)
    );
    """,
    # 13: compaction of the daily rollups (storage/compaction.py): per tenant and local year,
    # the days [1 January, through) of rollup_1d rewritten in series order, and their rows then
    """
    CREATE TABLE IF NOT EXISTS compacted_rollup_years (
        tenant VARCHAR NOT NULL,
        year INTEGER NOT NULL,
        through DATE NOT NULL,
        rows BIGINT NOT NULL,
        compacted TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (tenant, year)
    );
    """,
)


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Bring a DuckDB database to the newest schema; return its version."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    current = con.execute("SELECT max(version) FROM schema_version").fetchall()[0][0] or 0
    for number, ddl in enumerate(MIGRATIONS, start=1):
        if number <= current:
            continue
        con.execute("BEGIN")
        con.execute(ddl)
        con.execute("INSERT INTO schema_version VALUES (?)", [number])
        con.execute("COMMIT")
        current = number
    return current
