-- fh tables for a modern ClickHouse (the server, or embedded chDB). Applied by the ClickHouse sink at
-- every start; every statement is idempotent. {db} is the sink's database. Prices and sizes are exact
-- int64 mantissas at px_dec / qty_dec decimals; (ring, epoch, seq) identifies a record.

CREATE DATABASE IF NOT EXISTS {db};

CREATE TABLE IF NOT EXISTS {db}.trades (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    epoch Int64,
    seq Int64,
    trade_id Int64,
    ts_exchange DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_publish DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_insert DateTime64(9, 'UTC') DEFAULT now64(9) CODEC(Delta, ZSTD(1)),
    price Int64 CODEC(Delta, ZSTD(1)),
    qty Int64 CODEC(ZSTD(1)),
    px_dec UInt8,
    qty_dec UInt8,
    side LowCardinality(String),
    book_valid UInt8,
    book_update_id Int64 CODEC(Delta, ZSTD(1)),
    bid_px Int64 CODEC(Delta, ZSTD(1)),
    bid_qty Int64 CODEC(ZSTD(1)),
    ask_px Int64 CODEC(Delta, ZSTD(1)),
    ask_qty Int64 CODEC(ZSTD(1)),
    mid_px Nullable(Int64),          -- at px_dec + 1 decimals
    spread Nullable(Int64),
    touch_qty Nullable(Int64),
    levels_swept Int32,
    nbbo_bid_px Nullable(Int64),     -- at nbbo_px_dec decimals
    nbbo_ask_px Nullable(Int64),
    nbbo_px_dec Nullable(UInt8),
    through_nbbo Nullable(UInt8)
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts_recv)
ORDER BY (symbol, venue, ts_recv, epoch, seq)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.depth (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    epoch Int64,
    seq Int64,
    update_id Int64,
    valid UInt8,
    changes Int32,                   -- ring book changes this snapshot stands for (conflation)
    periodic UInt8,
    ts_exchange DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_publish DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_insert DateTime64(9, 'UTC') DEFAULT now64(9) CODEC(Delta, ZSTD(1)),
    px_dec UInt8,
    qty_dec UInt8,
    bid_px Array(Int64) CODEC(ZSTD(1)),
    bid_qty Array(Int64) CODEC(ZSTD(1)),
    ask_px Array(Int64) CODEC(ZSTD(1)),
    ask_qty Array(Int64) CODEC(ZSTD(1))
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts_recv)
ORDER BY (symbol, venue, ts_recv, epoch, seq, periodic)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.top_of_book (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    epoch Int64,
    seq Int64,
    update_id Int64,
    valid UInt8,
    ts_exchange DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    px_dec UInt8,
    qty_dec UInt8,
    bid_px Int64 CODEC(Delta, ZSTD(1)),
    bid_qty Int64 CODEC(ZSTD(1)),
    ask_px Int64 CODEC(Delta, ZSTD(1)),
    ask_qty Int64 CODEC(ZSTD(1))
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts_recv)
ORDER BY (symbol, venue, ts_recv, epoch, seq);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.top_of_book_mv TO {db}.top_of_book AS
SELECT venue, symbol, epoch, seq, update_id, valid, ts_exchange, ts_recv, px_dec, qty_dec,
       if(length(bid_px) > 0, bid_px[1], 0) AS bid_px, if(length(bid_qty) > 0, bid_qty[1], 0) AS bid_qty,
       if(length(ask_px) > 0, ask_px[1], 0) AS ask_px, if(length(ask_qty) > 0, ask_qty[1], 0) AS ask_qty
FROM {db}.depth;

CREATE TABLE IF NOT EXISTS {db}.nbbo (
    symbol LowCardinality(String),
    epoch Int64,
    seq Int64,
    changes Int64,
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_publish DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    source_ts_publish DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_insert DateTime64(9, 'UTC') DEFAULT now64(9) CODEC(Delta, ZSTD(1)),
    source_venue LowCardinality(String),
    px_dec UInt8,
    qty_dec UInt8,
    bid_px Int64 CODEC(Delta, ZSTD(1)),
    bid_qty Int64 CODEC(ZSTD(1)),
    ask_px Int64 CODEC(Delta, ZSTD(1)),
    ask_qty Int64 CODEC(ZSTD(1)),
    bid_venues Array(LowCardinality(String)),
    ask_venues Array(LowCardinality(String)),
    flags UInt8                      -- 1 locked, 2 crossed
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts_recv)
ORDER BY (symbol, ts_recv, epoch, seq)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.status (
    venue LowCardinality(String),
    symbol LowCardinality(String),   -- empty: the whole venue
    ring LowCardinality(String),
    epoch Int64,
    seq Int64,
    kind LowCardinality(String),     -- status | gap
    status LowCardinality(String),
    reason LowCardinality(String),
    missed Int64,                    -- gap: records this sink lost (-1: unknown)
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_publish DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_insert DateTime64(9, 'UTC') DEFAULT now64(9) CODEC(Delta, ZSTD(1))
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts_recv)
ORDER BY (venue, symbol, ts_recv, ring, epoch, seq)
SETTINGS non_replicated_deduplication_window = 1000;

-- 1-minute bars per venue and symbol from the trades (exchange time). Read them with
--   SELECT symbol, venue, minute, argMinMerge(open), max(high), min(low), argMaxMerge(close), sum(volume),
--          sum(trades), sum(spread_sum) / sum(spread_n) FROM {db}.bars_1m GROUP BY symbol, venue, minute
CREATE TABLE IF NOT EXISTS {db}.bars_1m (
    symbol LowCardinality(String),
    venue LowCardinality(String),
    minute DateTime('UTC'),
    px_dec SimpleAggregateFunction(any, UInt8),
    qty_dec SimpleAggregateFunction(any, UInt8),
    open AggregateFunction(argMin, Int64, DateTime64(9, 'UTC')),
    high SimpleAggregateFunction(max, Int64),
    low SimpleAggregateFunction(min, Int64),
    close AggregateFunction(argMax, Int64, DateTime64(9, 'UTC')),
    volume SimpleAggregateFunction(sum, Int64),
    trades SimpleAggregateFunction(sum, UInt64),
    spread_sum SimpleAggregateFunction(sum, Int64),
    spread_n SimpleAggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (symbol, venue, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.bars_1m_mv TO {db}.bars_1m AS
SELECT symbol, venue, toStartOfMinute(ts_exchange) AS minute, any(px_dec) AS px_dec, any(qty_dec) AS qty_dec,
       argMinState(price, ts_exchange) AS open, max(price) AS high, min(price) AS low,
       argMaxState(price, ts_exchange) AS close, sum(qty) AS volume, count() AS trades,
       sum(ifNull(spread, 0)) AS spread_sum, countIf(spread IS NOT NULL) AS spread_n
FROM {db}.trades
GROUP BY symbol, venue, minute;
