"""monitoring/grafana-market-dashboard.json: the market-data dashboard over the ClickHouse sink's store.

Every SQL query in it (panel targets and template variables), its Grafana variables and the ClickHouse
data source's macros filled in as the plugin fills them, runs against what the real sink stored of
the replayed Coinbase 2021 recording (the `chdb` fixture), read through the sink the way Grafana
reads the embedded store (fh query's path: the sink's read-only HTTP interface); each must return
the columns its panel draws, and rows where the replay stored data (trades and the bars made of
them: a replay has no aggregator, so no NBBO, and its books end invalid, so no valid book top)."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from tools.query import Result, fetch
from tests.dashboards import assert_laid_out

DASHBOARD = Path(__file__).resolve().parent.parent / "monitoring" / "grafana-market-dashboard.json"
DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "${datasource}"}
TIMESERIES, TABLE = 0, 1  # the plugin's `format` of a target
INTERVAL_S = 20  # $__interval_s as Grafana would pick it
FILLED_BY_A_REPLAY = ("trades_readable", "bars_1m_readable", "FROM bars_1m ")


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def variables() -> dict[str, dict]:
    return {var["name"]: var for var in dashboard()["templating"]["list"]}


def queries() -> list[tuple[str, str, int]]:
    """(where, SQL, format) of every panel target and query variable."""
    out = [(f"panel {p['title']!r} target {t['refId']}", t["rawSql"], t["format"]) for p in panels() for t in p["targets"]]
    return out + [(f"variable {name}", var["query"], TABLE) for name, var in variables().items() if var["type"] == "query"]


def filled(sql: str, start_s: int, end_s: int, values: dict[str, str]) -> str:
    """`sql` as the ClickHouse data source sends it: Grafana's variables, then the plugin's macros."""
    for name, value in values.items():
        sql = sql.replace(f"${{{name}:singlequote}}", f"'{value}'").replace(f"${{{name}}}", value)
    macros = {
        r"\$__timeFilter\((\w+)\)": lambda m: f"{m[1]} >= toDateTime({start_s}) AND {m[1]} <= toDateTime({end_s})",
        r"\$__timeFilter_ms\((\w+)\)": lambda m: (f"{m[1]} >= fromUnixTimestamp64Milli({start_s * 1000}) AND "
                                                 f"{m[1]} <= fromUnixTimestamp64Milli({end_s * 1000})"),
        r"\$__dateFilter\((\w+)\)": lambda m: (f"{m[1]} >= toDate(toDateTime({start_s})) AND "
                                               f"{m[1]} <= toDate(toDateTime({end_s}))"),
        r"\$__timeInterval\((\w+)\)": lambda m: f"toStartOfInterval(toDateTime({m[1]}), INTERVAL {INTERVAL_S} second)",
        r"\$__timeInterval_ms\((\w+)\)": lambda m: (f"toStartOfInterval(toDateTime64({m[1]}, 3), "
                                                    f"INTERVAL {INTERVAL_S * 1000} millisecond)"),
        r"\$__fromTime_ms\b": lambda m: f"fromUnixTimestamp64Milli({start_s * 1000})",
        r"\$__toTime_ms\b": lambda m: f"fromUnixTimestamp64Milli({end_s * 1000})",
        r"\$__fromTime\b": lambda m: f"toDateTime({start_s})",
        r"\$__toTime\b": lambda m: f"toDateTime({end_s})",
        r"\$__interval_s\b": lambda m: str(INTERVAL_S),
    }
    for pattern, expansion in macros.items():
        sql = re.sub(pattern, expansion, sql)
    assert "$" not in sql, f"a variable or macro this test does not fill: {sql}"
    return sql


def _numeric(kind: str) -> bool:
    return re.sub(r"^(Nullable|LowCardinality)\(", "", kind).startswith(("Int", "UInt", "Float", "Decimal"))


# ---------------------------------------------------------------------------------------------- the file

def test_the_dashboard_is_grafana_json_of_schema_39_or_later_beside_the_operations_one():
    assert dashboard()["schemaVersion"] >= 39
    assert dashboard()["uid"] == "fh-market-data" and dashboard()["title"]
    assert dashboard()["uid"] != json.loads((DASHBOARD.parent / "grafana-dashboard.json").read_text())["uid"]


def test_it_takes_its_clickhouse_data_source_from_a_variable_and_every_panel_uses_it():
    assert variables()["datasource"]["type"] == "datasource"
    assert variables()["datasource"]["query"] == DATASOURCE["type"]
    for panel in panels():
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE and target["rawSql"].strip(), panel["title"]
            assert target["format"] in (TIMESERIES, TABLE) and target["editorType"] == "sql", panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]


def test_panels_have_unique_ids_and_do_not_overlap_on_the_grid():
    assert_laid_out(dashboard()["panels"])


def test_it_shows_candles_spread_volume_by_venue_the_nbbo_and_trade_counts():
    by_type = {(p["type"], t["rawSql"]) for p in panels() for t in p["targets"]}
    assert any(kind == "candlestick" and "FROM bars_1m_readable" in sql for kind, sql in by_type)
    sql = " ".join(sql for _, sql in by_type)
    for shown in ("FROM nbbo_readable", "avg(spread) AS spread\nFROM top_of_book_readable",
                  "venue, sum(volume) AS volume", "venue, sum(trades) AS trades"):
        assert shown in sql, f"no panel queries {shown!r}"


# ---------------------------------------------------------------------------------------------- the queries

@pytest.mark.clickhouse
def test_every_query_runs_on_the_stored_replay_and_returns_the_columns_its_panel_draws(chdb):
    sink, venue, ref = chdb
    symbol = Counter(e.instrument.symbol for e in ref.trades()).most_common(1)[0][0]
    first, last = (int(v) for v in sink.query("SELECT toUnixTimestamp(min(ts_exchange)), "
                                              "toUnixTimestamp(max(ts_exchange)) FROM {db}.trades")[0])
    values = {"symbol": symbol, "venue": venue}
    answered: list[str] = []
    for where, sql, fmt in queries():
        result: Result = fetch(sink.config, filled(sql, first - 60, last + 60, values))
        assert result.names, where
        if fmt == TIMESERIES:
            assert result.names[0] == "time" and result.types[0].startswith("DateTime"), where
            labels = [n for n, kind in zip(result.names[1:], result.types[1:]) if not _numeric(kind)]
            assert labels in ([], ["venue"]), f"{where}: {labels} besides the time and the values"
        if any(source in sql for source in FILLED_BY_A_REPLAY):
            assert result.rows, f"{where}: no rows"
            answered.append(where)
    candles = next(p for p in panels() if p["type"] == "candlestick")
    result = fetch(sink.config, filled(candles["targets"][0]["rawSql"], first - 60, last + 60, values))
    assert result.names == ["time", "open", "high", "low", "close", "volume"]
    assert all(low <= min(open_, close) <= max(open_, close) <= high for _, open_, high, low, close, _ in result.rows)
    assert len(answered) >= 6
