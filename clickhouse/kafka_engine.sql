-- For deployments where ClickHouse consumes fh's Kafka topics itself (instead of, or beside, the
-- ClickHouse sink): Kafka engine tables reading the msgpack records, and materialized views into the
-- tables of schema.sql (apply that first). {db} is the database, {brokers} the bootstrap servers and
-- {prefix} the Kafka sink's topic prefix.
--
-- NOT EXERCISED HERE: the only ClickHouse server these machines can install is 18.16, whose Kafka
-- engine ingested nothing from the Tansu broker, and chDB has no background consumers. Test it against
-- your own ClickHouse and Kafka before relying on it. One known question to settle there: the sink
-- writes each record as a msgpack map, while ClickHouse's MsgPack input format reads a row as its
-- columns' values in order; if your version does not map keys to columns, read the topic as
-- kafka_format = 'RawBLOB' and unpack in the view, or have the sink write JSON.

CREATE TABLE IF NOT EXISTS {db}.kafka_trades (
    venue String, symbol String, epoch Int64, seq Int64, trade_id Int64,
    ts_exchange Int64, ts_recv Int64, ts_publish Int64, price Int64, qty Int64, px_dec UInt8, qty_dec UInt8,
    side String, book_valid UInt8, book_update_id Int64, bid_px Int64, bid_qty Int64, ask_px Int64, ask_qty Int64,
    mid_px Nullable(Int64), spread Nullable(Int64), touch_qty Nullable(Int64), levels_swept Int32,
    nbbo_bid_px Nullable(Int64), nbbo_ask_px Nullable(Int64), nbbo_px_dec Nullable(UInt8), through_nbbo Nullable(UInt8)
) ENGINE = Kafka
SETTINGS kafka_broker_list = '{brokers}', kafka_topic_list = '{prefix}.trades',
         kafka_group_name = 'clickhouse-{db}-trades', kafka_format = 'MsgPack', kafka_skip_broken_messages = 100;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kafka_trades_mv TO {db}.trades AS
SELECT venue, symbol, epoch, seq, trade_id,
       fromUnixTimestamp64Nano(ts_exchange) AS ts_exchange, fromUnixTimestamp64Nano(ts_recv) AS ts_recv,
       fromUnixTimestamp64Nano(ts_publish) AS ts_publish, price, qty, px_dec, qty_dec, side, book_valid,
       book_update_id, bid_px, bid_qty, ask_px, ask_qty, mid_px, spread, touch_qty, levels_swept,
       nbbo_bid_px, nbbo_ask_px, nbbo_px_dec, through_nbbo
FROM {db}.kafka_trades;

CREATE TABLE IF NOT EXISTS {db}.kafka_nbbo (
    symbol String, epoch Int64, seq Int64, changes Int64, ts_recv Int64, ts_publish Int64, source_ts_publish Int64,
    source_venue Nullable(String), px_dec UInt8, qty_dec UInt8, bid_px Int64, bid_qty Int64, ask_px Int64,
    ask_qty Int64, bid_venues Array(String), ask_venues Array(String), flags UInt8
) ENGINE = Kafka
SETTINGS kafka_broker_list = '{brokers}', kafka_topic_list = '{prefix}.nbbo',
         kafka_group_name = 'clickhouse-{db}-nbbo', kafka_format = 'MsgPack', kafka_skip_broken_messages = 100;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kafka_nbbo_mv TO {db}.nbbo AS
SELECT symbol, epoch, seq, changes, fromUnixTimestamp64Nano(ts_recv) AS ts_recv,
       fromUnixTimestamp64Nano(ts_publish) AS ts_publish,
       fromUnixTimestamp64Nano(source_ts_publish) AS source_ts_publish, ifNull(source_venue, '') AS source_venue,
       px_dec, qty_dec, bid_px, bid_qty, ask_px, ask_qty, bid_venues, ask_venues, flags
FROM {db}.kafka_nbbo;
