"""Process logs: JSON lines with the process context and the call's reason codes, level and format
from the run config with the environment winning."""
from __future__ import annotations

import json
import logging

import pytest

from feedhandler.config import ConfigError, parse_config
from workers import process


@pytest.fixture
def log_output(monkeypatch, capsys):
    """What the process logs to stderr (the handler is made in the test, on capsys's stderr)."""
    monkeypatch.delenv("FH_LOG_LEVEL", raising=False)
    monkeypatch.delenv("FH_LOG_FORMAT", raising=False)
    yield lambda: capsys.readouterr().err
    logging.getLogger().handlers.clear()


def config(**run) -> object:
    return parse_config({"run": run, "venues": {"kraken": {"symbols": ["BTC-USD"]}}})


def test_json_lines_carry_the_process_context_and_the_reason_code(log_output):
    log = process.setup_logging("fh.venue.kraken", config(log_format="json"), venue="kraken")
    log.warning("kraken conn %d: no data", 2, extra={"conn": 2, "reason": "stale"})
    event = json.loads(log_output())
    assert event["msg"] == "kraken conn 2: no data" and event["level"] == "warning"
    assert (event["venue"], event["conn"], event["reason"], event["logger"]) == ("kraken", 2, "stale", "fh.venue.kraken")
    assert event["ts"].endswith("Z")


def test_the_environment_wins_over_the_config(log_output, monkeypatch):
    monkeypatch.setenv("FH_LOG_LEVEL", "ERROR")
    log = process.setup_logging("fh.test", config(log_level="debug", log_format="json"))
    log.warning("dropped")
    log.error("kept")
    assert [json.loads(line)["msg"] for line in log_output().splitlines()] == ["kept"]


def test_an_unknown_log_format_fails_at_load_naming_the_key():
    with pytest.raises(ConfigError, match="run.log_format"):
        config(log_format="xml")
