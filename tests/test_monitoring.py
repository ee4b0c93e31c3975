"""monitoring/: the Grafana dashboard, the Prometheus alert rules and the example scrape config.

Every metric and label they name is checked against what a real `tools.metrics.Collector` exports from
real shared-memory segments (a venue with a valid book, the NBBO, latency histograms for every hop) and
a sink stats file. With promtool (Debian package `prometheus`) the rules and config are checked by it,
the rules' unit tests (monitoring/prometheus-rules.test.yml) run, and every dashboard query is run
against series made from that real exposition; without promtool those tests skip and say so."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from feedhandler.venues.binance import BinanceFeed
from feedhandler.instruments import Instrument
from shm.histogram import record_many
from shm.latency import HOPS, LatencyWriter
from shm.layout import BOOK_TS_PUBLISH
from shm.segment import InstrumentSpec, SegmentWriter
from tools.metrics import Collector
from tests.dashboards import assert_laid_out

REPO = Path(__file__).resolve().parent.parent
MONITORING = REPO / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
RULES = MONITORING / "prometheus-rules.yml"
RULES_TESTS = MONITORING / "prometheus-rules.test.yml"
CONFIG = MONITORING / "prometheus.yml"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found: it comes with the Debian package `prometheus` "
                             "(apt-get install --no-install-recommends prometheus); the promtool checks did not run")

# Series Prometheus makes itself for every target; rules may use them besides what fh metrics exports.
PROMETHEUS_OWN = {"up": {"job", "instance"}}
TARGET_LABELS = {"job", "instance"}  # added to every fh series by the scrape
REQUIRED_ALERTS = {"FeedStale", "BookInvalid", "GapRate", "ResyncStorm", "ChecksumFailures", "DecodeErrors",
                   "NbboCrossed", "NbboStale", "SinkDown", "SinkLag", "SinkDroppingRecords", "LatencyHigh"}

BTC = Instrument("binance", "BTCUSDT", "BTC", "USDT", 8, 8)
SINK_STATS = {"sink": "kafka", "up": 1, "lag": 3, "sent": 10, "acked": 8, "retried": 1, "dropped_with_gap": 0,
              "gaps": 0, "conflated": 2, "batches": 4, "commands": 4}


# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture
def exposition(shm_prefix, tmp_path) -> str:
    """What `fh metrics` serves for one Binance feed with a valid book, an NBBO segment made the way
    workers/aggregator.py makes it (published once), latency histograms for every hop and a sink's
    stats file, and a symlink planted under the prefix."""
    venue = SegmentWriter.create(shm_prefix, "binance", [BTC.spec(1024)], depth=5, ring_slots=1024)
    feed = BinanceFeed([BTC], venue, capacity=1024)
    feed.on_frame(b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":11,"u":11,'
                  b'"b":[["100.00","2.0"]],"a":[]}}', time.time_ns())
    feed.books_to_resync()
    feed.on_snapshot("BTCUSDT", b'{"lastUpdateId": 11, "bids": [["99.00", "1.0"]], "asks": [["101.00", "1.0"]]}',
                     time.time_ns())
    venue.heartbeat()
    venues = ["binance"]
    nbbo = SegmentWriter.create(shm_prefix, "nbbo", [InstrumentSpec("BTC-USDT", "BTC-USDT", 8, 8, len(venues))],
                                depth=2 * len(venues), ring_slots=1024, labels=venues)
    nbbo.books[0, BOOK_TS_PUBLISH] = time.time_ns()  # as after the aggregator's first publish: the age is exported
    rows = [(hop, "kafka" if hop == "sink" else "binance") for hop in HOPS]
    latency = LatencyWriter(shm_prefix, "monitoring", rows)
    for k in range(len(rows)):
        record_many(latency.hists[k], np.arange(1, 101) * 1000)
    stats = tmp_path / "kafka.stats.json"
    stats.write_text(json.dumps(SINK_STATS))
    os.symlink(venue.path, f"{venue.path}-planted")  # a file fh metrics refuses (fh_file_refused)
    collector = Collector(shm_prefix, [stats])
    try:
        yield collector.metrics()
    finally:
        collector.close()
        latency.close(unlink=True)
        nbbo.close()
        venue.close()


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample line of a Prometheus exposition."""
    out = []
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        series, value = line.rsplit(" ", 1)
        name, _, rest = series.partition("{")
        labels = dict(re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', rest))
        out.append((name, labels, float(value)))
    return out


@pytest.fixture
def exported(exposition) -> dict[str, set[str]]:
    """Metric name -> the label names its samples carry (scrape target labels included)."""
    names: dict[str, set[str]] = {}
    for name, labels, _ in _samples(exposition):
        names.setdefault(name, set(TARGET_LABELS)).update(labels)
    return names


# ---------------------------------------------------------------------------------------------- reading the files

def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard: dict) -> list[dict]:
    """Every panel, those inside collapsed rows included; rows themselves are not panels with queries."""
    out = []
    for panel in dashboard["panels"]:
        out += [panel] if panel["type"] != "row" else panel.get("panels", [])
    return out


def _variables(dashboard: dict) -> dict[str, dict]:
    return {var["name"]: var for var in dashboard["templating"]["list"]}


def _variable_query(var: dict) -> str:
    query = var["query"]
    return query["query"] if isinstance(query, dict) else query


GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "10m"}


def _promql(expr: str) -> str:
    """A Grafana query as Prometheus would get it: intervals filled in, every variable matching all."""
    for name, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(name, value)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def _dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every label_values() variable of the dashboard."""
    dashboard = _dashboard()
    out = [(f"panel {panel['title']!r} target {t['refId']}", _promql(t["expr"]))
           for panel in _panels(dashboard) for t in panel["targets"]]
    for name, var in _variables(dashboard).items():
        if var["type"] == "query":
            selector = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", _variable_query(var)).group(1)
            out.append((f"variable {name}", _promql(selector)))
    return out


def _rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _alerts() -> dict[str, dict]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


# A small reading of PromQL: enough to find the metric names and label names an expression uses.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "inf", "nan"}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _metric_names(expr: str) -> set[str]:
    expr = _STRING.sub('""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = _GROUPING.sub(" ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.:])[a-zA-Z_:][\w:]*", expr):
        word = match.group()
        if word in _KEYWORDS or expr[match.end():].lstrip().startswith("("):  # keyword, function, aggregation
            continue
        names.add(word)
    return names


def _matcher_labels(expr: str) -> list[tuple[str, str]]:
    """(metric, label) for every label matcher of every selector with a metric name."""
    return [(metric, label) for metric, body in _SELECTOR.findall(expr)
            for label in re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", _STRING.sub('""', body))]


def _grouping_labels(expr: str) -> set[str]:
    return {label.strip() for _, labels in _GROUPING.findall(expr) for label in labels.split(",") if label.strip()}


def _result_labels(expr: str, labels_of: dict[str, set[str]]) -> set[str]:
    """The labels an expression's result can carry: its `by` labels when it aggregates, else its metrics'."""
    if re.search(r"\b(sum|count|max|min|avg|topk|bottomk|quantile)\b\s*(by\b|\()", expr):
        return {label.strip() for labels in re.findall(r"\bby\s*\(([^)]*)\)", expr) for label in labels.split(",")}
    return set().union(*(labels_of.get(name, set()) for name in _metric_names(expr)))


def _unknown_names(where_exprs, exported) -> list[str]:
    known = set(exported) | set(PROMETHEUS_OWN)
    return [f"{where}: {name}" for where, expr in where_exprs for name in sorted(_metric_names(expr) - known)]


def _unknown_labels(where_exprs, exported) -> list[str]:
    labels_of = {**PROMETHEUS_OWN, **exported}
    every_label = set().union(*labels_of.values())
    bad = []
    for where, expr in where_exprs:
        bad += [f"{where}: {metric}{{{label}}}" for metric, label in _matcher_labels(expr)
                if metric in labels_of and label not in labels_of[metric]]
        bad += [f"{where}: by/on ({label})" for label in _grouping_labels(expr) - every_label]
    return bad


def _promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------------------------------- the test exposition

def test_the_test_exposition_has_every_metric_family_tools_metrics_names(exported):
    """Guards the checks below: a family the fixture failed to produce could not be checked against."""
    source = (REPO / "tools" / "metrics.py").read_text()
    literal = set(re.findall(r'"(fh_[a-z0-9_]+)"', source))
    assert literal and literal <= set(exported)
    assert {"fh_frames_total", "fh_book_gaps_total", "fh_sink_dropped_with_gap_total", "fh_latency_seconds_sum",
            "fh_latency_seconds_count", "fh_nbbo_age_seconds", "fh_book_age_seconds"} <= set(exported)


def test_the_reading_of_promql_finds_metric_names_not_functions_labels_or_keywords():
    expr = ('60 * sum by (venue) (rate(fh_gaps_total{venue=~"a|b"}[5m])) / on (venue) group_left '
            'fh_venue_up or vector(0) > bool 1e-3')
    assert _metric_names(expr) == {"fh_gaps_total", "fh_venue_up"}
    assert _matcher_labels(expr) == [("fh_gaps_total", "venue")]
    assert _grouping_labels(expr) == {"venue"}


# ---------------------------------------------------------------------------------------------- dashboard

def test_the_dashboard_is_grafana_json_of_schema_39_or_later():
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["title"] and dashboard["uid"]


def test_the_dashboard_takes_its_prometheus_datasource_from_a_variable():
    datasource = _variables(_dashboard())["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"


def test_the_venue_and_symbol_variables_come_from_label_values():
    variables = _variables(_dashboard())
    assert re.fullmatch(r"label_values\(fh_venue_up(\{.*\})?, venue\)", _variable_query(variables["venue"]))
    assert re.fullmatch(r"label_values\(fh_book_valid\{.*venue=~\"\$venue\".*\}, symbol\)",
                        _variable_query(variables["symbol"]))


def test_every_panel_queries_the_templated_datasource():
    for panel in _panels(_dashboard()):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"] and target["expr"].strip(), panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]


def test_panels_have_unique_ids_and_do_not_overlap_on_the_grid():
    assert_laid_out(_dashboard()["panels"])


def test_the_dashboard_shows_what_on_call_needs():
    exprs = " ".join(expr for _, expr in _dashboard_queries())
    for name in ("fh_venue_up", "fh_venue_heartbeat_age_seconds", "fh_frames_total", "fh_bytes_total",
                 "fh_decode_errors_total", "fh_gaps_total", "fh_resyncs_total", "fh_checksum_fail_total",
                 "fh_book_valid", "fh_book_age_seconds", "fh_nbbo_valid", "fh_nbbo_crossed", "fh_nbbo_locked",
                 "fh_nbbo_age_seconds", "fh_nbbo_venues_included", "fh_sink_up", "fh_sink_lag_records",
                 "fh_sink_acked_total", "fh_sink_retried_total", "fh_sink_dropped_with_gap_total"):
        assert name in exprs, f"no panel shows {name}"
    latency = [t["expr"] for p in _panels(_dashboard()) for t in p["targets"] if "fh_latency_seconds" in t["expr"]]
    for hop in HOPS:
        mine = " ".join(e for e in latency if f'hop="{hop}"' in e)
        for quantile in ("0.5", "0.99", "0.999"):
            assert f'quantile="{quantile}"' in mine, f"hop {hop}: no p{float(quantile) * 100:g}"
        assert "rate(fh_latency_seconds_sum" in mine and "rate(fh_latency_seconds_count" in mine, f"hop {hop}: no mean"


def test_every_metric_the_dashboard_queries_is_one_fh_metrics_exports(exported):
    assert not _unknown_names(_dashboard_queries(), exported)


def test_every_label_the_dashboard_filters_or_groups_by_is_one_its_metric_has(exported):
    assert not _unknown_labels(_dashboard_queries(), exported)


def test_every_legend_names_labels_its_query_returns(exported):
    bad = [f"{panel['title']!r} {target['refId']}: {label}"
           for panel in _panels(_dashboard()) for target in panel["targets"]
           for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", ""))
           if label not in _result_labels(_promql(target["expr"]), exported)]
    assert not bad


# ---------------------------------------------------------------------------------------------- alert rules

def test_the_rules_are_one_group_named_fh():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert [group["name"] for group in groups] == ["fh"]


def test_the_rules_have_every_alert_on_call_relies_on():
    assert REQUIRED_ALERTS <= set(_alerts())


def test_every_alert_has_a_for_a_severity_and_says_what_and_where_to_look():
    for name, rule in _alerts().items():
        assert "for" in rule, name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(annotations), name
        assert all(annotations[key].strip() for key in ("summary", "description", "runbook")), name


def test_alert_texts_name_only_labels_the_alert_has(exported):
    labels_of = {**PROMETHEUS_OWN, **exported}
    for name, rule in _alerts().items():
        expr = rule["expr"]
        available = _result_labels(expr, labels_of)
        used = set(re.findall(r"\$labels\.(\w+)", " ".join(rule["annotations"].values())))
        assert used, f"{name}: its texts name no label"
        assert used <= available, f"{name}: {used - available}"


def test_every_metric_the_rules_use_is_one_fh_metrics_exports(exported):
    assert not _unknown_names([(name, rule["expr"]) for name, rule in _alerts().items()], exported)


def test_every_label_the_rules_filter_or_group_by_is_one_its_metric_has(exported):
    assert not _unknown_labels([(name, rule["expr"]) for name, rule in _alerts().items()], exported)


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not():
    cases = [case for test in yaml.safe_load(RULES_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for name in _alerts():
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name}: no test where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{name}: no test where it stays silent"


def test_the_unit_test_series_use_only_metrics_and_labels_fh_metrics_exports(exported):
    series = [(f"{test['name']}", s["series"]) for test in yaml.safe_load(RULES_TESTS.read_text())["tests"]
              for s in test["input_series"]]
    assert not _unknown_names(series, exported)
    assert not _unknown_labels(series, exported)


# ---------------------------------------------------------------------------------------------- scrape config

def test_the_example_config_scrapes_fh_metrics_on_9464_and_loads_the_rules():
    config = yaml.safe_load(CONFIG.read_text())
    assert config["rule_files"] == [RULES.name]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "fh"]
    assert [t for sc in job["static_configs"] for t in sc["targets"]] == ["localhost:9464"]


def test_the_job_name_is_the_one_the_rules_select():
    job = yaml.safe_load(CONFIG.read_text())["scrape_configs"][0]["job_name"]
    for name, rule in _alerts().items():
        for value in re.findall(r'job="([^"]*)"', rule["expr"]):
            assert value == job, name


# ---------------------------------------------------------------------------------------------- promtool

@needs_promtool
def test_promtool_accepts_the_rules():
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_accepts_the_example_config_and_the_rules_it_loads():
    result = _promtool("check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


@needs_promtool
def test_the_alert_rules_pass_their_unit_tests():
    """FeedStale, NbboCrossed, SinkLag and the rest fire on the series that should fire them, with the
    texts rendered, and stay silent on a healthy system (monitoring/prometheus-rules.test.yml)."""
    result = _promtool("test", "rules", RULES_TESTS.name, cwd=MONITORING)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_every_dashboard_query_returns_data_from_a_real_exposition(exposition, tmp_path):
    """Each sample of the real exposition becomes a 10-minute series (counters rising, gauges flat), with
    the target labels a scrape adds; every dashboard query, its variables filled in, must return a result."""
    series = []
    for name, labels, value in _samples(exposition):
        text = ",".join(f'{k}="{v}"' for k, v in {**labels, "job": "fh", "instance": "localhost:9464"}.items())
        rising = name.endswith(("_total", "_sum", "_count"))
        values = f"0+{max(value, 1)!r}x40" if rising else f"{value!r}x40"
        series.append({"series": f"{name}{{{text}}}", "values": values})
    queries = _dashboard_queries()
    (tmp_path / "none.yml").write_text("groups: []\n")
    (tmp_path / "dashboard.test.yml").write_text(yaml.safe_dump({
        "rule_files": ["none.yml"], "evaluation_interval": "15s",
        "tests": [{"interval": "15s", "input_series": series,
                   "promql_expr_test": [{"expr": f"count({expr}) > bool 0", "eval_time": "10m",
                                         "exp_samples": [{"labels": "{}", "value": 1}]} for _, expr in queries]}]}))
    result = _promtool("test", "rules", "dashboard.test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
