"""The readings storage path is decided from what the server offers."""

from __future__ import annotations

from hub.store.timescale import Plan, Policy, ServerState, plan


def state(available=(), installed=(), hyper=False) -> ServerState:
    return ServerState(frozenset(available), frozenset(installed), hyper)


def test_plain_postgres_plans_nothing():
    p = plan(state(available={"plpgsql", "pg_trgm"}, installed={"plpgsql"}))
    assert p == Plan("plain", (), "timescaledb is not available on this server")


def test_available_timescale_becomes_a_compressed_hypertable_with_retention():
    p = plan(state(available={"plpgsql", "timescaledb"}, installed={"plpgsql"}),
             Policy(chunk_interval="12 hours", compress_after="3 days", retain_for="90 days"))
    assert p.path == "timescale"
    sql = "\n".join(p.statements)
    assert p.statements[0] == "CREATE EXTENSION IF NOT EXISTS timescaledb"
    # The key must hold the time column before the table can become a hypertable.
    assert sql.index("PRIMARY KEY (device_id, seq, idx, ts)") < sql.index("create_hypertable")
    assert "create_hypertable('readings', 'ts'" in sql
    assert "INTERVAL '12 hours'" in sql
    assert "timescaledb.compress_segmentby = 'device_id'" in sql
    assert "add_compression_policy('readings', INTERVAL '3 days'" in sql
    assert "add_retention_policy('readings', INTERVAL '90 days'" in sql


def test_installed_extension_is_not_created_again():
    p = plan(state(available={"timescaledb"}, installed={"timescaledb"}))
    assert p.path == "timescale"
    assert not any(s.startswith("CREATE EXTENSION") for s in p.statements)
    assert any("create_hypertable" in s for s in p.statements)


def test_existing_hypertable_plans_nothing():
    p = plan(state(available={"timescaledb"}, installed={"timescaledb"}, hyper=True))
    assert p.path == "timescale" and p.statements == ()


def test_extension_not_preloaded_stays_plain():
    p = plan(ServerState(frozenset({"timescaledb"}), frozenset(), False, preloaded=False))
    assert p.path == "plain" and p.statements == ()
    assert "shared_preload_libraries" in p.reason
