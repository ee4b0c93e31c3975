import json

import pytest

from feedhandler.instrument_cache import InstrumentCache, InstrumentCacheError

EXCHANGE_INFO = json.dumps({"symbols": [
    {"symbol": "BTCUSDT", "baseAsset": "BTC", "quoteAsset": "USDT", "quoteAssetPrecision": 8, "baseAssetPrecision": 8},
]}).encode()


def test_a_stored_response_loads_back_as_instruments(tmp_path):
    cache = InstrumentCache(tmp_path)
    stored = cache.store("binance", "https://api.binance.com/api/v3/exchangeInfo", EXCHANGE_INFO, fetched_ns=123)
    instruments, fetched_ns = cache.load("binance")
    assert instruments == stored and fetched_ns == 123
    assert [(i.venue_symbol, i.symbol, i.px_dec, i.qty_dec) for i in instruments] == [("BTCUSDT", "BTC-USDT", 8, 8)]


def test_a_venue_never_fetched_has_no_cache(tmp_path):
    assert InstrumentCache(tmp_path).load("kraken") is None


def test_a_bad_response_is_refused_and_the_good_cache_kept(tmp_path):
    cache = InstrumentCache(tmp_path)
    cache.store("binance", "u", EXCHANGE_INFO)
    with pytest.raises(InstrumentCacheError, match="does not parse"):
        cache.store("binance", "u", b"<html>502 Bad Gateway</html>")
    with pytest.raises(InstrumentCacheError, match="lists no instruments"):
        cache.store("binance", "u", b'{"symbols": []}')
    assert cache.load("binance")[0][0].venue_symbol == "BTCUSDT"
    assert [p.name for p in tmp_path.iterdir()] == ["binance.json"]


def test_a_corrupt_cache_file_is_a_clear_error_naming_it(tmp_path):
    cache = InstrumentCache(tmp_path)
    cache.path("coinbase").write_text("{truncated")
    with pytest.raises(InstrumentCacheError, match="coinbase.json"):
        cache.load("coinbase")


def test_the_real_kraken_metadata_from_a_recording_caches(tmp_path, captures):
    url, _, body = (captures / "kraken-v1-2021" / "KRAKEN.0").read_text().splitlines()[0].partition(": ")
    instruments = InstrumentCache(tmp_path).store("kraken", url.split(" -> ")[0], body.encode())
    xbt = {i.venue_symbol: i for i in instruments}["XBT/CHF"]
    assert (xbt.symbol, xbt.px_dec) == ("BTC-CHF", 1)
    assert InstrumentCache(tmp_path).load("kraken")[0] == instruments
