"""The Kafka sink's exactly-once mode against the real broker (Tansu) when a commit fails: a
timed-out commit is committed again, never aborted and resent; a commit whose outcome is unknown is
looked up before anything is resent; and deployments on two hosts with the default prefix keep
apart. A real broker cannot time a commit out on demand, so the failures are injected into the
producer's `commit_transaction`; everything else is the real client against the real broker."""
from __future__ import annotations

import socket

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from tests.sinks import at_heads, consume_all, delivered_keys, run_config, run_sink_until, sink_settings
from workers.sinks import kafka, make_sink


FAILING_COMMIT = 3  # the transaction whose commit fails, once


def faulty_producer(error: KafkaError, commit_first: bool):
    """A Producer class whose FAILING_COMMIT-th commit raises `error` once: before reaching the broker,
    or (`commit_first`) after the broker committed it, as when the answer is lost. Counts what the
    sink did: producers made, commits tried, aborts."""

    class FaultyProducer(Producer):
        made, commits, aborts = 0, 0, 0

        def __init__(self, settings):
            super().__init__(settings)
            FaultyProducer.made += 1

        def commit_transaction(self, *args):
            FaultyProducer.commits += 1
            if FaultyProducer.commits != FAILING_COMMIT:
                return super().commit_transaction(*args)
            if commit_first:
                super().commit_transaction(*args)
            raise KafkaException(error)

        def abort_transaction(self, *args):
            FaultyProducer.aborts += 1
            return super().abort_transaction(*args)
    return FaultyProducer


def delivered_once(broker_url: str, ref) -> None:
    records = [record for _, _, record in consume_all(broker_url, ["fh.trades", "fh.status"])]
    keys = delivered_keys(records, "trade", "status")
    assert len(keys) == len(set(keys)), "a record was delivered twice"
    assert set(keys) == ref.one_for_one()


def exactly_once_with(error: KafkaError, commit_first: bool, coinbase, service, tmp_path, monkeypatch):
    """An exactly-once Kafka sink whose FAILING_COMMIT-th commit fails with `error` (see faulty_producer),
    run until it delivered the recording; then every record is in Kafka once. Returns the producer
    class (its counts) and the runner."""
    prefix, venue, ref = coinbase
    broker = service("kafka")
    producer = faulty_producer(error, commit_first)
    monkeypatch.setattr(kafka, "Producer", producer)
    run = run_config(prefix, [venue], {"kafka": sink_settings(tmp_path, url=broker.url, batch_max=300,
                                                              mode="exactly_once")})
    runner = run_sink_until(run, "kafka", at_heads(ref))
    delivered_once(broker.url, ref)
    return producer, runner


@pytest.mark.kafka
def test_kafka_exactly_once_commits_a_timed_out_commit_again_and_never_resends_its_batch(coinbase, service,
                                                                                          tmp_path, monkeypatch):
    timeout = KafkaError(KafkaError._TIMED_OUT, "commit timed out (injected)", retriable=True)
    producer, runner = exactly_once_with(timeout, False, coinbase, service, tmp_path, monkeypatch)
    assert producer.commits > FAILING_COMMIT and runner.counters["retried"] == 1  # the timeout happened
    assert producer.aborts == 0 and producer.made == 1


@pytest.mark.kafka
def test_kafka_exactly_once_looks_up_a_commit_of_unknown_outcome_before_resending(coinbase, service,
                                                                                  tmp_path, monkeypatch):
    fatal = KafkaError(KafkaError._FENCED, "producer fenced after the commit (injected)", fatal=True)
    producer, runner = exactly_once_with(fatal, True, coinbase, service, tmp_path, monkeypatch)
    assert producer.commits > FAILING_COMMIT and runner.counters["retried"] == 1
    assert producer.made == 2  # the fatal error cost the producer


@pytest.mark.kafka
def test_kafka_exactly_once_deployments_on_two_hosts_keep_their_own_transactions(coinbase, service,
                                                                                  tmp_path, monkeypatch):
    prefix, venue, ref = coinbase
    broker = service("kafka")
    settings = sink_settings(tmp_path, url=broker.url, mode="exactly_once")  # the default topic prefix
    run = run_config(prefix, [venue], {"kafka": settings})
    here = run_sink_until(run, "kafka", at_heads(ref))
    monkeypatch.setattr(socket, "gethostname", lambda: "another-host")
    there = make_sink(run.sinks["kafka"])
    there.open()
    try:
        assert there.load_positions() == {}, "the other host's sink would resume from this host's positions"
    finally:
        there.close()
    assert there.transactional_id != here.sink.transactional_id  # neither fences the other
    configured = run_config(prefix, [venue], {"kafka": {**settings, "transactional_id": "fh-eu-1"}})
    assert make_sink(configured.sinks["kafka"]).transactional_id == "fh-eu-1"
