"""A configuration that cannot run is refused at load, naming the key: values a TOML file can hold
but fh cannot use (empty or path-like prefixes, nan / inf durations, a zero backoff cap)."""
import pytest

from feedhandler.config import ConfigError, load_config, parse_config

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
