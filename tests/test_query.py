"""`fh query` and the read-only queries the ClickHouse sink serves from its chDB store
(workers/sinks/clickhouse_http.py), against what the real sink stored of the replayed Coinbase 2021
recording: the readable views hold the ring's exact decimals, the store answers while the sink
writes it (from another process, and to clickhouse-connect over HTTP), nothing but reading gets
through, and with no sink running `fh query` opens the store itself. The README's example queries
run against a whole pipeline (the NBBO needs the aggregator) while its sink runs."""
from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path

import pytest

from feedhandler.config import ConfigError, load_config, parse_config
from tests.pipeline import SPOT_VENUES, Pipeline, wait_for
from tests.sinks import at_heads, run_config, run_sink_until, sink_settings
from tools import cli
from tools.services import free_port
from workers.sinks import make_runner
from workers.sinks.clickhouse import ClickHouseSink
from workers.sinks.clickhouse_http import refusal, socket_path
from workers.sinks.runner import SinkDown

REPO = Path(__file__).resolve().parent.parent
FH = [sys.executable, "-m", "tools.cli"]
README_SECTION = "## Query the stored data"


def config_file(tmp_path: Path, prefix: str, venue: str, http_port: int = 0) -> Path:
    """A run config whose ClickHouse sink stores into chDB under tmp_path."""
    path = tmp_path / "run.toml"
    http = f'query_http = "127.0.0.1:{http_port}"\n' if http_port else ""
    path.write_text(f'[run]\nprefix = "{prefix}"\n[venues.{venue}]\nsymbols = ["BTC-USD"]\n[sinks.clickhouse]\n'
                    f'url = "chdb://{tmp_path / "ch"}"\nstate_dir = "{tmp_path / "state"}"\nsnapshot_interval_s = 0\n'
                    f'{http}')
    return path


@pytest.fixture
def serving(coinbase, tmp_path):
    """The replay stored by the ClickHouse sink, which goes on running (a thread of this process,
    holding the store) and serves queries on loopback HTTP too: (config file, reference, HTTP port)."""
    prefix, venue, ref = coinbase
    port = free_port()
    config = config_file(tmp_path, prefix, venue, port)
    runner, pace = make_runner(load_config(str(config)), "clickhouse")
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop.is_set, pace), name="sink")
    thread.start()
    try:
        wait_for(lambda: at_heads(ref)(runner), 120, "the sink to store the whole replay")
        yield config, ref, port
    finally:
        stop.set()
        thread.join()


def fh_query(capsys, config: Path, sql: str, fmt: str = "json") -> tuple[int, str, str]:
    """`fh query` in this process: (exit status, stdout, stderr)."""
    status = cli.main(["query", sql, "-c", str(config), "--format", fmt])
    out, err = capsys.readouterr()
    return status, out, err


def exact_trades(ref) -> dict[tuple[str, int], tuple[Decimal, Decimal]]:
    """(symbol, trade id) -> (price, size) as exact decimals, from the ring."""
    return {(e.instrument.symbol, e.trade_id): (Decimal(e.instrument.price_text(e.price)),
                                                Decimal(e.instrument.qty_text(e.qty))) for e in ref.trades()}


def stored_trades(rows: list[dict]) -> dict[tuple[str, int], tuple[Decimal, Decimal]]:
    """The same, from `fh query --format json` rows of symbol, trade_id, price, qty."""
    return {(r["symbol"], r["trade_id"]): (Decimal(r["price"]), Decimal(r["qty"])) for r in rows}


# ---------------------------------------------------------------------------------------------- read-only

@pytest.mark.parametrize("sql", [
    "SELECT 1", "  select 1", "WITH 1 AS x SELECT x", "SHOW TABLES", "DESCRIBE trades", "desc trades",
    "EXPLAIN SELECT 1", "(SELECT 1) UNION ALL (SELECT 2)", "-- the count\nSELECT count() FROM trades",
    "/* a comment */ SELECT 1", "# a comment\nSELECT 1"])
def test_read_only_statements_are_served(sql):
    assert refusal(sql) is None


@pytest.mark.parametrize("sql", [
    "INSERT INTO trades SELECT * FROM trades", "DROP TABLE trades", "ALTER TABLE trades DELETE WHERE 1",
    "CREATE TABLE x (a Int8) ENGINE = Memory", "SET readonly = 0", "OPTIMIZE TABLE trades FINAL",
    "SYSTEM SHUTDOWN", "KILL QUERY WHERE 1", "TRUNCATE trades", "/* SELECT */ DROP TABLE trades",
    "-- SELECT\nDROP TABLE trades", "", "  ", "; SELECT 1"])
def test_anything_else_is_refused_saying_what_is_served(sql):
    assert "only SELECT, WITH, SHOW, DESCRIBE and EXPLAIN" in refusal(sql)


@pytest.mark.parametrize("address, message", [
    ("0.0.0.0:8123", "not a loopback host:port"), ("10.0.0.1:8123", "not a loopback host:port"),
    ("127.0.0.1", "not a loopback host:port"), ("127.0.0.1:0", "not a loopback host:port"),
    ("127.0.0.1:70000", "not a loopback host:port")])
def test_query_http_must_be_a_loopback_address(address, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({"venues": {"coinbase": {"symbols": ["BTC-USD"]}},
                      "sinks": {"clickhouse": {"url": "chdb://x", "query_http": address}}})


def test_query_http_is_for_an_embedded_store_only():
    with pytest.raises(ConfigError, match="only for a chdb:// store"):
        parse_config({"venues": {"coinbase": {"symbols": ["BTC-USD"]}},
                      "sinks": {"clickhouse": {"url": "clickhouse://127.0.0.1:9000", "query_http": "127.0.0.1:8123"}}})


# ---------------------------------------------------------------------------------------------- the views

@pytest.mark.clickhouse
def test_trades_readable_holds_every_trade_at_its_exact_decimal_price_and_size(chdb):
    sink, venue, ref = chdb
    rows = sink.query("SELECT symbol, trade_id, toString(price), toString(qty), toTypeName(price) "
                      "FROM {db}.trades_readable")
    assert {(r[0], int(r[1])): (Decimal(r[2]), Decimal(r[3])) for r in rows} == exact_trades(ref)
    assert {r[4] for r in rows} == {"Decimal(38, 18)"}


@pytest.mark.clickhouse
def test_bars_1m_readable_finalizes_the_bars_into_plain_decimal_columns(chdb):
    sink, venue, ref = chdb
    exact = exact_trades(ref)
    minutes: dict[tuple[str, int], list[tuple[Decimal, Decimal]]] = {}
    for e in ref.trades():
        minutes.setdefault((e.instrument.symbol, e.ts_exchange // 60_000_000_000 * 60), []).append(
            exact[e.instrument.symbol, e.trade_id])
    expected = {key: (max(p for p, _ in trades), min(p for p, _ in trades), sum(q for _, q in trades), len(trades))
                for key, trades in minutes.items()}
    rows = sink.query("SELECT symbol, toUnixTimestamp(minute), toString(high), toString(low), toString(volume), trades "
                      "FROM {db}.bars_1m_readable")
    assert {(r[0], int(r[1])): (Decimal(r[2]), Decimal(r[3]), Decimal(r[4]), int(r[5])) for r in rows} == expected


@pytest.mark.clickhouse
def test_top_of_book_readable_gives_exact_tops_no_price_for_an_empty_side_and_no_book_awaiting_a_resync(chdb):
    """Depth rows as the sink writes them (the replay's books end invalid, at its close, so these are
    made here), through the materialized top_of_book into the view."""
    sink, venue, ref = chdb
    sink.store.execute(
        "INSERT INTO fh.depth (venue, symbol, epoch, seq, update_id, valid, changes, periodic, ts_exchange, ts_recv, "
        "ts_publish, px_dec, qty_dec, bid_px, bid_qty, ask_px, ask_qty) VALUES "
        "('kraken', 'BTC-USD', 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 8, [600001], [150000000], [600003], [1]), "
        "('kraken', 'BTC-USD', 1, 2, 2, 1, 1, 0, 2, 2, 2, 1, 8, [600001], [150000000], [], []), "
        "('kraken', 'BTC-USD', 1, 3, 3, 0, 1, 0, 3, 3, 3, 1, 8, [600001], [1], [600002], [1])")
    rows = sink.query("SELECT toString(bid), toString(bid_qty), toString(ask), toString(ask_qty), toString(spread) "
                      "FROM {db}.top_of_book_readable WHERE venue = 'kraken' ORDER BY ts_recv")
    assert rows == [("60000.1", "1.5", "60000.3", "0.00000001", "0.2"), ("60000.1", "1.5", None, "0", None)]


# ---------------------------------------------------------------------------------------------- fh query

@pytest.mark.clickhouse
def test_fh_query_reads_the_store_from_another_process_while_the_sink_writes_it(serving):
    config, ref, _ = serving
    assert os.stat(socket_path(load_config(str(config)).sinks["clickhouse"])).st_mode & 0o777 == 0o600
    done = subprocess.run(FH + ["query", "-c", str(config), "--format", "json",
                                "SELECT symbol, trade_id, price, qty FROM trades_readable"],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert stored_trades(rows) == exact_trades(ref)
    assert all(isinstance(row["price"], str) for row in rows)  # exact: a JSON number would be read as a float


@pytest.mark.clickhouse
def test_fh_query_prints_a_table_json_and_csv(serving, capsys):
    config, ref, _ = serving
    sql = "SELECT symbol, count() AS trades, sum(qty) AS volume FROM trades_readable GROUP BY symbol"
    volumes: dict[str, list] = {}
    for (symbol, _), (_, size) in exact_trades(ref).items():
        volumes.setdefault(symbol, []).append(size)
    expected = {symbol: (len(sizes), sum(sizes)) for symbol, sizes in volumes.items()}
    status, out, _ = fh_query(capsys, config, sql, "json")
    rows = json.loads(out)
    assert status == 0 and {r["symbol"]: (r["trades"], Decimal(r["volume"])) for r in rows} == expected
    assert all(isinstance(r["volume"], str) and not re.search(r"\.\d*0$", r["volume"]) for r in rows)  # no padding
    status, out, _ = fh_query(capsys, config, sql, "csv")
    header, *lines = out.splitlines()
    assert status == 0 and header == "symbol,trades,volume"
    assert {line.split(",")[0]: (int(line.split(",")[1]), Decimal(line.split(",")[2])) for line in lines} == expected
    status, out, _ = fh_query(capsys, config, sql, "table")
    header, rule, *lines, count = out.splitlines()
    assert status == 0 and header.split() == ["symbol", "trades", "volume"] and set(rule) <= {"-", " "}
    assert {line.split()[0]: (int(line.split()[1]), Decimal(line.split()[2])) for line in lines} == expected
    assert count == f"({len(expected)} row{'' if len(expected) == 1 else 's'})"


@pytest.mark.clickhouse
def test_fh_query_refuses_writes_and_the_store_refuses_what_reading_could_do_beyond_its_tables(serving, capsys):
    config, ref, _ = serving
    status, _, err = fh_query(capsys, config, "DROP TABLE trades")
    assert status == 2 and "only SELECT, WITH, SHOW, DESCRIBE and EXPLAIN" in err
    status, _, err = fh_query(capsys, config, "SELECT * FROM file('/etc/passwd', 'LineAsString')")
    assert status == 1 and "readonly" in err.lower() and len(err.splitlines()) == 1
    status, _, err = fh_query(capsys, config, "SELECT 1 SETTINGS readonly = 0")
    assert status == 1 and "readonly" in err.lower()
    status, out, _ = fh_query(capsys, config, "SELECT count() AS trades FROM trades")
    assert status == 0 and json.loads(out) == [{"trades": len(ref.trades())}]


@pytest.mark.clickhouse
def test_the_sink_serves_clickhouse_http_clients_on_loopback(serving):
    clickhouse_connect = pytest.importorskip("clickhouse_connect", reason="the test extras install clickhouse-connect")
    config, ref, port = serving
    client = clickhouse_connect.get_client(host="127.0.0.1", port=port)
    try:
        rows = client.query("SELECT symbol, trade_id, price, qty FROM trades_readable").result_rows
        assert {(symbol, trade_id): (price, qty) for symbol, trade_id, price, qty in rows} == exact_trades(ref)
        with pytest.raises(Exception, match="only SELECT"):
            client.command("TRUNCATE TABLE trades")
    finally:
        client.close()


@pytest.mark.clickhouse
def test_fh_query_refuses_a_socket_of_another_user(serving, capsys):
    config, _, _ = serving
    served = socket_path(load_config(str(config)).sinks["clickhouse"])
    os.chown(served, 4321, -1)  # another user put a socket where the sink serves
    status, _, err = fh_query(capsys, config, "SELECT 1")
    assert status == 1 and "not a socket of this user (uid 4321" in err


@pytest.mark.clickhouse
def test_fh_query_opens_the_store_itself_when_no_sink_runs(coinbase, tmp_path, capsys):
    prefix, venue, ref = coinbase
    config = config_file(tmp_path, prefix, venue)
    run_sink_until(load_config(str(config)), "clickhouse", at_heads(ref))  # stopped: nothing serves
    served = socket_path(load_config(str(config)).sinks["clickhouse"])
    assert not served.exists()
    status, out, _ = fh_query(capsys, config, "SELECT count() AS trades FROM trades_readable")
    assert status == 0 and json.loads(out) == [{"trades": len(ref.trades())}]
    with socket.socket(socket.AF_UNIX) as killed:  # what a sink killed by SIGKILL leaves: nobody listens
        killed.bind(str(served))
    status, out, _ = fh_query(capsys, config, "SELECT count() AS trades FROM trades_readable")
    assert status == 0 and json.loads(out) == [{"trades": len(ref.trades())}]


def test_fh_query_says_when_there_is_no_store_yet_or_no_clickhouse_sink(tmp_path, capsys):
    config = config_file(tmp_path, "fhnone", "coinbase")
    status, _, err = fh_query(capsys, config, "SELECT 1")
    assert status == 1 and "no store there yet" in err and "make run" in err
    config.write_text('[venues.coinbase]\nsymbols = ["BTC-USD"]\n')
    status, _, err = fh_query(capsys, config, "SELECT 1")
    assert status == 2 and "has no [sinks.clickhouse]" in err


@pytest.mark.clickhouse
def test_a_sink_starting_while_fh_query_holds_the_store_waits_for_it(coinbase, tmp_path):
    prefix, venue, ref = coinbase
    run = run_config(prefix, [venue], {"clickhouse": sink_settings(tmp_path, url=f"chdb://{tmp_path / 'ch'}")})
    run_sink_until(run, "clickhouse", at_heads(ref))
    holder = subprocess.Popen(  # what fh query does while no sink runs: the store opened read-only
        [sys.executable, "-c", "import sys; from workers.sinks.clickhouse_http import readonly_session; "
                               f"s = readonly_session({str(tmp_path / 'ch')!r}, 'fh'); print('open', flush=True); "
                               "sys.stdin.readline()"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "open\n"
        sink = ClickHouseSink(run.sinks["clickhouse"])
        with pytest.raises(SinkDown, match="another process has it open"):  # retried, not a failed start
            sink.open()
    finally:
        holder.communicate("\n", timeout=60)
    sink.open()
    assert int(sink.query("SELECT count() FROM {db}.trades")[0][0]) == len(ref.trades())
    sink.close()


@pytest.mark.clickhouse
def test_fh_query_reads_a_clickhouse_server_read_only(coinbase, service, tmp_path, capsys):
    prefix, venue, ref = coinbase
    server = service("clickhouse")
    config = tmp_path / "server.toml"
    config.write_text(f'[run]\nprefix = "{prefix}"\n[venues.{venue}]\nsymbols = ["BTC-USD"]\n[sinks.clickhouse]\n'
                      f'url = "{server.url}"\nstate_dir = "{tmp_path / "state"}"\nsnapshot_interval_s = 0\n')
    run_sink_until(load_config(str(config)), "clickhouse", at_heads(ref))
    status, out, _ = fh_query(capsys, config, "SELECT symbol, trade_id, price, qty FROM trades_readable")
    assert status == 0 and stored_trades(json.loads(out)) == exact_trades(ref)
    status, _, err = fh_query(capsys, config, "SELECT 1 FROM system.one SETTINGS readonly = 0")
    assert status == 1 and "readonly" in err.lower()


# ---------------------------------------------------------------------------------------------- the README

def readme_queries() -> list[list[str]]:
    """The `fh query` commands of the README's section on querying, as argument lists after `fh`."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(README_SECTION):]
    section = section[:section.index("\n## ", 1)]
    block = re.search(r"<!-- query-examples -->\n```sh\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line)[1:] for line in block.splitlines() if re.match(r"(\.venv/bin/)?fh query ", line)]


@pytest.mark.slow
@pytest.mark.clickhouse
def test_the_readme_queries_answer_from_a_running_pipeline(tmp_path, shm_prefix):
    """`fh run` with its ClickHouse sink against the simulator; while it runs, each README query (its
    config the pipeline's) returns rows, every column it names filled."""
    pipeline = Pipeline(tmp_path, shm_prefix, venues=SPOT_VENUES, extra_config=(
        f'[sinks.clickhouse]\nurl = "chdb://{tmp_path / "ch"}"\nstate_dir = "{tmp_path / "state"}"\n'
        'linger_s = 0.2\nsnapshot_interval_s = 1\n'))

    def fh(argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(FH + argv + ["-c", str(pipeline.config_path), "--format", "json"], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)

    def stored() -> bool:
        done = fh(["query", f"SELECT (SELECT count() FROM nbbo) > 0 AND (SELECT uniqExact(venue) FROM trades) = "
                            f"{len(pipeline.venues)} AND (SELECT count() FROM top_of_book) > 0 AS ready"])
        return done.returncode == 0 and json.loads(done.stdout) == [{"ready": 1}]
    assert len(readme_queries()) == 5  # last trades, OHLCV, spread, volume by venue, NBBO history
    with pipeline.serving():
        wait_for(stored, 180, "NBBO changes and the trades of every venue in the store", every_s=1.0)
        for argv in readme_queries():
            done = fh(argv)
            assert done.returncode == 0, f"{argv[1]}: {done.stderr}"
            rows = json.loads(done.stdout)
            assert rows, f"{argv[1]}: no rows"
            assert all(value is not None for row in rows for value in row.values()), argv[1]
