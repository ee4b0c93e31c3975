"""Kafka sink (confluent-kafka): topics `<prefix>.books|trades|nbbo|status` and, from derivatives
venues, `<prefix>.bbo|funding|open_interest|liquidations` (one message per record, as trades); key
venue:symbol (NBBO: the symbol) so each book stays ordered in one partition, msgpack values (records.py).

Guarantees:
- `at_least_once` (default): idempotent producer, acks=all; a batch's ring positions are committed
  (locally) only after every message of it was acknowledged (the next batch is produced meanwhile);
  on a failure the producer is dropped and every unacknowledged batch produced again, in order, so a
  consumer may see a record twice: dedup by (ring, epoch, seq).
- `exactly_once`: each batch is one transaction together with the sink's ring positions, written
  to the compacted topic `<prefix>.sink-positions`; a restarted sink resumes after the last committed
  batch. A commit that failed with a retriable error (a timeout) is committed again, never aborted
  and resent (commit is idempotent; the resent batch could be committed twice); an abortable error
  aborts and resends; after a fatal one the outcome is unknown, so a new producer first looks the
  transaction up in the positions topic (each positions message carries its transaction's token)
  and resends only a batch that was not committed. The transactional id is per deployment (host,
  topic prefix, sink; or `transactional_id`), so two hosts with the default prefix do not fence
  each other. Against Apache Kafka a `read_committed` consumer then sees every record once. Tansu (the
  broker in our tests) accepts the transactions API but does not hide aborted messages, so there a
  batch aborted by a failure can show twice; the tests check position recovery and the absence of
  duplicates across clean restarts.
"""
from __future__ import annotations

import logging
import os
import socket
import time

import msgpack
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from feedhandler.config import SinkConfig

from .msgpack_maps import MapEncoder
from .records import (BBO, BOOK, FUNDING, GAP, LIQUIDATION, NBBO, OPEN_INTEREST, STATUS, TRADE, TradeColumns, book_key,
                      partition_key)
from .runner import Sink, SinkConfigError, SinkDown
from .source import Batch, Position

TOPIC_OF = {BOOK: "books", TRADE: "trades", NBBO: "nbbo", STATUS: "status", GAP: "status", BBO: "bbo",
            FUNDING: "funding", OPEN_INTEREST: "open_interest", LIQUIDATION: "liquidations"}
PARTITIONS = 6
IN_FLIGHT = 4  # batches produced before the oldest must be acknowledged; measured with fh bench sinks
TIMEOUT_S = 10.0
PRODUCER = {  # measured with fh bench sinks; see docs/benchmarks.md
    "enable.idempotence": True, "acks": "all", "compression.type": "lz4", "linger.ms": 5,
    "batch.size": 1_048_576, "batch.num.messages": 10_000, "queue.buffering.max.messages": 500_000,
    "message.timeout.ms": int(TIMEOUT_S * 1000), "reconnect.backoff.max.ms": 1000,
}
# librdkafka logs every refused connection; the runner reports failures itself, so only errors pass
_LIBRDKAFKA_LOG = logging.getLogger("fh.sink.kafka.librdkafka")
_LIBRDKAFKA_LOG.setLevel(logging.ERROR)
_LOG = logging.getLogger("fh.sink.kafka")
_AUTH_ERRORS = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED,
                KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, KafkaError.INVALID_REPLICATION_FACTOR,
                KafkaError.INVALID_CONFIG, KafkaError.POLICY_VIOLATION}


class _Delivery:
    """The delivery reports of one batch's messages."""

    def __init__(self, messages: int):
        self.messages = self.waiting = messages
        self.errors: list[str] = []

    def report(self, error, message) -> None:
        self.waiting -= 1
        if error is not None:
            self.errors.append(error.str())


class KafkaSink(Sink):
    name = "kafka"

    def __init__(self, config: SinkConfig):
        self.config = config
        self.exactly_once = config.mode == "exactly_once"
        self.keeps_positions = self.exactly_once
        # at-least-once: the next batch is produced while the broker acknowledges this one (a
        # transaction is committed before the next begins)
        self.in_flight = 1 if self.exactly_once else IN_FLIGHT
        self.topics = {kind: f"{config.prefix}.{suffix}" for kind, suffix in TOPIC_OF.items()}
        self.positions_topic = f"{config.prefix}.sink-positions"
        self.transactional_id = config.transactional_id or f"{config.prefix}-sink-{config.name}-{socket.gethostname()}"
        self._pending: tuple[bytes, int] | None = None  # (token, messages) of a transaction being committed
        self._unknown: tuple[bytes, int] | None = None  # the same, of one whose commit may or may not have happened
        self._producer: Producer | None = None
        self._check_topics = False  # a new producer checks them anyway
        self._pack = msgpack.Packer().pack
        self._trade_maps: MapEncoder | None = None
        self._keys: dict[tuple[str, str], bytes] = {}  # (venue, symbol) -> message key

    def _common(self) -> dict:
        return {"bootstrap.servers": self.config.url, "client.id": f"fh-sink-{self.config.prefix}",
                "logger": _LIBRDKAFKA_LOG}

    def open(self) -> None:
        self._ensure_topics()
        settings = {**self._common(), **PRODUCER}
        if self.exactly_once:
            settings["transactional.id"] = self.transactional_id
        producer = Producer(settings)
        try:
            for topic in set(self.topics.values()):  # their leaders now, not ~1 s into the first batch
                producer.list_topics(topic, TIMEOUT_S)
        except KafkaException as exc:
            raise SinkDown(f"kafka {self.config.url}: {exc.args[0]}") from None
        self._producer = producer
        if self.exactly_once:
            try:
                self._producer.init_transactions(TIMEOUT_S)
            except KafkaException as exc:
                self._producer = None
                raise _classify(exc, "init_transactions") from None

    def _ensure_topics(self) -> None:
        admin = AdminClient(self._common())
        try:
            existing = admin.list_topics(timeout=2).topics
        except KafkaException as exc:
            raise SinkDown(f"kafka {self.config.url}: unreachable ({exc.args[0]})") from None
        wanted = [NewTopic(topic, PARTITIONS, 1) for topic in sorted(set(self.topics.values())) if topic not in existing]
        if self.exactly_once and self.positions_topic not in existing:
            wanted.append(NewTopic(self.positions_topic, 1, 1, config={"cleanup.policy": "compact"}))
        if not wanted:
            return
        for topic, future in admin.create_topics(wanted, operation_timeout=TIMEOUT_S).items():
            try:
                future.result(TIMEOUT_S)
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                if error.code() in _AUTH_ERRORS:
                    raise SinkConfigError(f"kafka: cannot create topic {topic}: {error.str()}") from None
                raise SinkDown(f"kafka: creating topic {topic}: {error.str()}") from None

    def load_positions(self) -> dict[str, Position] | None:
        """The last committed positions, read back from the positions topic."""
        if not self.exactly_once:
            return None
        latest, _ = self._last_committed()
        return {ring: Position.from_json(value) for ring, value in (latest or {}).items()}

    def _last_committed(self) -> tuple[dict | None, bytes | None]:
        """This sink's last positions message and its transaction token, read to the end of the
        topic (Tansu's high watermark cannot be trusted, so read until it stays quiet)."""
        consumer = Consumer({**self._common(), "group.id": f"{self.transactional_id}-positions",
                             "enable.auto.commit": False, "isolation.level": "read_committed",
                             "auto.offset.reset": "earliest"})
        try:
            consumer.assign([TopicPartition(self.positions_topic, 0, 0)])
            latest, token = None, None
            while True:
                messages = consumer.consume(10_000, timeout=1.5)
                if not messages:
                    break
                for message in messages:
                    if message.error() is None and message.key() == self.transactional_id.encode():
                        latest, token = msgpack.unpackb(message.value()), dict(message.headers() or ()).get("txn")
        finally:
            consumer.close()
        return latest, token

    def send(self, batch: Batch, positions: dict[str, Position]):
        if self._producer is None:
            self.open()
        elif self._check_topics:
            self._ensure_topics()
        if self.exactly_once:
            return self._transaction(batch, positions)
        trades = self._trade_messages(batch.trades) if batch.trades is not None else []
        delivery = _Delivery(len(trades) + len(batch.records))
        try:
            self._produce(trades, batch.records, delivery.report)
        except (KafkaException, SystemError) as exc:
            self._failed(f"kafka producer: {exc}")
        return delivery

    def _trade_messages(self, trades: TradeColumns) -> list[dict]:
        """produce_batch messages of the trade columns: msgpack maps encoded in one numba call."""
        if self._trade_maps is None or self._trade_maps.names != tuple(trades.values):
            self._trade_maps = MapEncoder(tuple(trades.values))
        data, ends = self._trade_maps.encode(trades.values, trades.nulls)
        keys = self._keys
        return [{"value": data[start:end], "key": keys.get(pair) or keys.setdefault(pair, book_key(*pair))}
                for start, end, pair in zip([0, *ends[:-1].tolist()], ends.tolist(),
                                            zip(trades["venue"].tolist(), trades["symbol"].tolist()))]

    def acknowledged(self, ticket, wait: bool) -> int | None:
        if self.exactly_once:
            return ticket
        delivery: _Delivery = ticket
        deadline = time.monotonic() + TIMEOUT_S + 5  # message.timeout.ms reports every message before
        try:
            while True:
                self._producer.poll(0.01 if wait else 0)
                if not delivery.waiting or delivery.errors or not wait or time.monotonic() > deadline:
                    break
        except (KafkaException, SystemError) as exc:
            self._failed(f"kafka producer: {exc}")
        if delivery.errors or delivery.waiting and wait:
            self._failed(f"kafka: {delivery.waiting} messages unacknowledged, {len(delivery.errors)} failed "
                         f"({delivery.errors[0] if delivery.errors else 'timeout'})")
        return None if delivery.waiting else delivery.messages

    def _failed(self, why: str):
        """Drop the producer: the next send starts a new one. After a broker restart the old one's
        idempotent producer id is unknown there and every later batch would time out the same way."""
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.purge(in_queue=True, in_flight=True)
            producer.poll(0)
        raise SinkDown(why) from None

    def _transaction(self, batch: Batch, positions: dict[str, Position]) -> int:
        """`batch` and `positions` in one transaction, or the commit of the one of this batch that
        failed before; returns its messages once committed."""
        if self._unknown is not None:  # a new producer by now: the old one's transaction is settled
            (token, messages), self._unknown = self._unknown, None
            committed = self._last_committed()[1] == token
            _LOG.warning("kafka transaction %s of unknown outcome was %s", token.hex(),
                         "committed: not sent again" if committed else "not committed: sending it again")
            if committed:
                self._check_topics = False
                return messages
        if self._pending is None:
            trades = self._trade_messages(batch.trades) if batch.trades is not None else []
            token = os.urandom(8)
            try:
                self._producer.begin_transaction()
                self._produce(trades, batch.records)
                self._producer.produce(self.positions_topic,
                                       self._pack({r: p.to_json() for r, p in positions.items()}),
                                       self.transactional_id.encode(), headers=[("txn", token)])
            except KafkaException as exc:
                self._abort(exc)
            self._pending = (token, len(trades) + len(batch.records) + 1)
        try:
            self._producer.commit_transaction(TIMEOUT_S)
        except KafkaException as exc:
            self._commit_failed(exc)
        committed, self._pending = self._pending, None
        self._check_topics = False
        return committed[1]

    def _produce(self, trades: list[dict], records: list[dict], on_delivery=None) -> None:
        """Trades (produce_batch messages) first, then the other records one by one; a full
        producer queue is drained and the rest produced."""
        producer, topics, pack = self._producer, self.topics, self._pack
        while trades:
            if producer.produce_batch(topics[TRADE], trades, on_delivery=on_delivery) == len(trades):
                break
            refused = [(message, message.pop("_error")) for message in trades if "_error" in message]
            for _, error in refused:
                if error.code() != KafkaError._QUEUE_FULL:  # e.g. a message too large: retrying cannot help
                    raise KafkaException(error)
            trades = [message for message, _ in refused]
            producer.poll(0.05)  # the producer's queue is full: let it drain
        for record in records:
            while True:
                try:
                    producer.produce(topics[record["type"]], pack(record), partition_key(record),
                                     on_delivery=on_delivery)
                    break
                except BufferError:  # the producer's queue is full: let it drain
                    producer.poll(0.05)
        producer.poll(0)

    def _abort(self, exc: KafkaException) -> None:
        """A transaction that failed before its commit: abort it (or drop a producer that cannot), so
        the batch is sent again in a new one."""
        error = exc.args[0]
        if error.fatal():
            self._producer = None  # a new producer (and transactional epoch) at the next delivery
        else:
            self._check_topics = True  # a restarted broker may have come back without our topics
            try:
                self._producer.abort_transaction(TIMEOUT_S)
            except KafkaException:
                self._producer = None
        raise SinkDown(f"kafka transaction: {error.str()}") from None

    def _commit_failed(self, exc: KafkaException) -> None:
        """A failed commit: retriable (a timeout), committed again at the next send; abortable,
        aborted and sent again; anything else leaves the outcome unknown, looked up by a new producer."""
        error = exc.args[0]
        if error.retriable() and not error.txn_requires_abort() and not error.fatal():
            raise SinkDown(f"kafka commit: {error.str()} (committing again)") from None
        pending, self._pending = self._pending, None
        if error.txn_requires_abort() and not error.fatal():
            self._abort(exc)  # raises SinkDown: the batch goes again, in a new transaction
        self._producer, self._unknown = None, pending
        raise SinkDown(f"kafka commit: {error.str()} (outcome unknown: looked up before sending again)") from None

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(TIMEOUT_S)
            self._producer = None


def _classify(exc: KafkaException, what: str) -> Exception:
    error = exc.args[0]
    if error.code() in _AUTH_ERRORS:
        return SinkConfigError(f"kafka {what}: {error.str()}")
    return SinkDown(f"kafka {what}: {error.str()}")
