"""Kafka sink (confluent-kafka): topics `<prefix>.books|trades|nbbo|status`, key venue:symbol (NBBO:
the symbol) so each book stays ordered in one partition, msgpack values (records.py).

Guarantees:
- `at_least_once` (default): idempotent producer, acks=all; a batch's ring positions are committed
  (locally) only after every message of it was acknowledged; a failed batch is purged from the
  producer and produced again, so a consumer may see a record twice: dedup by (ring, epoch, seq).
- `exactly_once`: each batch is one transaction together with the sink's ring positions, written
  to the compacted topic `<prefix>.sink-positions`; a restarted sink resumes after the last committed
  batch. Against Apache Kafka a `read_committed` consumer then sees every record once. Tansu (the
  broker in our tests) accepts the transactions API but does not hide aborted messages, so there a
  batch aborted by a failure can show twice; the tests check position recovery and the absence of
  duplicates across clean restarts.
"""
from __future__ import annotations

import logging

import msgpack
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from feedhandler.config import SinkConfig

from .records import BOOK, GAP, NBBO, STATUS, TRADE, partition_key
from .runner import SinkConfigError, SinkDown
from .source import Batch, Position

TOPIC_OF = {BOOK: "books", TRADE: "trades", NBBO: "nbbo", STATUS: "status", GAP: "status"}
PARTITIONS = 6
TIMEOUT_S = 10.0
PRODUCER = {  # measured with fh bench sinks; see the README
    "enable.idempotence": True, "acks": "all", "compression.type": "lz4", "linger.ms": 5,
    "batch.size": 1_048_576, "batch.num.messages": 10_000, "queue.buffering.max.messages": 500_000,
    "message.timeout.ms": int(TIMEOUT_S * 1000), "reconnect.backoff.max.ms": 1000,
}
# librdkafka logs every refused connection; the runner reports failures itself, so only errors pass
_LIBRDKAFKA_LOG = logging.getLogger("fh.sink.kafka.librdkafka")
_LIBRDKAFKA_LOG.setLevel(logging.ERROR)
_AUTH_ERRORS = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED,
                KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, KafkaError.INVALID_REPLICATION_FACTOR,
                KafkaError.INVALID_CONFIG, KafkaError.POLICY_VIOLATION}


class KafkaSink:
    columnar_trades = False
    name = "kafka"

    def __init__(self, config: SinkConfig):
        self.config = config
        self.exactly_once = config.mode == "exactly_once"
        self.keeps_positions = self.exactly_once
        self.topics = {kind: f"{config.prefix}.{suffix}" for kind, suffix in TOPIC_OF.items()}
        self.positions_topic = f"{config.prefix}.sink-positions"
        self.transactional_id = f"{config.prefix}-sink-kafka"
        self._producer: Producer | None = None
        self._check_topics = False  # after a failure: the broker may have come back without our topics
        self._errors: list[str] = []
        self._pack = msgpack.Packer().pack

    def _common(self) -> dict:
        return {"bootstrap.servers": self.config.url, "client.id": f"fh-sink-{self.config.prefix}",
                "logger": _LIBRDKAFKA_LOG}

    def open(self) -> None:
        self._ensure_topics()
        settings = {**self._common(), **PRODUCER}
        if self.exactly_once:
            settings["transactional.id"] = self.transactional_id
        self._producer = Producer(settings)
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
        """The last committed positions, read back from the positions topic (to its end: Tansu's
        high watermark cannot be trusted, so read until it stays quiet)."""
        if not self.exactly_once:
            return None
        consumer = Consumer({**self._common(), "group.id": f"{self.transactional_id}-positions",
                             "enable.auto.commit": False, "isolation.level": "read_committed",
                             "auto.offset.reset": "earliest"})
        try:
            consumer.assign([TopicPartition(self.positions_topic, 0, 0)])
            latest: dict | None = None
            while True:
                messages = consumer.consume(10_000, timeout=1.5)
                if not messages:
                    break
                for message in messages:
                    if message.error() is None and message.key() == self.transactional_id.encode():
                        latest = msgpack.unpackb(message.value())
        finally:
            consumer.close()
        return {ring: Position.from_json(value) for ring, value in (latest or {}).items()}

    def deliver(self, batch: Batch, positions: dict[str, Position]) -> int:
        records = batch.records
        if self._producer is None:
            self.open()
        elif self._check_topics:
            self._ensure_topics()
        self._check_topics = True  # until this delivery succeeds
        count = self._deliver(records, positions)
        self._check_topics = False
        return count

    def _deliver(self, records: list[dict], positions: dict[str, Position]) -> int:
        producer = self._producer
        if self.exactly_once:
            try:
                producer.begin_transaction()
                self._produce(records)
                producer.produce(self.positions_topic, self._pack({r: p.to_json() for r, p in positions.items()}),
                                 self.transactional_id.encode())
                producer.commit_transaction(TIMEOUT_S)
            except KafkaException as exc:
                self._recover(exc)
            return len(records) + 1
        self._errors.clear()
        try:
            self._produce(records, self._on_delivery)
            remaining = producer.flush(TIMEOUT_S)
        except (KafkaException, SystemError) as exc:
            # fatal, e.g. a restarted broker that no longer knows our idempotent producer id: the
            # next delivery starts a new producer (the batch goes again: at-least-once)
            self._producer = None
            raise SinkDown(f"kafka producer: {exc}") from None
        if remaining or self._errors:
            # A new producer for the retry: after a broker restart the old one's idempotent producer
            # id is unknown there and every later batch would time out the same way.
            producer.purge(in_queue=True, in_flight=True)
            producer.poll(0)
            self._producer = None
            raise SinkDown(f"kafka: {remaining} messages unacknowledged, {len(self._errors)} failed "
                           f"({self._errors[0] if self._errors else 'timeout'})")
        return len(records)

    def _produce(self, records: list[dict], on_delivery=None) -> None:
        producer, topics, pack = self._producer, self.topics, self._pack
        for record in records:
            while True:
                try:
                    producer.produce(topics[record["type"]], pack(record), partition_key(record),
                                     on_delivery=on_delivery)
                    break
                except BufferError:  # the producer's queue is full: let it drain
                    producer.poll(0.05)
        producer.poll(0)

    def _on_delivery(self, error, message) -> None:
        if error is not None:
            self._errors.append(error.str())

    def _recover(self, exc: KafkaException) -> None:
        error = exc.args[0]
        if error.fatal() or not error.txn_requires_abort() and not error.retriable():
            self._producer = None  # a new producer (and transactional epoch) at the next delivery
        else:
            try:
                self._producer.abort_transaction(TIMEOUT_S)
            except KafkaException:
                self._producer = None
        raise SinkDown(f"kafka transaction: {error.str()}") from None

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(TIMEOUT_S)
            self._producer = None


def _classify(exc: KafkaException, what: str) -> Exception:
    error = exc.args[0]
    if error.code() in _AUTH_ERRORS:
        return SinkConfigError(f"kafka {what}: {error.str()}")
    return SinkDown(f"kafka {what}: {error.str()}")
