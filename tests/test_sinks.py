"""The sinks against real services, fed a replayed real recording (deterministic input): what they
deliver is checked record by record against the ring itself."""
from __future__ import annotations

import collections
import time

import msgpack
import pytest
import redis

from feedhandler.config import ConfigError, SinkConfig
from shm.reader import StatusEvent, TradeEvent
from tests.sinks import at_heads, consume_all, delivered_keys, run_config, run_sink_until, sink_settings
from workers.sinks import kafka
from workers.sinks.clickhouse import _Native, native_target
from workers.sinks.records import SCHEMA_VERSION
from workers.sinks.redis import PACE_BURST_S, RedisSink
from workers.sinks.runner import SinkConfigError, SinkDown
from workers.sinks.source import Batch, Position, RingSource


@pytest.mark.kafka
def test_kafka_delivers_every_trade_and_status_once_and_the_last_book_of_each_symbol(coinbase, service, tmp_path):
    prefix, venue, ref = coinbase
    broker = service("kafka")
    run = run_config(prefix, [venue], {"kafka": sink_settings(tmp_path, url=broker.url, batch_max=500)})
    runner = run_sink_until(run, "kafka", at_heads(ref))
    assert runner.counters["retried"] == 0
    messages = consume_all(broker.url, ["fh.books", "fh.trades", "fh.status"])
    records = [record for _, _, record in messages]
    assert all(record["v"] == SCHEMA_VERSION for record in records)
    assert sorted(delivered_keys(records, "trade", "status")) == sorted(ref.one_for_one())
    assert all(key == f"{venue}:{record['symbol']}".encode() for topic, key, record in messages if topic != "fh.status"
               or record["symbol"])
    last_snapshot = {}
    for record in records:
        if record["type"] == "book":
            last_snapshot[record["symbol"]] = max(last_snapshot.get(record["symbol"], -1), record["seq"])
    assert last_snapshot == ref.last_book_change()


@pytest.mark.kafka
def test_kafka_trades_carry_the_book_the_writer_matched_them_to(coinbase, service, tmp_path):
    prefix, venue, ref = coinbase
    broker = service("kafka")
    run = run_config(prefix, [venue], {"kafka": sink_settings(tmp_path, url=broker.url)})
    run_sink_until(run, "kafka", at_heads(ref))
    trades = {r["seq"]: r for _, _, r in consume_all(broker.url, ["fh.trades"])}
    for event in ref.trades():
        record = trades[event.position]
        assert (record["price"], record["qty"], record["bid_px"], record["ask_px"], record["levels_swept"],
                record["book_update_id"]) == (event.price, event.qty, event.bid_px, event.ask_px, event.swept,
                                              event.book_update_id)
        assert record["spread"] == event.ask_px - event.bid_px and record["mid_px"] == (event.bid_px + event.ask_px) * 5


@pytest.mark.kafka
def test_kafka_waits_out_a_full_producer_queue_and_loses_nothing(coinbase, service, tmp_path, monkeypatch):
    prefix, venue, ref = coinbase
    broker = service("kafka")
    monkeypatch.setitem(kafka.PRODUCER, "queue.buffering.max.messages", 20)  # far below a batch
    run = run_config(prefix, [venue], {"kafka": sink_settings(tmp_path, url=broker.url, batch_max=2000)})
    runner = run_sink_until(run, "kafka", at_heads(ref))
    assert runner.counters["retried"] == 0
    records = [record for _, _, record in consume_all(broker.url, ["fh.trades"])]
    assert sorted(delivered_keys(records, "trade")) == sorted(ref.keys(TradeEvent))


@pytest.mark.kafka
def test_kafka_exactly_once_resumes_after_the_last_committed_batch(coinbase, service, tmp_path):
    prefix, venue, ref = coinbase
    broker = service("kafka")
    settings = sink_settings(tmp_path, url=broker.url, batch_max=300, mode="exactly_once")
    run = run_config(prefix, [venue], {"kafka": settings})
    first = run_sink_until(run, "kafka", lambda r: r.counters["batches"] >= 5)
    assert first.counters["batches"] >= 5
    second = run_sink_until(run, "kafka", at_heads(ref))
    assert second.counters["acked"] < ref.head  # it resumed, it did not start over
    records = [record for _, _, record in consume_all(broker.url, ["fh.trades", "fh.status"])]
    keys = delivered_keys(records, "trade", "status")
    assert len(keys) == len(set(keys)), "a record was delivered twice"
    assert set(keys) == ref.one_for_one()


@pytest.mark.redis
def test_redis_holds_every_trade_once_and_the_latest_book_of_each_symbol(coinbase, service, tmp_path):
    prefix, venue, ref = coinbase
    server = service("redis")
    run = run_config(prefix, [venue], {"redis": sink_settings(tmp_path, url=server.url)})
    run_sink_until(run, "redis", at_heads(ref))
    client = redis.Redis.from_url(server.url)
    seen = []
    for key in client.scan_iter("fh:trades:*"):
        seen += [(f[b"ring"].decode(), int(f[b"epoch"]), int(f[b"seq"])) for _, f in client.xrange(key)]
    assert sorted(seen) == sorted(ref.keys(TradeEvent))
    for symbol, last in ref.last_book_change().items():
        top = {k.decode(): int(v) for k, v in client.hgetall(f"fh:top:{venue}:{symbol}").items()}
        assert top["seq"] == last
        bids = client.zrevrange(f"fh:depth:{venue}:{symbol}:bids", 0, 0)
        if top["bid_qty"]:
            assert bids == [f"{top['bid_px']}:{top['bid_qty']}".encode()]
    epoch, head, *lineage = client.hget("fh:sink:positions", venue).split(b":")
    assert (int(epoch), int(head), len(lineage)) == (ref.epoch, ref.head, 2)


@pytest.mark.redis
def test_redis_publishes_a_notification_per_change(coinbase, service, tmp_path):
    prefix, venue, ref = coinbase
    server = service("redis")
    pubsub = redis.Redis.from_url(server.url).pubsub()
    pubsub.psubscribe("fh:updates:*")
    pubsub.get_message(timeout=1)
    run = run_config(prefix, [venue], {"redis": sink_settings(tmp_path, url=server.url)})
    run_sink_until(run, "redis", at_heads(ref))
    kinds = collections.Counter()
    while message := pubsub.get_message(timeout=0.5):
        if message["type"] == "pmessage":
            kinds[msgpack.unpackb(message["data"])["type"]] += 1
    assert kinds["trade"] == len(ref.trades()) and kinds["book"] >= len(ref.last_book_change())


@pytest.mark.redis
def test_redis_sink_uses_the_password_and_database_of_its_url(coinbase, service, tmp_path):
    prefix, venue, ref = coinbase
    server = service("redis")
    redis.Redis.from_url(server.url).config_set("requirepass", "s3cret")
    url = f"redis://:s3cret@127.0.0.1:{server.port}/3"
    run = run_config(prefix, [venue], {"redis": sink_settings(tmp_path, url=url)})
    run_sink_until(run, "redis", at_heads(ref))
    saved = redis.Redis(port=server.port, db=3, password="s3cret").hget("fh:sink:positions", venue)
    assert saved.split(b":")[:2] == [str(ref.epoch).encode(), str(ref.head).encode()]


@pytest.mark.redis
def test_redis_sink_with_a_wrong_password_is_refused_at_start_without_showing_it(service):
    server = service("redis")
    redis.Redis.from_url(server.url).config_set("requirepass", "s3cret")
    sink = RedisSink(SinkConfig("redis", f"redis://:wrong@127.0.0.1:{server.port}/0"))
    with pytest.raises(SinkConfigError, match="invalid username-password") as refused:
        sink.open()
    assert "wrong" not in str(refused.value)  # the password is masked


def test_redis_pacing_lets_a_change_after_a_quiet_spell_go_at_once():
    sink = RedisSink(SinkConfig("redis", "redis://127.0.0.1", max_commands_per_s=1000))
    assert sink.pace(8, now=100.0) == 0.0
    assert sink.pace(8, now=100.5) == 0.0


def test_redis_pacing_holds_a_flood_to_max_commands_per_s():
    sink = RedisSink(SinkConfig("redis", "redis://127.0.0.1", max_commands_per_s=1000))
    now, commands = 100.0, 0
    while now < 101.0:
        now += 0.0001 + sink.pace(50, now=now)  # each batch as soon as the wait is over
        commands += 50
    assert 1000 <= commands <= 1000 * (1 + PACE_BURST_S) + 50


@pytest.mark.clickhouse
def test_clickhouse_chdb_holds_every_trade_matched_and_each_once(chdb):
    sink, venue, ref = chdb
    rows = sink.query("SELECT venue, epoch, seq, price, bid_px, ask_px, levels_swept FROM {db}.trades")
    assert sorted((r[0], int(r[1]), int(r[2])) for r in rows) == sorted(ref.keys(TradeEvent))
    by_seq = {int(r[2]): r for r in rows}
    for event in ref.trades():
        assert tuple(int(v) for v in by_seq[event.position][3:]) == (event.price, event.bid_px, event.ask_px,
                                                                   event.swept)
    statuses = sink.query("SELECT count() FROM {db}.status FINAL WHERE kind = 'status'")[0][0]
    assert int(statuses) == len(ref.keys(StatusEvent))


@pytest.mark.clickhouse
def test_clickhouse_chdb_views_derive_top_of_book_and_one_minute_bars(chdb):
    sink, venue, ref = chdb
    depth, top = (int(sink.query(f"SELECT count() FROM {{db}}.{t}")[0][0]) for t in ("depth", "top_of_book"))
    assert depth == top > 0
    volume = {s: sum(e.qty for e in ref.trades() if e.instrument.symbol == s)
              for s in {e.instrument.symbol for e in ref.trades()}}
    bars = sink.query("SELECT symbol, sum(volume), sum(trades) FROM {db}.bars_1m GROUP BY symbol")
    assert {r[0]: int(r[1]) for r in bars} == volume
    assert sum(int(r[2]) for r in bars) == len(ref.trades())
    started = time.perf_counter()
    sink.query("SELECT toStartOfHour(ts_recv) h, min(price), max(price), sum(qty) FROM {db}.trades "
               "WHERE symbol = 'BTC-USD' AND ts_recv >= (SELECT max(ts_recv) FROM {db}.trades) - INTERVAL 1 DAY "
               "GROUP BY h")
    print(f"1-day aggregate of one symbol: {(time.perf_counter() - started) * 1e3:.1f} ms")


def half_of(prefix: str, venue: str, ref, start: int = 0) -> Batch:
    """A batch of the ring's records from `start` up to half its head."""
    source = RingSource(prefix, venue)
    source.resume_from(Position(ref.epoch, start))
    batch = Batch(depth=1, nbbo=None)
    source.read(batch, ref.head // 2 - start)
    batch.close()
    source.close()
    return batch


@pytest.mark.clickhouse
def test_clickhouse_retry_of_the_same_batch_inserts_nothing_twice(coinbase, chdb):
    prefix, venue, ref = coinbase
    sink = chdb[0]
    rows = int(sink.query("SELECT count() FROM {db}.trades")[0][0])
    batch = half_of(prefix, venue, ref)  # not a batch the sink inserted before
    for _ in range(2):
        assert sink.acknowledged(sink.send(batch, {}), wait=True)
    in_half = sum(1 for event in ref.trades() if event.position < ref.head // 2)
    assert int(sink.query("SELECT count() FROM {db}.trades")[0][0]) == rows + in_half


@pytest.mark.clickhouse
def test_clickhouse_inserts_no_batch_queued_behind_one_that_failed(coinbase, chdb, monkeypatch):
    prefix, venue, ref = coinbase
    sink = chdb[0]
    rows = int(sink.query("SELECT count() FROM {db}.trades")[0][0])
    insert = sink.store.insert
    failures = iter([OSError("connection reset")])

    def failing_once(*args):
        if (failure := next(failures, None)) is not None:
            raise failure
        insert(*args)
    monkeypatch.setattr(sink.store, "insert", failing_once)
    first, second = half_of(prefix, venue, ref), half_of(prefix, venue, ref, start=ref.head // 4)
    tickets = [sink.send(first, {}), sink.send(second, {})]
    with pytest.raises(SinkDown):
        sink.acknowledged(tickets[0], wait=True)
    assert isinstance(tickets[1].exception(), SinkDown)
    assert int(sink.query("SELECT count() FROM {db}.trades")[0][0]) == rows  # the store still holds a prefix


@pytest.mark.clickhouse
def test_clickhouse_says_where_the_trades_it_holds_of_a_writer_end(coinbase, chdb):
    prefix, venue, ref = coinbase
    sink = chdb[0]
    last = max(event.position for event in ref.trades())
    assert sink.stored_after(venue, Position(ref.epoch, 0)) == last + 1
    assert sink.stored_after(venue, Position(ref.epoch, last + 1)) == last + 1  # nothing past it
    assert sink.stored_after(venue, Position(ref.epoch + 1, 5)) == 5  # of another writer it holds nothing
    assert sink.stored_after("no such ring'", Position(ref.epoch, 0)) is None
    sink.close()  # as when a failure dropped the store: no batch may come to reopen it, so it reopens to answer
    assert sink.stored_after(venue, Position(ref.epoch, 0)) == last + 1


@pytest.mark.clickhouse
def test_clickhouse_server_over_the_native_protocol_holds_every_trade(coinbase, service, tmp_path):
    prefix, venue, ref = coinbase
    server = service("clickhouse")
    run = run_config(prefix, [venue], {"clickhouse": sink_settings(tmp_path, url=server.url)})
    runner = run_sink_until(run, "clickhouse", at_heads(ref))
    sink = runner.sink
    sink.open()
    try:
        assert sink.store.version.startswith("18.")
        rows = sink.query("SELECT venue, epoch, seq FROM {db}.trades FINAL")
        assert sorted((r[0], int(r[1]), int(r[2])) for r in rows) == sorted(ref.keys(TradeEvent))
    finally:
        sink.close()


def test_a_clickhouse_url_names_user_password_port_and_database_and_errors_mask_the_password():
    assert native_target("clickhouse://fh:s%40cret@db.local:9440/market") == ("db.local", 9440, "market", "fh", "s@cret")
    assert native_target("clickhouse://127.0.0.1") == ("127.0.0.1", 9000, "default", "default", "")
    for bad in ("clickhouse://fh:s3cret@db.local:port/market", "clickhouse://fh:s3cret@db.local/a-b"):
        with pytest.raises(SinkConfigError, match=r"clickhouse://fh:\*\*\*@db\.local") as error:
            native_target(bad)
        assert "s3cret" not in str(error.value)


def test_a_config_error_on_a_sink_url_masks_its_password(shm_prefix):
    with pytest.raises(ConfigError) as error:
        run_config(shm_prefix, ["coinbase"], {"clickhouse": {"url": "clickhouse://fh:s3cret@db/a-b"}})
    assert "s3cret" not in str(error.value) and "fh:***@db" in str(error.value)


@pytest.mark.clickhouse
def test_clickhouse_credentials_in_the_url_log_in_and_a_refused_login_is_a_config_error(service):
    server = service("clickhouse")
    address = server.url[len("clickhouse://"):]
    store = _Native(f"clickhouse://default:@{address}")  # the server's default user has no password
    assert store.query("SELECT 1") == [(1,)]
    store.close()
    with pytest.raises(SinkConfigError, match=r"default:\*\*\*@") as error:
        _Native(f"clickhouse://default:wr0ng@{address}")
    assert "wr0ng" not in str(error.value)


@pytest.mark.parametrize("name, url, message", [
    ("kafka", "kafka://host", "sinks.kafka.url: 'kafka://host' is not host:port"),
    ("redis", "127.0.0.1:6379", "sinks.redis.url: '127.0.0.1:6379' is not redis://"),
    ("clickhouse", "http://x", "sinks.clickhouse.url: 'http://x' is not clickhouse://"),
])
def test_a_malformed_sink_url_is_refused_naming_the_key(name, url, message, shm_prefix):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        run_config(shm_prefix, ["coinbase"], {name: {"url": url}})


@pytest.mark.kafka
def test_a_sink_whose_service_is_down_retries_with_backoff_and_counts_it(coinbase, tmp_path):
    prefix, venue, ref = coinbase
    from tools.services import free_port
    run = run_config(prefix, [venue], {"kafka": sink_settings(tmp_path, url=f"127.0.0.1:{free_port()}")})
    started = time.monotonic()
    runner = run_sink_until(run, "kafka", lambda r: time.monotonic() - started > 5)
    assert runner.counters["retried"] >= 2 and runner.counters["acked"] == 0 and runner.counters["up"] == 0
    assert "unreachable" in runner.last_error


def test_trade_records_hold_each_trade_and_its_book_as_the_reader_sees_them(coinbase):
    prefix, venue, ref = coinbase
    source = RingSource(prefix, venue)
    batch = Batch(depth=1, nbbo=None)
    source.read(batch, ref.head)
    batch.close()
    source.close()
    trades = batch.trades.records()
    assert len(trades) == len(ref.trades()) and not any(r["type"] == "trade" for r in batch.records)
    for record, event in zip(trades, ref.trades()):
        book = event.swept != -1 and event.bid_qty and event.ask_qty
        assert record == {
            "v": SCHEMA_VERSION, "type": "trade", "ring": venue, "epoch": ref.epoch, "seq": event.position,
            "venue": venue, "symbol": event.instrument.symbol, "px_dec": event.instrument.px_dec,
            "qty_dec": event.instrument.qty_dec, "trade_id": event.trade_id, "price": event.price, "qty": event.qty,
            "side": event.side.name.lower(), "ts_exchange": event.ts_exchange, "ts_recv": event.ts_recv,
            "ts_publish": event.ts_publish, "book_valid": event.swept != -1, "book_update_id": event.book_update_id,
            "bid_px": event.bid_px, "bid_qty": event.bid_qty, "ask_px": event.ask_px, "ask_qty": event.ask_qty,
            "mid_px": (event.bid_px + event.ask_px) * 5 if book else None,
            "spread": event.ask_px - event.bid_px if book else None,
            "touch_qty": {"BUY": event.ask_qty, "SELL": event.bid_qty}.get(event.side.name),
            "levels_swept": max(event.swept, 0), "nbbo_bid_px": None, "nbbo_ask_px": None, "nbbo_px_dec": None,
            "nbbo_changes": None, "through_nbbo": None}
