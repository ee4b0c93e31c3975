"""`fh bench query`: the seed's ClickHouse target, a 1-day aggregate of one symbol in under 100 ms, in
embedded chDB with the sink's own schema. A synthetic day of trades (every venue and symbol, times
spread over 24 h) goes in through the sink's store in its batch size, the bars view filling as it
would live; then each query runs `repeats` times: 1-minute OHLC, volume and VWAP of one symbol from
the raw trades, the same bars from the `bars_1m` view, and a per-venue summary of the day."""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from feedhandler.config import SINK_DEFAULTS
from workers.sinks.clickhouse import SCHEMA_DIR, TABLES, _Chdb, split_schema

from .stats import machine

VENUES = ("binance", "coinbase", "kraken")
SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT")
SYMBOL = SYMBOLS[0]
DAY_START_S = 1_764_892_800  # 2025-12-05 00:00 UTC
DAY_S = 86_400
DAY_NS = DAY_S * 10**9
BATCH_ROWS = SINK_DEFAULTS["clickhouse"]["batch_max"]  # inserts as large as the sink's
PX_DEC, QTY_DEC = 2, 6

_WINDOW = (f"symbol = '{SYMBOL}' AND ts_recv >= fromUnixTimestamp64Nano(toInt64({DAY_START_S * 10**9})) "
           f"AND ts_recv < fromUnixTimestamp64Nano(toInt64({DAY_START_S * 10**9 + DAY_NS}))")
QUERIES = {
    "ohlcv_1m_from_trades": f"""
        SELECT toStartOfMinute(ts_exchange) AS minute, argMin(price, ts_exchange), max(price), min(price),
               argMax(price, ts_exchange), sum(qty), count(), intDiv(sum(price * qty), sum(qty))
        FROM {{db}}.trades WHERE {_WINDOW} GROUP BY minute ORDER BY minute""",
    "ohlcv_1m_from_bars": f"""
        SELECT minute, argMinMerge(open), max(high), min(low), argMaxMerge(close), sum(volume), sum(trades)
        FROM {{db}}.bars_1m
        WHERE symbol = '{SYMBOL}' AND minute >= toDateTime({DAY_START_S}, 'UTC')
              AND minute < toDateTime({DAY_START_S + DAY_S}, 'UTC')
        GROUP BY minute ORDER BY minute""",
    "day_by_venue_from_trades": f"""
        SELECT venue, count(), sum(qty), min(price), max(price), avg(spread)
        FROM {{db}}.trades WHERE {_WINDOW} GROUP BY venue ORDER BY venue""",
}


def _day_of_trades(venue_index: int, symbol_index: int, count: int, rng: np.random.Generator) -> dict:
    """One venue's day of one symbol: exact integer prices on a random walk, exchange times spread
    over the day, received 0.2-5 ms later."""
    ts_exchange = DAY_START_S * 10**9 + np.sort(rng.integers(0, DAY_NS, count))
    ts_recv = ts_exchange + rng.integers(200_000, 5_000_000, count)
    price = (5_000_000 * (symbol_index + 1) + np.cumsum(rng.integers(-3, 4, count))).astype(np.int64)
    spread = rng.integers(1, 5, count)
    side = rng.integers(0, 2, count)
    return {
        "venue": [VENUES[venue_index]] * count, "symbol": [SYMBOLS[symbol_index]] * count,
        "epoch": np.full(count, venue_index + 1, np.int64), "seq": np.arange(count, dtype=np.int64),
        "trade_id": np.arange(count, dtype=np.int64), "ts_exchange": ts_exchange, "ts_recv": ts_recv,
        "ts_publish": ts_recv + 2_000, "price": price, "qty": rng.integers(1, 2_000_000, count),
        "px_dec": np.full(count, PX_DEC, np.uint8), "qty_dec": np.full(count, QTY_DEC, np.uint8),
        "side": np.array(["buy", "sell"], object)[side].tolist(), "book_valid": np.ones(count, np.uint8),
        "bid_px": price - spread * side, "ask_px": price + spread * (1 - side), "spread": spread,
    }


def _insert_day(store: _Chdb, trades_per_day: int) -> int:
    kinds = dict(TABLES["trades"][1])
    rng = np.random.default_rng(7)
    rows = 0
    for v in range(len(VENUES)):
        for s in range(len(SYMBOLS)):
            day = _day_of_trades(v, s, trades_per_day, rng)
            for start in range(0, trades_per_day, BATCH_ROWS):
                part = {name: values[start:start + BATCH_ROWS] for name, values in day.items()}
                store.insert("trades", store.prepare(part, {}, kinds), f"bench:{v}:{s}:{start}")
                rows += len(part["seq"])
    return rows


def _timed(store: _Chdb, sql: str, repeats: int) -> tuple[list[tuple], np.ndarray]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = store.query(sql)
        times.append(time.perf_counter() - started)
    return result, np.array(times) * 1e3


def run(trades_per_day: int = 1_000_000, repeats: int = 20) -> dict:
    root = Path(tempfile.mkdtemp(prefix="fh-bench-query-"))
    store = _Chdb(str(root / "chdb"))
    try:
        for statement in split_schema((SCHEMA_DIR / "schema.sql").read_text(), store.database):
            store.execute(statement)
        started = time.perf_counter()
        rows = _insert_day(store, trades_per_day)
        result: dict = {"rows": rows, "symbol_rows": trades_per_day * len(VENUES),
                        "insert_rows_per_s": rows / (time.perf_counter() - started)}
        answers = {}
        for name, sql in QUERIES.items():
            answers[name], ms = _timed(store, sql.replace("{db}", store.database), repeats)
            result[name] = {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                            "first_ms": float(ms[0]), "result_rows": len(answers[name])}
        bars = [tuple(str(v) for v in row) for row in answers["ohlcv_1m_from_bars"]]
        result["bars_view_matches_trades"] = bars == [tuple(str(v) for v in row[:7])
                                                      for row in answers["ohlcv_1m_from_trades"]]
        result["machine"] = machine()
        return result
    finally:
        store.close()
        shutil.rmtree(root, ignore_errors=True)
