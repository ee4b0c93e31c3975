"""The derivatives market records (bbo, funding, open interest, liquidation) through the sinks, against
real services: each reaches Kafka, Redis and ClickHouse with every field exact, ClickHouse's views
aggregate funding per 8-hour period and liquidations per minute, and `fh run`'s summary counts them.
The records are published the way a venue step publishes them (feed_kernels.publish_stats)."""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import msgpack
import numpy as np
import pytest
import redis

from feedhandler.config import SinkConfig
from feedhandler.feed_kernels import KIND_BBO, KIND_FUNDING, KIND_LIQUIDATION, KIND_OPEN_INTEREST, publish_stats
from feedhandler.publish import output_of
from shm.histogram import HIST_WORDS
from shm.layout import FIELD_FUNDING_TIME, FIELD_INDEX, FIELD_MARK, FIELD_RATE, RATE_DEC, Side, stats_px_dec
from shm.reader import BboEvent, FundingEvent, LiquidationEvent, OpenInterestEvent, funding_rate
from shm.segment import InstrumentSpec, SegmentWriter
from tests.sinks import Reference, at_heads, consume_all, run_config, run_sink_until, sink_settings
from workers.sinks.clickhouse import ClickHouseSink
from workers.sinks.records import SCHEMA_VERSION
from workers.sinks.source import Batch, Position, RingSource
from workers.supervisor import summary

I64 = np.int64
VENUE = "binance_usdm"
SPEC = [InstrumentSpec("BTCUSDT", "BTC-USDT-PERP", 1, 3, 64), InstrumentSpec("ETHUSDT", "ETH-USDT-PERP", 8, 8, 64)]
BTC, ETH = 0, 1
S = 1_000_000_000
AT = 1_767_254_340 * S  # 2026-01-01 07:59:00 UTC: a minute before a funding period ends
EIGHT_H = 8 * 3600 * S
ALL = FIELD_RATE | FIELD_FUNDING_TIME | FIELD_MARK | FIELD_INDEX
BIG = 2 ** 53 + 1  # a mantissa a float would round
# (kind, book, venue id, ts_exchange, words 7-11) in publish order; a funding message that carried
# only a mark price leaves the other words 0 (the record holds them as last sent)
PUBLISHED = [
    (KIND_BBO, BTC, 77, AT, (650001, 1500, 650002, 2500, 0)),
    (KIND_BBO, ETH, 5, AT, (300012345678, 10 ** 8, 300012345679, 2 * 10 ** 8, 0)),
    (KIND_OPEN_INTEREST, ETH, 0, AT + 5 * S, (BIG, 0, 0, 0, 0)),
    (KIND_BBO, BTC, 78, AT + 1 * S, (650003, 1, 650004, BIG, 0)),
    (KIND_OPEN_INTEREST, ETH, 0, AT + 6 * S, (BIG + 2, 0, 0, 0, 0)),
    (KIND_FUNDING, BTC, 0, AT + 10 * S, (100_000_000_000_000, AT + 60 * S, 650000, 649990, ALL)),
    (KIND_FUNDING, BTC, 0, AT + 20 * S, (0, 0, 650100, 0, FIELD_MARK)),
    (KIND_LIQUIDATION, BTC, 0, AT + 30 * S, (649990, 14, Side.SELL, Side.BUY, 0)),
    (KIND_LIQUIDATION, BTC, 0, AT + 40 * S, (649980, 1000, Side.SELL, Side.BUY, 0)),
    (KIND_LIQUIDATION, BTC, 0, AT + 50 * S, (650010, 2, Side.BUY, Side.SELL, 0)),
    (KIND_LIQUIDATION, ETH, 0, AT + 55 * S, (300000000000, BIG, Side.BUY, Side.SELL, 0)),
    (KIND_LIQUIDATION, BTC, 0, AT + 65 * S, (650500, 3, Side.SELL, Side.BUY, 0)),
    (KIND_FUNDING, BTC, 0, AT + 70 * S, (-25_000_000_000_000, AT + 60 * S + EIGHT_H, 650200, 650150, ALL)),
    (KIND_FUNDING, BTC, 0, AT + 80 * S, (0, 0, 650400, 0, FIELD_MARK)),
]
TYPES = {BboEvent: "bbo", FundingEvent: "funding", OpenInterestEvent: "open_interest", LiquidationEvent: "liquidation"}
TOPICS = {"bbo": "fh.bbo", "funding": "fh.funding", "open_interest": "fh.open_interest",
          "liquidation": "fh.liquidations"}
TABLES = {"bbo": "bbo", "funding": "funding", "open_interest": "open_interest", "liquidation": "liquidations"}
TIMES = ("ts_exchange", "ts_recv", "ts_publish", "next_funding_time")
SIDES = {Side.BUY: "buy", Side.SELL: "sell"}


def publish(prefix: str, venue: str = VENUE, published=PUBLISHED) -> SegmentWriter:
    """A derivatives venue's segment holding `published`, its writer left open."""
    writer = SegmentWriter.create(prefix, venue, SPEC, 5, 64)
    out = output_of(writer, np.zeros((3, HIST_WORDS), np.int64))
    for kind, book, record_id, ts_exchange, words in published:
        publish_stats(kind, I64(book), I64(record_id), I64(ts_exchange), I64(ts_exchange + 1_000_000),
                      tuple(I64(int(w)) for w in words), out)
    writer.heartbeat()
    return writer


@pytest.fixture
def markets(shm_prefix):
    """The PUBLISHED records in `<shm_prefix>.binance_usdm`: (prefix, reference records of its ring)."""
    writer = publish(shm_prefix)
    yield shm_prefix, Reference(shm_prefix, VENUE)
    writer.close()


def expected(ref: Reference, event) -> dict:
    """The record a sink delivers for `event`: its kind's fields, mantissas as the ring holds them."""
    instrument = event.instrument
    record = {"v": SCHEMA_VERSION, "type": TYPES[type(event)], "ring": ref.ring, "epoch": ref.epoch,
              "seq": event.position, "venue": ref.ring, "symbol": instrument.symbol, "ts_exchange": event.ts_exchange,
              "ts_recv": event.ts_recv, "ts_publish": event.ts_publish}
    if isinstance(event, BboEvent):
        record.update(px_dec=instrument.px_dec, qty_dec=instrument.qty_dec, update_id=event.update_id,
                      bid_px=event.bid_px, bid_qty=event.bid_qty, ask_px=event.ask_px, ask_qty=event.ask_qty)
    elif isinstance(event, FundingEvent):
        record.update(px_dec=instrument.stats_px_dec, rate=event.rate, rate_dec=RATE_DEC,
                      next_funding_time=event.next_funding_ns, mark_px=event.mark_px, index_px=event.index_px,
                      fields=event.fields)
    elif isinstance(event, OpenInterestEvent):
        record.update(qty_dec=instrument.qty_dec, open_interest=event.open_interest)
    else:
        record.update(px_dec=instrument.stats_px_dec, qty_dec=instrument.qty_dec, price=event.price, qty=event.qty,
                      side=SIDES[event.side], venue_side=SIDES[event.venue_side])
    return record


def all_expected(ref: Reference) -> list[dict]:
    records = [expected(ref, event) for event in ref.events]
    assert len(records) == len(PUBLISHED)  # the reference holds every record published, and nothing else
    return records


def latest(records: list[dict], kind: str) -> dict[str, dict]:
    """symbol -> the last record of `kind`."""
    return {r["symbol"]: r for r in records if r["type"] == kind}


@pytest.mark.kafka
def test_kafka_delivers_each_market_record_once_to_its_topic_keyed_venue_symbol_and_exact(markets, service, tmp_path):
    prefix, ref = markets
    broker = service("kafka")
    run = run_config(prefix, [VENUE], {"kafka": sink_settings(tmp_path, url=broker.url)})
    run_sink_until(run, "kafka", at_heads(ref))
    messages = consume_all(broker.url, list(TOPICS.values()))
    assert all(topic == TOPICS[record["type"]] and key == f"{VENUE}:{record['symbol']}".encode()
               for topic, key, record in messages)
    assert sorted((record for _, _, record in messages), key=lambda r: r["seq"]) == all_expected(ref)


@pytest.mark.redis
def test_redis_holds_the_latest_bbo_funding_and_open_interest_of_each_instrument_and_every_liquidation(
        markets, service, tmp_path):
    prefix, ref = markets
    server = service("redis")
    pubsub = redis.Redis.from_url(server.url).pubsub()
    pubsub.psubscribe("fh:updates:*")
    pubsub.get_message(timeout=1)
    run = run_config(prefix, [VENUE], {"redis": sink_settings(tmp_path, url=server.url)})
    run_sink_until(run, "redis", at_heads(ref))
    client = redis.Redis.from_url(server.url, decode_responses=True)
    records = all_expected(ref)
    notified = []
    while message := pubsub.get_message(timeout=0.5):
        if message["type"] == "pmessage":
            notified.append(msgpack.unpackb(message["data"]))
    for kind in ("bbo", "funding", "open_interest"):  # at least the last change of each instrument
        assert latest(notified, kind) == latest(records, kind)
    assert [r for r in notified if r["type"] == "liquidation"] == [r for r in records if r["type"] == "liquidation"]
    identity = ("v", "type", "ring", "venue", "symbol")
    for kind in ("bbo", "funding", "open_interest"):
        assert {key for key in client.scan_iter(f"fh:{kind}:*")} == {
            f"fh:{kind}:{VENUE}:{symbol}" for symbol in latest(records, kind)}
        for symbol, record in latest(records, kind).items():
            assert client.hgetall(f"fh:{kind}:{VENUE}:{symbol}") == {
                name: str(value) for name, value in record.items() if name not in identity}
    liquidations = [r for r in records if r["type"] == "liquidation"]
    streamed = [fields for symbol in {r["symbol"] for r in liquidations}
                for _, fields in client.xrange(f"fh:liquidations:{symbol}")]
    assert sorted(streamed, key=lambda f: int(f["seq"])) == [{name: str(value) for name, value in r.items()}
                                                             for r in liquidations]


def stored(sink, records: list[dict], modern: bool) -> dict[str, list[dict]]:
    """What `sink`'s store holds of each kind, as records: the columns named as the fields of `records`,
    timestamps as ns, read FINAL (a retried batch never shows twice)."""
    out = {}
    for kind, table in TABLES.items():
        names = [name for name in next(r for r in records if r["type"] == kind) if name not in ("v", "type", "ring")]
        columns = ", ".join(f"toUnixTimestamp64Nano({n})" if modern and n in TIMES else n for n in names)
        rows = sink.query(f"SELECT {columns} FROM {{db}}.{table} FINAL ORDER BY seq")
        out[kind] = [{name: value if isinstance(value, str) else int(value) for name, value in zip(names, row)}
                     for row in rows]
    return out


def by_kind(records: list[dict]) -> dict[str, list[dict]]:
    kinds = defaultdict(list)
    for record in records:
        kinds[record["type"]].append({name: value for name, value in record.items()
                                      if name not in ("v", "type", "ring")})
    return kinds


@pytest.mark.clickhouse
def test_clickhouse_chdb_holds_every_market_record_exact_in_its_table(markets, tmp_path):
    prefix, ref = markets
    run = run_config(prefix, [VENUE], {"clickhouse": sink_settings(tmp_path, url=f"chdb://{tmp_path / 'ch'}")})
    sink = run_sink_until(run, "clickhouse", at_heads(ref)).sink
    sink.open()
    try:
        records = all_expected(ref)
        assert stored(sink, records, modern=True) == by_kind(records)
    finally:
        sink.close()


@pytest.mark.clickhouse
def test_clickhouse_server_holds_every_market_record_exact_in_its_legacy_table(markets, service, tmp_path):
    prefix, ref = markets
    server = service("clickhouse")
    run = run_config(prefix, [VENUE], {"clickhouse": sink_settings(tmp_path, url=server.url)})
    sink = run_sink_until(run, "clickhouse", at_heads(ref)).sink
    sink.open()
    try:
        assert not sink.store.modern  # the 18.16 server: schema_legacy.sql
        records = all_expected(ref)
        assert stored(sink, records, modern=False) == by_kind(records)
    finally:
        sink.close()


def _decimal(mantissa: int, decimals: int) -> Decimal:
    return Decimal(mantissa).scaleb(-decimals)


def funding_periods() -> dict[tuple[str, int], tuple[Decimal, int, Decimal]]:
    """(symbol, period start in s) -> (last rate sent, its next funding time in s, mean mark price),
    from PUBLISHED: periods of 8 h from midnight UTC, exchange time."""
    rates, marks = {}, defaultdict(list)
    for kind, book, _, ts, (rate, next_time, mark, _, fields) in PUBLISHED:
        if kind != KIND_FUNDING:
            continue
        key = (SPEC[book].symbol, ts // S // (8 * 3600) * 8 * 3600)
        if fields & FIELD_RATE:
            rates[key] = (funding_rate(rate), next_time // S)
        if fields & FIELD_MARK:
            marks[key].append(_decimal(mark, stats_px_dec(SPEC[book].px_dec)))
    return {key: (*rates[key], sum(marks[key]) / len(marks[key])) for key in marks}


def liquidation_minutes() -> dict[tuple[str, str, int], tuple[int, Decimal, Decimal]]:
    """(symbol, side, minute in s) -> (liquidations, their quantity, notional), from PUBLISHED."""
    minutes = defaultdict(lambda: [0, Decimal(0), Decimal(0)])
    for kind, book, _, ts, (price, qty, side, _, _) in PUBLISHED:
        if kind != KIND_LIQUIDATION:
            continue
        entry = minutes[SPEC[book].symbol, SIDES[side], ts // S // 60 * 60]
        entry[0] += 1
        entry[1] += _decimal(qty, SPEC[book].qty_dec)
        entry[2] += _decimal(price, stats_px_dec(SPEC[book].px_dec)) * _decimal(qty, SPEC[book].qty_dec)
    return {key: tuple(value) for key, value in minutes.items()}


@pytest.mark.clickhouse
def test_clickhouse_views_give_funding_per_8_hours_and_liquidation_volume_per_minute_a_retry_counted_once(
        markets, tmp_path):
    prefix, ref = markets
    source = RingSource(prefix, VENUE)
    source.resume_from(Position(ref.epoch, 0))
    batch = Batch(depth=1, nbbo=None)
    source.read(batch, len(PUBLISHED))
    batch.close()
    source.close()
    sink = ClickHouseSink(SinkConfig("clickhouse", f"chdb://{tmp_path / 'ch'}", state_dir=str(tmp_path)))
    try:
        for _ in range(2):  # a batch retried after a lost acknowledgement
            assert sink.acknowledged(sink.send(batch, {}), wait=True)
        funding = sink.query("SELECT symbol, toUnixTimestamp(period), toString(rate), "
                             "toUnixTimestamp(next_funding_time), toString(mean_mark) FROM {db}.funding_8h_readable "
                             f"WHERE venue = '{VENUE}'")
        liquidations = sink.query("SELECT symbol, side, toUnixTimestamp(minute), liquidations, toString(volume), "
                                  f"toString(notional) FROM {{db}}.liquidations_1m_readable WHERE venue = '{VENUE}'")
    finally:
        sink.close()
    periods = funding_periods()
    assert len(periods) == 2  # PUBLISHED spans the 08:00 UTC funding
    assert {(symbol, int(period)): (Decimal(rate), int(next_time), Decimal(mark))
            for symbol, period, rate, next_time, mark in funding} == periods
    minutes = liquidation_minutes()
    assert {(symbol, side, int(minute)): (int(count), Decimal(volume), Decimal(notional))
            for symbol, side, minute, count, volume, notional in liquidations} == minutes
    assert len(minutes) == 4  # two sides in one minute, the next minute, and another symbol


def test_the_run_summary_counts_each_derivatives_record_kind_summed_over_venues(shm_prefix):
    writers = [publish(shm_prefix, venue) for venue in ("binance_usdm", "bybit")]
    try:
        figures = summary(run_config(shm_prefix, ["binance_usdm", "bybit"], {}), 1.0)
    finally:
        for writer in writers:
            writer.close()
    published = defaultdict(int)
    for kind, *_ in PUBLISHED:
        published[kind] += 2
    assert figures["records"] == {"funding": published[KIND_FUNDING], "open_interest": published[KIND_OPEN_INTEREST],
                                  "liquidation": published[KIND_LIQUIDATION], "bbo": published[KIND_BBO]}
