"""A configuration that cannot run is refused at load, naming the key: values a TOML file can hold
but fh cannot use (empty or path-like prefixes, nan / inf durations, a zero backoff cap)."""
import re
from pathlib import Path

import pytest

from feedhandler.config import ConfigError, load_config, parse_config
from tools.sim.server import DEFAULT_INSTRUMENTS, DEFAULT_VENUES, Simulator

VENUE = {"kraken": {"symbols": ["BTC-USD"]}}


@pytest.mark.parametrize("prefix", ["", "a/b", "../fh", "fh.x", "x" * 65])
def test_a_prefix_that_is_not_a_plain_name_is_refused(prefix):
    with pytest.raises(ConfigError, match=r"run\.prefix: .* must be 1-64 of"):
        parse_config({"run": {"prefix": prefix}, "venues": VENUE})


@pytest.mark.parametrize("text, key", [
    ("[venues.kraken]\nsymbols = ['BTC-USD']\nstale_after_s = nan\n", r"venues\.kraken\.stale_after_s"),
    ("[venues.kraken]\nsymbols = ['BTC-USD']\n[aggregator]\nstale_ms = inf\n", r"aggregator\.stale_ms"),
    ("[venues.kraken]\nsymbols = ['BTC-USD']\n[sinks.redis]\nurl = 'redis://127.0.0.1:6379'\nlinger_s = -nan\n",
     r"sinks\.redis\.linger_s"),
])
def test_a_non_finite_number_is_refused_naming_the_key(tmp_path, text, key):
    path = tmp_path / "fh.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"{key}: must be a finite number"):
        load_config(str(path))


def test_a_zero_backoff_cap_is_refused():
    with pytest.raises(ConfigError, match=r"sinks\.redis\.retry_max_s: must be > 0"):
        parse_config({"venues": VENUE, "sinks": {"redis": {"url": "redis://127.0.0.1:6379", "retry_max_s": 0}}})


def test_the_defaults_and_a_plain_prefix_load():
    assert parse_config({"run": {"prefix": "fh_prod-2"}, "venues": VENUE}).prefix == "fh_prod-2"


def test_configs_sim_toml_runs_what_fh_sim_serves_by_default_where_it_serves_it_and_make_run_names_its_ports():
    repo = Path(__file__).resolve().parent.parent
    config = load_config(str(repo / "configs/sim.toml"))
    urls = Simulator.synthetic(list(DEFAULT_VENUES)).urls()
    assert {name: {"ws_url": v.ws_url, "rest_url": v.rest_url} for name, v in config.venues.items()} == urls
    assert {name: list(v.symbols) for name, v in config.venues.items()} == {
        name: [i.symbol for i in DEFAULT_INSTRUMENTS[name]] for name in DEFAULT_VENUES}
    low, high = map(int, re.search(r"wants its ports (\d+)-(\d+) free", (repo / "Makefile").read_text()).groups())
    ports = {int(url.split(":")[2].split("/")[0]) for venue in urls.values() for url in venue.values()}
    assert ports == set(range(low, high + 1))
