-- fh tables for ClickHouse servers without DateTime64 and codecs (the Debian package, 18.16): the same
-- tables and columns as schema.sql, timestamps as Int64 ns since the epoch, plain String instead of
-- LowCardinality, no materialized views (so no top_of_book, bars_1m, funding_8h nor liquidations_1m).
-- Applied by the sink at start when the server is older than 20.1.

CREATE DATABASE IF NOT EXISTS {db};

CREATE TABLE IF NOT EXISTS {db}.trades (
    venue String, symbol String, epoch Int64, seq Int64, trade_id Int64,
    ts_exchange Int64, ts_recv Int64, ts_publish Int64,
    price Int64, qty Int64, px_dec UInt8, qty_dec UInt8, side String,
    book_valid UInt8, book_update_id Int64, bid_px Int64, bid_qty Int64, ask_px Int64, ask_qty Int64,
    mid_px Nullable(Int64), spread Nullable(Int64), touch_qty Nullable(Int64), levels_swept Int32,
    nbbo_bid_px Nullable(Int64), nbbo_ask_px Nullable(Int64), nbbo_px_dec Nullable(UInt8), through_nbbo Nullable(UInt8)
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(toDateTime(intDiv(ts_recv, 1000000000)))
ORDER BY (symbol, venue, ts_recv, epoch, seq);

CREATE TABLE IF NOT EXISTS {db}.depth (
    venue String, symbol String, epoch Int64, seq Int64, update_id Int64, valid UInt8, changes Int32, periodic UInt8,
    ts_exchange Int64, ts_recv Int64, ts_publish Int64, px_dec UInt8, qty_dec UInt8,
    bid_px Array(Int64), bid_qty Array(Int64), ask_px Array(Int64), ask_qty Array(Int64)
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(toDateTime(intDiv(ts_recv, 1000000000)))
ORDER BY (symbol, venue, ts_recv, epoch, seq, periodic);

CREATE TABLE IF NOT EXISTS {db}.nbbo (
    symbol String, epoch Int64, seq Int64, changes Int64, ts_recv Int64, ts_publish Int64, source_ts_publish Int64,
    source_venue String, px_dec UInt8, qty_dec UInt8, bid_px Int64, bid_qty Int64, ask_px Int64, ask_qty Int64,
    bid_venues Array(String), ask_venues Array(String), flags UInt8
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(toDateTime(intDiv(ts_recv, 1000000000)))
ORDER BY (symbol, ts_recv, epoch, seq);

CREATE TABLE IF NOT EXISTS {db}.status (
    venue String, symbol String, ring String, epoch Int64, seq Int64, kind String, status String, reason String,
    missed Int64, ts_recv Int64, ts_publish Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(toDateTime(intDiv(ts_recv, 1000000000)))
ORDER BY (venue, symbol, ts_recv, ring, epoch, seq);

CREATE TABLE IF NOT EXISTS {db}.bbo (
    venue String, symbol String, epoch Int64, seq Int64, update_id Int64, ts_exchange Int64, ts_recv Int64,
    ts_publish Int64, px_dec UInt8, qty_dec UInt8, bid_px Int64, bid_qty Int64, ask_px Int64, ask_qty Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(toDateTime(intDiv(ts_recv, 1000000000)))
ORDER BY (symbol, venue, ts_recv, epoch, seq);

CREATE TABLE IF NOT EXISTS {db}.funding (
    venue String, symbol String, epoch Int64, seq Int64, ts_exchange Int64, ts_recv Int64, ts_publish Int64,
    px_dec UInt8, rate Int64, rate_dec UInt8, next_funding_time Int64, mark_px Int64, index_px Int64, fields UInt8
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(toDateTime(intDiv(ts_recv, 1000000000)))
ORDER BY (symbol, venue, ts_recv, epoch, seq);

CREATE TABLE IF NOT EXISTS {db}.open_interest (
    venue String, symbol String, epoch Int64, seq Int64, ts_exchange Int64, ts_recv Int64, ts_publish Int64,
    qty_dec UInt8, open_interest Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(toDateTime(intDiv(ts_recv, 1000000000)))
ORDER BY (symbol, venue, ts_recv, epoch, seq);

CREATE TABLE IF NOT EXISTS {db}.liquidations (
    venue String, symbol String, epoch Int64, seq Int64, ts_exchange Int64, ts_recv Int64, ts_publish Int64,
    px_dec UInt8, qty_dec UInt8, price Int64, qty Int64, side String, venue_side String
) ENGINE = ReplacingMergeTree
PARTITION BY toDate(toDateTime(intDiv(ts_recv, 1000000000)))
ORDER BY (symbol, venue, ts_recv, epoch, seq);

-- The readable views of schema.sql these tables allow (trades_readable, nbbo_readable): the same columns,
-- timestamps as Int64 ns. Created once: 18.16 has no CREATE OR REPLACE VIEW.
CREATE VIEW IF NOT EXISTS {db}.trades_readable AS
SELECT ts_exchange, ts_recv, venue, symbol, side, trade_id,
       toDecimal128(price, 18) / intExp10(px_dec) AS price,
       toDecimal128(qty, 18) / intExp10(qty_dec) AS qty,
       if(spread IS NULL, NULL, toDecimal128(bid_px, 18) / intExp10(px_dec)) AS bid,
       if(spread IS NULL, NULL, toDecimal128(ask_px, 18) / intExp10(px_dec)) AS ask,
       toDecimal128(spread, 18) / intExp10(px_dec) AS spread, levels_swept
FROM {db}.trades FINAL;

CREATE VIEW IF NOT EXISTS {db}.nbbo_readable AS
SELECT ts_recv, ts_publish, symbol,
       toDecimal128(bid_px, 18) / intExp10(px_dec) AS bid, toDecimal128(bid_qty, 18) / intExp10(qty_dec) AS bid_qty,
       toDecimal128(ask_px, 18) / intExp10(px_dec) AS ask, toDecimal128(ask_qty, 18) / intExp10(qty_dec) AS ask_qty,
       toDecimal128(ask_px - bid_px, 18) / intExp10(px_dec) AS spread, bid_venues, ask_venues, source_venue,
       bitAnd(flags, 1) = 1 AS locked, bitAnd(flags, 2) = 2 AS crossed
FROM {db}.nbbo FINAL;
