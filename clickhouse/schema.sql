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

-- A derivatives venue's market records: its own best bid/offer, funding (rate at rate_dec = 18
-- decimals; fields: what the message carried, 1 rate 2 next_funding_time 4 mark 8 index, the others as
-- last sent), open interest (qty_dec decimals: contracts where the venue counts contracts) and
-- liquidations (side: of the liquidation order, a liquidated long is a sell; venue_side as sent).
-- A funding or liquidation row's px_dec is that of its mark, index or liquidation price: the
-- instrument's price decimals or 8, whichever is finer (these prices are not on the tick grid).
CREATE TABLE IF NOT EXISTS {db}.bbo (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    epoch Int64,
    seq Int64,
    update_id Int64,
    ts_exchange DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_publish DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_insert DateTime64(9, 'UTC') DEFAULT now64(9) CODEC(Delta, ZSTD(1)),
    px_dec UInt8,
    qty_dec UInt8,
    bid_px Int64 CODEC(Delta, ZSTD(1)),
    bid_qty Int64 CODEC(ZSTD(1)),    -- 0: no bid
    ask_px Int64 CODEC(Delta, ZSTD(1)),
    ask_qty Int64 CODEC(ZSTD(1))     -- 0: no ask
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts_recv)
ORDER BY (symbol, venue, ts_recv, epoch, seq)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.funding (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    epoch Int64,
    seq Int64,
    ts_exchange DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_publish DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_insert DateTime64(9, 'UTC') DEFAULT now64(9) CODEC(Delta, ZSTD(1)),
    px_dec UInt8,
    rate Int64,
    rate_dec UInt8,
    next_funding_time DateTime64(9, 'UTC'),
    mark_px Int64 CODEC(Delta, ZSTD(1)),
    index_px Int64 CODEC(Delta, ZSTD(1)),
    fields UInt8
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts_recv)
ORDER BY (symbol, venue, ts_recv, epoch, seq)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.open_interest (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    epoch Int64,
    seq Int64,
    ts_exchange DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_publish DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_insert DateTime64(9, 'UTC') DEFAULT now64(9) CODEC(Delta, ZSTD(1)),
    qty_dec UInt8,
    open_interest Int64 CODEC(Delta, ZSTD(1))
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts_recv)
ORDER BY (symbol, venue, ts_recv, epoch, seq)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.liquidations (
    venue LowCardinality(String),
    symbol LowCardinality(String),
    epoch Int64,
    seq Int64,
    ts_exchange DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_recv DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_publish DateTime64(9, 'UTC') CODEC(Delta, ZSTD(1)),
    ts_insert DateTime64(9, 'UTC') DEFAULT now64(9) CODEC(Delta, ZSTD(1)),
    px_dec UInt8,
    qty_dec UInt8,
    price Int64,
    qty Int64,
    side LowCardinality(String),
    venue_side LowCardinality(String)
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts_recv)
ORDER BY (symbol, venue, ts_recv, epoch, seq)
SETTINGS non_replicated_deduplication_window = 1000;

-- 1-minute bars per venue and symbol from the trades (exchange time), as aggregate states: read them
-- through bars_1m_readable (below), which finalizes them.
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

-- Funding per 8-hour period (00:00, 08:00, 16:00 UTC, exchange time) per venue and symbol: the last
-- rate sent in it (and its next funding time) and the mean mark price, as aggregate states: read them
-- through funding_8h_readable (below).
CREATE TABLE IF NOT EXISTS {db}.funding_8h (
    symbol LowCardinality(String),
    venue LowCardinality(String),
    period DateTime('UTC'),
    px_dec SimpleAggregateFunction(any, UInt8),
    last_rate AggregateFunction(argMax, Int64, DateTime64(9, 'UTC')),
    last_funding_time AggregateFunction(argMax, DateTime64(9, 'UTC'), DateTime64(9, 'UTC')),  -- of the last rate
    rates SimpleAggregateFunction(sum, UInt64),      -- messages that carried a rate
    mark_sum SimpleAggregateFunction(sum, Int64),
    mark_n SimpleAggregateFunction(sum, UInt64)      -- messages that carried a mark price
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(period)
ORDER BY (symbol, venue, period)
SETTINGS non_replicated_deduplication_window = 1000;  -- a retried batch is not aggregated twice

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.funding_8h_mv TO {db}.funding_8h AS
SELECT symbol, venue, toDateTime(toStartOfInterval(ts_exchange, INTERVAL 8 HOUR), 'UTC') AS period,
       any(px_dec) AS px_dec, argMaxStateIf(rate, ts_exchange, bitAnd(fields, 1) = 1) AS last_rate,
       argMaxStateIf(next_funding_time, ts_exchange, bitAnd(fields, 1) = 1) AS last_funding_time,
       countIf(bitAnd(fields, 1) = 1) AS rates, sumIf(mark_px, bitAnd(fields, 4) = 4) AS mark_sum,
       countIf(bitAnd(fields, 4) = 4) AS mark_n
FROM {db}.funding
GROUP BY symbol, venue, period;

-- Liquidations per minute (exchange time) per venue, symbol and side: how many, their quantity (volume) and
-- notional (price x qty, exact at px_dec + qty_dec decimals; in the venue's quantity unit, so on a
-- contract-counting venue it is price x contracts).
CREATE TABLE IF NOT EXISTS {db}.liquidations_1m (
    symbol LowCardinality(String),
    venue LowCardinality(String),
    side LowCardinality(String),
    minute DateTime('UTC'),
    px_dec SimpleAggregateFunction(any, UInt8),
    qty_dec SimpleAggregateFunction(any, UInt8),
    liquidations SimpleAggregateFunction(sum, UInt64),
    volume SimpleAggregateFunction(sum, Int64),
    notional SimpleAggregateFunction(sum, Int128)
) ENGINE = AggregatingMergeTree
PARTITION BY toDate(minute)
ORDER BY (symbol, venue, side, minute)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.liquidations_1m_mv TO {db}.liquidations_1m AS
SELECT symbol, venue, side, toStartOfMinute(ts_exchange) AS minute, any(px_dec) AS px_dec, any(qty_dec) AS qty_dec,
       count() AS liquidations, sum(qty) AS volume, sum(toInt128(price) * qty) AS notional
FROM {db}.liquidations
GROUP BY symbol, venue, side, minute;

-- Readable views: plain SELECTs, prices and sizes as exact decimals (NULL: no price, e.g. an empty
-- book side; top_of_book_readable leaves out books waiting for a resync). A mantissa m at d decimals
-- is toDecimal128(m, 18) / intExp10(d): Decimal(38, 18) holds every int64 mantissa at fh's 0..18
-- decimals exactly, and dividing by a power of ten of at most 10^18 leaves no remainder; text formats
-- print them without trailing zeros. Views hold no data: each start replaces them with these. Trades
-- and NBBO are read FINAL, so a batch retried after a crash never shows twice.
CREATE OR REPLACE VIEW {db}.trades_readable AS
SELECT t.ts_exchange AS ts_exchange, t.ts_recv AS ts_recv, t.venue AS venue, t.symbol AS symbol, t.side AS side,
       t.trade_id AS trade_id,
       toDecimal128(t.price, 18) / intExp10(t.px_dec) AS price,
       toDecimal128(t.qty, 18) / intExp10(t.qty_dec) AS qty,
       if(t.spread IS NULL, NULL, toDecimal128(t.bid_px, 18) / intExp10(t.px_dec)) AS bid,
       if(t.spread IS NULL, NULL, toDecimal128(t.ask_px, 18) / intExp10(t.px_dec)) AS ask,
       toDecimal128(t.spread, 18) / intExp10(t.px_dec) AS spread, t.levels_swept AS levels_swept
FROM {db}.trades AS t FINAL;

CREATE OR REPLACE VIEW {db}.top_of_book_readable AS
SELECT b.ts_exchange AS ts_exchange, b.ts_recv AS ts_recv, b.venue AS venue, b.symbol AS symbol,
       if(b.bid_qty = 0, NULL, toDecimal128(b.bid_px, 18) / intExp10(b.px_dec)) AS bid,
       toDecimal128(b.bid_qty, 18) / intExp10(b.qty_dec) AS bid_qty,
       if(b.ask_qty = 0, NULL, toDecimal128(b.ask_px, 18) / intExp10(b.px_dec)) AS ask,
       toDecimal128(b.ask_qty, 18) / intExp10(b.qty_dec) AS ask_qty,
       ask - bid AS spread
FROM {db}.top_of_book AS b
WHERE b.valid = 1;

CREATE OR REPLACE VIEW {db}.nbbo_readable AS
SELECT n.ts_recv AS ts_recv, n.ts_publish AS ts_publish, n.symbol AS symbol,
       toDecimal128(n.bid_px, 18) / intExp10(n.px_dec) AS bid,
       toDecimal128(n.bid_qty, 18) / intExp10(n.qty_dec) AS bid_qty,
       toDecimal128(n.ask_px, 18) / intExp10(n.px_dec) AS ask,
       toDecimal128(n.ask_qty, 18) / intExp10(n.qty_dec) AS ask_qty,
       toDecimal128(n.ask_px - n.bid_px, 18) / intExp10(n.px_dec) AS spread,
       n.bid_venues AS bid_venues, n.ask_venues AS ask_venues, n.source_venue AS source_venue,
       bitAnd(n.flags, 1) = 1 AS locked, bitAnd(n.flags, 2) = 2 AS crossed
FROM {db}.nbbo AS n FINAL;

-- bars_1m finalized: one row per venue, symbol and minute, OHLC and mean spread at the trades' price
-- decimals, volume at their size decimals.
CREATE OR REPLACE VIEW {db}.bars_1m_readable AS
SELECT b.minute AS minute, b.venue AS venue, b.symbol AS symbol,
       toDecimal128(argMinMerge(b.open), 18) / intExp10(any(b.px_dec)) AS open,
       toDecimal128(max(b.high), 18) / intExp10(any(b.px_dec)) AS high,
       toDecimal128(min(b.low), 18) / intExp10(any(b.px_dec)) AS low,
       toDecimal128(argMaxMerge(b.close), 18) / intExp10(any(b.px_dec)) AS close,
       toDecimal128(sum(b.volume), 18) / intExp10(any(b.qty_dec)) AS volume,
       sum(b.trades) AS trades,
       if(sum(b.spread_n) = 0, NULL, toDecimal128(sum(b.spread_sum), 18) / intExp10(any(b.px_dec)) / sum(b.spread_n))
           AS mean_spread
FROM {db}.bars_1m AS b
GROUP BY b.symbol, b.venue, b.minute;

-- funding_8h finalized: the period's last rate (NULL: none sent in it) and mean mark price (NULL: no mark).
CREATE OR REPLACE VIEW {db}.funding_8h_readable AS
SELECT f.period AS period, f.venue AS venue, f.symbol AS symbol,
       if(sum(f.rates) = 0, NULL, toDecimal128(argMaxMerge(f.last_rate), 18) / intExp10(18)) AS rate,
       if(sum(f.rates) = 0, NULL, argMaxMerge(f.last_funding_time)) AS next_funding_time,
       sum(f.rates) AS rates,
       if(sum(f.mark_n) = 0, NULL, toDecimal128(sum(f.mark_sum), 18) / intExp10(any(f.px_dec)) / sum(f.mark_n))
           AS mean_mark
FROM {db}.funding_8h AS f
GROUP BY f.symbol, f.venue, f.period;

-- liquidations_1m finalized: quantity at the size decimals, notional as an exact decimal.
CREATE OR REPLACE VIEW {db}.liquidations_1m_readable AS
SELECT l.minute AS minute, l.venue AS venue, l.symbol AS symbol, l.side AS side,
       sum(l.liquidations) AS liquidations,
       toDecimal128(sum(l.volume), 18) / intExp10(any(l.qty_dec)) AS volume,
       toDecimal256(sum(l.notional), 36) / intExp10(any(l.px_dec)) / intExp10(any(l.qty_dec)) AS notional
FROM {db}.liquidations_1m AS l
GROUP BY l.symbol, l.venue, l.side, l.minute;
