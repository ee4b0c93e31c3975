"""`fh sim` is strict: each venue answers only its documented URL paths and message shapes, refuses
anything else with the venue's error or close code, enforces the documented limits, and counts every
refusal and every connection it closes (GET <rest>/_sim/stats).

Each test runs a simulator on free loopback ports with real WebSocket and HTTP clients, and waits on
evidence (messages, close codes, counters); the time limits under test are shrunk to a second or less.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal

import numpy as np
import pytest
from picows import WSCloseCode, WSHandshakeError, WSListener, WSMsgType, WSTransport, ws_connect

from pipeline import FH, REPO, free_base_port
from tools.cli import build_parser
from feedhandler.instruments import PERPETUAL, Instrument
from feedhandler.venues import VENUES
from feedhandler.venues.okx.simulator import checksum
from tools.sim.server import (DEFAULT_VENUES, LIMITS, PORT_ORDER, REFERENCE_MIDS, BinanceFuturesLimits, BinanceLimits,
                              BybitLimits, BybitLinearSim, CoinbaseLimits, OkxLimits, Reference, Simulator,
                              parse_limits)


def simulate(scenario, venues=("binance",), rate: float = 50.0, **limits) -> None:
    """Runs `await scenario(sim)` against a synthetic simulator of `venues` (`limits`: per venue)."""
    async def main():
        async with Simulator.synthetic(list(venues), rate=rate, base_port=free_base_port(), limits=limits) as sim:
            await asyncio.wait_for(scenario(sim), 30)
    asyncio.run(main())


async def until(condition, what: str, timeout_s: float = 10.0):
    """Waits for `condition()` to be true; its value."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(0.01)
    return value


class Client(WSListener):
    """A picows client that keeps the JSON messages it receives, counts the pings (answering them with
    their payload unless told not to) and keeps the server's close code."""

    def __init__(self, answer_pings: bool = True):
        self.answer_pings = answer_pings
        self.transport: WSTransport | None = None
        self.messages: list = []
        self.pings = 0
        self.close_code: WSCloseCode | None = None
        self.disconnected = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        if frame.msg_type == WSMsgType.PING:
            self.pings += 1
            if self.answer_pings:
                transport.send_pong(frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.TEXT:
            self.messages.append(json.loads(frame.get_payload_as_bytes()))
        elif frame.msg_type == WSMsgType.CLOSE:
            self.close_code = frame.get_close_code()
            transport.send_close(self.close_code)
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected = True

    def send(self, message) -> None:
        self.transport.send(WSMsgType.TEXT, message if isinstance(message, bytes) else json.dumps(message).encode())

    def where(self, **fields) -> list:
        """The messages received so far that carry these fields."""
        return [m for m in self.messages if isinstance(m, dict) and all(m.get(k) == v for k, v in fields.items())]


async def connect(sim: Simulator, venue: str, path: str, answer_pings: bool = True) -> Client:
    _, client = await ws_connect(lambda: Client(answer_pings), f"ws://127.0.0.1:{sim.ports[venue].ws}{path}",
                                 enable_auto_pong=False)
    return client


async def refused(sim: Simulator, venue: str, path: str) -> int:
    """The HTTP status the WebSocket handshake on `path` is refused with."""
    with pytest.raises(WSHandshakeError) as refusal:
        await connect(sim, venue, path)
    return refusal.value.response.status


async def get(sim: Simulator, venue: str, target: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of GET `target` on the venue's REST port."""
    def fetch():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{sim.ports[venue].rest}{target}", timeout=5) as reply:
                return reply.status, dict(reply.headers), reply.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()
    return await asyncio.to_thread(fetch)


async def stats(sim: Simulator, venue: str) -> dict:
    return json.loads((await get(sim, venue, "/_sim/stats"))[2])


def test_simulator_urls_are_the_bases_the_workers_append_their_paths_to():
    urls = Simulator.synthetic(["binance", "coinbase", "kraken"], base_port=20000).urls()
    assert urls["binance"] == {"ws_url": "ws://127.0.0.1:20000", "rest_url": "http://127.0.0.1:20001"}
    assert urls["coinbase"]["ws_url"] == "ws://127.0.0.1:20002"
    assert urls["kraken"]["ws_url"] == "ws://127.0.0.1:20004/v2"


def test_simulator_serves_the_derivatives_venues_after_the_spot_ones_with_okx_on_its_public_path():
    urls = Simulator.synthetic(["binance_usdm", "binance_coinm", "okx"], base_port=20000).urls()
    assert urls["binance_usdm"] == {"ws_url": "ws://127.0.0.1:20006", "rest_url": "http://127.0.0.1:20007"}
    assert urls["binance_coinm"]["ws_url"] == "ws://127.0.0.1:20008"
    assert urls["okx"] == {"ws_url": "ws://127.0.0.1:20010/ws/v5/public", "rest_url": "http://127.0.0.1:20011"}


def test_fh_sim_serves_bybit_linear_by_default_after_okx_and_bybit_spot_and_inverse_on_request():
    assert build_parser().parse_args(["sim"]).venues.split(",") == list(DEFAULT_VENUES)
    assert DEFAULT_VENUES[-1] == "bybit_linear" and {"bybit", "bybit_inverse"} <= set(PORT_ORDER)
    urls = Simulator.synthetic(["bybit_linear", "bybit", "bybit_inverse"], base_port=18700).urls()
    assert urls["bybit_linear"] == {"ws_url": "ws://127.0.0.1:18712/v5/public/linear",
                                    "rest_url": "http://127.0.0.1:18713"}
    assert urls["bybit"]["ws_url"] == "ws://127.0.0.1:18714/v5/public/spot"
    assert urls["bybit_inverse"]["ws_url"] == "ws://127.0.0.1:18716/v5/public/inverse"


# ---------------------------------------------------------------- Binance: URL forms and streams

def test_binance_raw_stream_path_sends_bare_events():
    async def scenario(sim):
        client = await connect(sim, "binance", "/ws/btcusdt@depth@100ms")
        event = (await until(lambda: client.messages, "a depth update"))[0]
        assert event["e"] == "depthUpdate" and event["s"] == "BTCUSDT" and "stream" not in event
    simulate(scenario)


def test_binance_combined_stream_path_wraps_each_event_with_its_stream_name():
    async def scenario(sim):
        client = await connect(sim, "binance", "/stream?streams=btcusdt@depth/ethusdt@depth@100ms")
        await until(lambda: client.where(stream="btcusdt@depth") and client.where(stream="ethusdt@depth@100ms"),
                    "updates of both streams")
        assert {m["data"]["s"] for m in client.where(stream="btcusdt@depth")} == {"BTCUSDT"}
    simulate(scenario)


def test_binance_ws_path_subscribes_lists_and_unsubscribes_live():
    async def scenario(sim):
        client = await connect(sim, "binance", "/ws")
        client.send({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms", "btcusdt@trade"], "id": 1})
        await until(lambda: client.where(result=None, id=1), "the subscribe result")
        await until(lambda: client.where(e="depthUpdate"), "a depth update")
        client.send({"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": "two"})
        client.send({"method": "LIST_SUBSCRIPTIONS", "id": 3})
        assert (await until(lambda: client.where(id=3), "the list"))[0]["result"] == ["btcusdt@depth@100ms"]
        assert client.where(result=None, id="two")
    simulate(scenario)


def test_binance_refuses_an_undocumented_path_with_404_and_counts_it():
    async def scenario(sim):
        assert await refused(sim, "binance", "/stream/stream?streams=btcusdt@depth@100ms") == 404
        assert (await stats(sim, "binance"))["rejected"] == {"path": 1}
    simulate(scenario)


def test_binance_refuses_uppercase_and_unknown_stream_names():
    async def scenario(sim):
        assert await refused(sim, "binance", "/stream?streams=BTCUSDT@depth@100ms") == 400
        assert await refused(sim, "binance", "/ws/btcusdt@depth7") == 400
        client = await connect(sim, "binance", "/ws")
        client.send({"method": "SUBSCRIBE", "params": ["btcusdt@Trade"], "id": 1})
        error = (await until(lambda: client.where(id=1), "the answer"))[0]["error"]
        assert error["code"] == 2 and error["msg"].startswith("Invalid request")
        assert (await stats(sim, "binance"))["rejected"] == {"stream": 3}
    simulate(scenario)


def test_binance_refuses_more_streams_than_a_connection_may_listen_to():
    async def scenario(sim):
        assert await refused(sim, "binance", "/stream?streams=btcusdt@trade/btcusdt@depth/ethusdt@trade") == 400
        client = await connect(sim, "binance", "/stream?streams=btcusdt@trade/btcusdt@depth")
        client.send({"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 1})
        assert (await until(lambda: client.where(id=1), "the answer"))[0]["error"]["code"] == 2
        assert (await stats(sim, "binance"))["rejected"] == {"too_many_streams": 2}
    simulate(scenario, binance=BinanceLimits(streams_per_connection=2))


@pytest.mark.parametrize("request_text, code, message", [
    (b'{"method":"SUBSCRIBE","params":["btcusdt@trade"]', 3, "Invalid JSON"),
    (b'{"params":["btcusdt@trade"],"id":1}', 2, "Invalid request: missing field `method`"),
    (b'{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1.5}', 2,
     "Invalid request: request ID must be an unsigned integer"),
    (b'{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":"' + b"x" * 37 + b'"}', 2,
     "Invalid request: request ID must be an unsigned integer"),
    (b'{"method":"subscribe","params":["btcusdt@trade"],"id":1}', 2, "Invalid request: unknown variant"),
    (b'{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1,"extra":0}', 2, "Invalid request: too many parameters"),
    (b'{"method":"SET_PROPERTY","params":["combined","yes"],"id":1}', 1, "Invalid value type: expected Boolean"),
    (b'{"method":"GET_PROPERTY","params":["compressed"],"id":1}', 0, "Unknown property"),
])
def test_binance_answers_a_malformed_live_request_with_the_documented_error(request_text, code, message):
    async def scenario(sim):
        client = await connect(sim, "binance", "/ws")
        client.send(request_text)
        answer = (await until(lambda: client.where(result=None) or [m for m in client.messages if "error" in m],
                              "the answer"))[0]
        assert answer["error"]["code"] == code and answer["error"]["msg"].startswith(message)
        assert sum((await stats(sim, "binance"))["rejected"].values()) == 1
    simulate(scenario)


# ---------------------------------------------------------------- Binance: limits

def test_binance_closes_a_connection_sending_more_than_5_messages_a_second_with_1008():
    async def scenario(sim):
        client = await connect(sim, "binance", "/ws")
        for k in range(6):
            client.send({"method": "LIST_SUBSCRIPTIONS", "id": k})
        await until(lambda: client.disconnected, "the close")
        assert client.close_code == WSCloseCode.POLICY_VIOLATION and len(client.where(result=[])) == 5
        counters = await stats(sim, "binance")
        assert counters["closed"] == {"message_rate": 1} and counters["rejected"] == {"message_rate": 1}
    simulate(scenario)


def test_binance_counts_ping_frames_against_the_message_rate():
    async def scenario(sim):
        client = await connect(sim, "binance", "/ws")
        for _ in range(6):
            client.transport.send_ping(b"hi")
        await until(lambda: client.disconnected, "the close")
        assert client.close_code == WSCloseCode.POLICY_VIOLATION
    simulate(scenario)


def test_binance_ends_a_connection_at_its_lifetime_with_server_shutdown_first():
    async def scenario(sim):
        combined = await connect(sim, "binance", "/stream?streams=btcusdt@trade")
        raw = await connect(sim, "binance", "/ws/btcusdt@trade")
        await until(lambda: combined.disconnected and raw.disconnected, "both closes", timeout_s=5)
        assert combined.where(stream="!serverShutdown")[0]["data"]["e"] == "serverShutdown"
        assert raw.where(e="serverShutdown") and raw.close_code == combined.close_code == WSCloseCode.GOING_AWAY
        assert (await stats(sim, "binance"))["closed"] == {"lifetime": 2}
    simulate(scenario, binance=BinanceLimits(lifetime_s=1.0))


def test_binance_closes_a_connection_that_does_not_answer_its_pings():
    async def scenario(sim):
        client = await connect(sim, "binance", "/ws/btcusdt@trade", answer_pings=False)
        await until(lambda: client.disconnected, "the close", timeout_s=5)
        assert client.pings >= 2 and (await stats(sim, "binance"))["closed"] == {"pong_timeout": 1}
    simulate(scenario, binance=BinanceLimits(ping_every_s=0.2, pong_timeout_s=0.6))


def test_binance_keeps_a_connection_that_answers_its_pings_however_quiet_the_market():
    async def scenario(sim):
        client = await connect(sim, "binance", "/ws/btcusdt@depth@100ms")
        await until(lambda: client.pings >= 10, "ten pings (five pong timeouts)")
        assert not client.disconnected and client.messages == []
        assert (await stats(sim, "binance"))["closed"] == {}
    simulate(scenario, rate=1e-9, binance=BinanceLimits(ping_every_s=0.2, pong_timeout_s=0.4))


def test_binance_refuses_new_connections_over_the_per_ip_rate_with_429():
    async def scenario(sim):
        for _ in range(2):
            await connect(sim, "binance", "/ws")
        assert await refused(sim, "binance", "/ws") == 429
        assert (await stats(sim, "binance"))["rejected"] == {"connection_rate": 1}
    simulate(scenario, binance=BinanceLimits(connections_per_window=2))


# ---------------------------------------------------------------- Binance: event contents

def test_binance_time_unit_microsecond_gives_event_times_in_microseconds():
    async def scenario(sim):
        micros = await connect(sim, "binance", "/stream?streams=btcusdt@depth@100ms&timeUnit=MICROSECOND")
        millis = await connect(sim, "binance", "/stream?streams=btcusdt@depth@100ms")
        await until(lambda: micros.messages and millis.messages, "updates on both")
        now_us = time.time() * 1e6
        assert abs(micros.messages[0]["data"]["E"] - now_us) < 5e6
        assert abs(millis.messages[0]["data"]["E"] * 1000 - now_us) < 5e6
    simulate(scenario)


def test_binance_connections_on_one_symbol_share_one_diff_numbering():
    async def scenario(sim):
        clients = [await connect(sim, "binance", "/stream?streams=btcusdt@depth@100ms") for _ in range(2)]
        await until(lambda: all(len(c.messages) >= 20 for c in clients), "twenty updates on each")
        numbered = [{(m["data"]["U"], m["data"]["u"]) for m in c.messages} for c in clients]
        assert len(numbered[0] & numbered[1]) >= 15
    simulate(scenario)


# ---------------------------------------------------------------- Binance: REST

def test_binance_rest_weighs_depth_by_limit_and_reports_the_weight_used_on_every_answer():
    async def scenario(sim):
        used = []
        for target in ("/api/v3/depth?symbol=BTCUSDT&limit=100", "/api/v3/depth?symbol=BTCUSDT&limit=101",
                       "/api/v3/depth?symbol=BTCUSDT&limit=1000", "/api/v3/depth?symbol=BTCUSDT&limit=5000",
                       "/api/v3/depth?symbol=BTCUSDT&limit=9000", "/api/v3/depth?symbol=BTCUSDT",
                       "/api/v3/exchangeInfo", "/api/v3/depth?symbol=XRPUSDT"):
            status, headers, _ = await get(sim, "binance", target)
            used.append((status, int(headers["X-MBX-USED-WEIGHT-1M"])))
        assert used == [(200, 5), (200, 30), (200, 80), (200, 330), (200, 580), (200, 585), (200, 605), (400, 605)]
    simulate(scenario)


@pytest.mark.parametrize("limit", ["abc", "1.5", "-5", "0"])
def test_binance_rest_depth_limit_must_be_a_positive_integer(limit):
    async def scenario(sim):
        status, headers, body = await get(sim, "binance", f"/api/v3/depth?symbol=BTCUSDT&limit={limit}")
        assert (status, json.loads(body)["code"], headers["X-MBX-USED-WEIGHT-1M"]) == (400, -1100, "0")
        assert (await stats(sim, "binance"))["rejected"] == {"rest_param": 1}
    simulate(scenario)


def test_binance_rest_over_the_weight_budget_gets_429_then_a_418_ban_for_asking_during_retry_after():
    async def scenario(sim):
        depth = "/api/v3/depth?symbol=BTCUSDT&limit=100"
        assert [(await get(sim, "binance", depth))[0] for _ in range(2)] == [200, 200]
        status, headers, body = await get(sim, "binance", depth)
        assert (status, json.loads(body)["code"], headers["X-MBX-USED-WEIGHT-1M"]) == (429, -1003, "10")
        assert 0 < int(headers["Retry-After"]) <= 60
        status, headers, _ = await get(sim, "binance", depth)
        assert status == 418 and 60 < int(headers["Retry-After"]) <= 120
        assert (await stats(sim, "binance"))["rejected"] == {"rest_rate_limit": 1, "rest_banned": 1}
    simulate(scenario, binance=BinanceLimits(weight_per_window=10))


def test_binance_rest_unknown_path_gets_404_with_a_binance_error_body():
    async def scenario(sim):
        status, headers, body = await get(sim, "binance", "/api/v3/ticker/bookTicker")
        assert status == 404 and set(json.loads(body)) == {"code", "msg"} and "X-MBX-USED-WEIGHT-1M" in headers
        assert (await stats(sim, "binance"))["rejected"] == {"rest_path": 1}
    simulate(scenario)


# ---------------------------------------------------------------- Coinbase Advanced Trade

def test_coinbase_answers_only_the_root_path():
    async def scenario(sim):
        assert await refused(sim, "coinbase", "/ws") == 404
        assert (await stats(sim, "coinbase"))["rejected"] == {"path": 1}
    simulate(scenario, venues=("coinbase",))


def test_coinbase_subscribe_gets_the_snapshot_then_the_subscriptions_then_heartbeats():
    async def scenario(sim):
        client = await connect(sim, "coinbase", "/")
        client.send({"type": "subscribe", "channel": "level2", "product_ids": ["BTC-USD"]})
        client.send({"type": "subscribe", "channel": "heartbeats"})
        await until(lambda: client.where(channel="heartbeats"), "a heartbeat")
        snapshot, subscriptions = client.messages[0], client.where(channel="subscriptions")[-1]
        assert snapshot["channel"] == "l2_data" and snapshot["events"][0]["type"] == "snapshot"
        assert subscriptions["events"][0]["subscriptions"] == {"level2": ["BTC-USD"], "market_trades": [],
                                                               "heartbeats": ["heartbeats"]}
    simulate(scenario, venues=("coinbase",))


def test_coinbase_closes_a_connection_that_does_not_subscribe_within_the_deadline():
    async def scenario(sim):
        subscriber = await connect(sim, "coinbase", "/")
        subscriber.send({"type": "subscribe", "channel": "heartbeats"})
        silent = await connect(sim, "coinbase", "/")  # its deadline comes after the subscriber's
        await until(lambda: silent.disconnected, "the silent connection's close", timeout_s=5)
        assert silent.close_code == WSCloseCode.POLICY_VIOLATION and not subscriber.disconnected
        assert (await stats(sim, "coinbase"))["closed"] == {"subscribe_deadline": 1}
    simulate(scenario, venues=("coinbase",), coinbase=CoinbaseLimits(subscribe_deadline_s=0.5))


@pytest.mark.parametrize("request_, reason", [
    ({"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["level2"]}, "bad_message"),
    ({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "full"}, "bad_message"),
    ({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": ["level2"]}, "bad_message"),
    ({"type": "sub", "product_ids": ["BTC-USD"], "channel": "level2"}, "bad_message"),
    ({"type": "subscribe", "channel": "level2"}, "bad_message"),
    ({"type": "subscribe", "product_ids": ["DOGE-USD"], "channel": "level2"}, "unknown_product"),
    ("not json", "bad_message"),
])
def test_coinbase_answers_a_malformed_message_with_an_error_and_subscribes_nothing(request_, reason):
    async def scenario(sim):
        client = await connect(sim, "coinbase", "/")
        client.send(request_.encode() if isinstance(request_, str) else request_)
        error = (await until(lambda: client.where(type="error"), "the error"))[0]
        assert error["message"] and not client.where(channel="subscriptions")
        assert (await stats(sim, "coinbase"))["rejected"] == {reason: 1}
    simulate(scenario, venues=("coinbase",))


def test_coinbase_keeps_the_level2_products_per_connection_cap():
    async def scenario(sim):
        client = await connect(sim, "coinbase", "/")
        client.send({"type": "subscribe", "channel": "level2", "product_ids": ["BTC-USD", "ETH-USD", "BTC-USDT"]})
        error = (await until(lambda: client.where(type="error"), "the error"))[0]
        assert error["message"] == "too many L2 streams requested in a single session"
    simulate(scenario, venues=("coinbase",), coinbase=CoinbaseLimits(level2_per_connection=2))


def test_coinbase_closes_the_connection_that_sends_the_ninth_message_of_a_second_from_one_ip():
    async def scenario(sim):
        first, second = await connect(sim, "coinbase", "/"), await connect(sim, "coinbase", "/")
        for _ in range(4):
            first.send({"type": "subscribe", "channel": "heartbeats"})
            second.send({"type": "subscribe", "channel": "heartbeats"})
        await until(lambda: len(second.where(channel="subscriptions")) == 4, "eight answers")
        first.send({"type": "subscribe", "channel": "heartbeats"})
        await until(lambda: first.disconnected, "the close")
        assert first.where(type="error") and first.close_code == WSCloseCode.POLICY_VIOLATION
        assert not second.disconnected
        counters = await stats(sim, "coinbase")
        assert counters["closed"] == {"message_rate": 1} and counters["rejected"] == {"message_rate": 1}
    simulate(scenario, venues=("coinbase",))


def test_coinbase_refuses_new_connections_over_the_per_ip_rate_with_429():
    async def scenario(sim):
        for _ in range(2):
            await connect(sim, "coinbase", "/")
        assert await refused(sim, "coinbase", "/") == 429
        assert (await stats(sim, "coinbase"))["rejected"] == {"connection_rate": 1}
    simulate(scenario, venues=("coinbase",), coinbase=CoinbaseLimits(connections_per_s=2))


# ---------------------------------------------------------------- Kraken v2

def test_kraken_answers_only_the_v2_path():
    async def scenario(sim):
        assert await refused(sim, "kraken", "/") == 404
        assert (await stats(sim, "kraken"))["rejected"] == {"path": 1}
    simulate(scenario, venues=("kraken",))


def test_kraken_acks_a_subscribe_once_per_symbol_as_documented_then_sends_the_snapshots():
    async def scenario(sim):
        client = await connect(sim, "kraken", "/v2")
        client.send({"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD", "ETH/USD"],
                                                       "depth": 25, "snapshot": True}, "req_id": 7})
        await until(lambda: len(client.where(channel="book", type="snapshot")) == 2, "both snapshots")
        acks = client.where(method="subscribe")
        assert [ack["result"] for ack in acks] == [
            {"channel": "book", "depth": 25, "snapshot": True, "symbol": symbol} for symbol in ("BTC/USD", "ETH/USD")]
        assert all(ack["success"] is True and ack["req_id"] == 7 for ack in acks)
        assert all(ack["time_in"] <= ack["time_out"] and ack["time_out"].endswith("Z") for ack in acks)
        assert client.messages.index(acks[1]) < client.messages.index(client.where(type="snapshot")[1])
    simulate(scenario, venues=("kraken",))


@pytest.mark.parametrize("params, reason, error", [
    ({"channel": "book", "symbol": ["BTC/USD"], "depth": 20}, "bad_depth", "Subscription depth not supported"),
    ({"channel": "spread", "symbol": ["BTC/USD"]}, "unknown_channel", "Channel not supported: spread"),
    ({"channel": "book"}, "bad_request", "Missing field: symbol"),
    ({"channel": "trade", "symbol": ["BTC/USD"], "depth": 10}, "bad_request", "Unsupported field: 'depth'"),
    (None, "bad_request", "Missing field: params"),
])
def test_kraken_answers_a_bad_subscribe_with_one_documented_error_ack(params, reason, error):
    async def scenario(sim):
        client = await connect(sim, "kraken", "/v2")
        client.send({"method": "subscribe", "req_id": 3, **({"params": params} if params else {})})
        ack = (await until(lambda: client.where(method="subscribe"), "the ack"))[0]
        assert ack["success"] is False and ack["error"].startswith(error) and ack["req_id"] == 3
        assert {"time_in", "time_out"} <= ack.keys() and "result" not in ack
        assert (await stats(sim, "kraken"))["rejected"] == {reason: 1}
    simulate(scenario, venues=("kraken",))


def test_kraken_acks_an_unknown_symbol_with_an_error_naming_it_and_subscribes_the_others():
    async def scenario(sim):
        client = await connect(sim, "kraken", "/v2")
        client.send({"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD", "XBT/USD"]}})
        await until(lambda: len(client.where(method="subscribe")) == 2, "two acks")
        assert client.where(method="subscribe", success=False, symbol="XBT/USD")
        assert client.where(method="subscribe", success=True)[0]["result"]["depth"] == 10
    simulate(scenario, venues=("kraken",))


def test_kraken_ping_gets_a_pong_with_its_req_id_and_times():
    async def scenario(sim):
        client = await connect(sim, "kraken", "/v2")
        client.send({"method": "ping", "req_id": 101})
        pong = (await until(lambda: client.where(method="pong"), "the pong"))[0]
        assert set(pong) == {"method", "req_id", "time_in", "time_out"}
        assert pong["req_id"] == 101 and pong["time_in"] <= pong["time_out"]
    simulate(scenario, venues=("kraken",))


# ---------------------------------------------------------------- Binance USD-M and COIN-M futures

def test_binance_usdm_serves_depth_on_the_public_route_and_agg_trades_on_the_market_route():
    async def scenario(sim):
        public = await connect(sim, "binance_usdm", "/public/stream?streams=btcusdt@depth@100ms")
        market = await connect(sim, "binance_usdm", "/market/ws/btcusdt@aggTrade")
        await until(lambda: public.messages and market.messages, "a depth update and an aggTrade")
        assert public.messages[0]["stream"] == "btcusdt@depth@100ms"
        assert {"E", "T", "U", "u", "pu"} <= public.messages[0]["data"].keys()
        assert market.messages[0]["e"] == "aggTrade" and {"a", "f", "l", "T", "m"} <= market.messages[0].keys()
    simulate(scenario, venues=("binance_usdm",))


def test_binance_usdm_sends_a_book_ticker_on_each_top_of_book_change_with_the_books_update_id():
    async def scenario(sim):
        client = await connect(sim, "binance_usdm", "/public/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker")
        await until(lambda: len([m for m in client.messages if m["stream"] == "btcusdt@bookTicker"]) >= 10,
                    "ten bookTickers")
        last_u, tickers = None, 0
        for message in client.messages:
            event = message["data"]
            if message["stream"] == "btcusdt@bookTicker":
                assert list(event) == ["e", "u", "E", "T", "s", "b", "B", "a", "A"] and event["e"] == "bookTicker"
                assert event["u"] == last_u and float(event["b"]) < float(event["a"])  # the book as of its last diff
                tickers += 1
            else:
                last_u = event["u"]
        assert tickers >= 10
    simulate(scenario, venues=("binance_usdm",))


def test_binance_usdm_sends_mark_price_each_second_and_liquidations_on_the_market_route():
    async def scenario(sim):
        sim.venues["binance_usdm"].liquidation_chance = 1.0
        client = await connect(sim, "binance_usdm", "/market/stream?streams=btcusdt@markPrice@1s/btcusdt@forceOrder")
        await until(lambda: len(client.messages) >= 4, "two seconds of mark prices and liquidations")
        marks = [m["data"] for m in client.messages if m["stream"] == "btcusdt@markPrice@1s"]
        orders = [m["data"] for m in client.messages if m["stream"] == "btcusdt@forceOrder"]
        assert marks and orders
        for mark in marks:
            assert list(mark) == ["e", "E", "s", "p", "i", "P", "r", "T"] and mark["e"] == "markPriceUpdate"
            assert mark["T"] % (8 * 3600 * 1000) == 0 and 0 < mark["T"] - mark["E"] <= 8 * 3600 * 1000
            assert abs(Decimal(mark["i"]) - Decimal(mark["p"])) <= Decimal("0.3")  # 3 ticks of 0.1
            assert len(mark["i"].partition(".")[2]) == 8 and -Decimal("0.0002") <= Decimal(mark["r"]) <= Decimal("0.001")
        for event in orders:
            order = event["o"]
            assert list(order) == ["s", "S", "o", "f", "q", "p", "ap", "X", "l", "z", "T"] and order["S"] in ("BUY", "SELL")
            assert (order["o"], order["f"], order["X"]) == ("LIMIT", "IOC", "FILLED") and order["z"] == order["q"]
    simulate(scenario, venues=("binance_usdm",))


def test_binance_futures_answer_open_interest_with_its_documented_fields_and_weight():
    async def scenario(sim):
        status, headers, body = await get(sim, "binance_usdm", "/fapi/v1/openInterest?symbol=BTCUSDT")
        answer = json.loads(body)
        assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "1" and list(answer) == ["openInterest", "symbol", "time"]
        assert answer["symbol"] == "BTCUSDT" and len(answer["openInterest"].partition(".")[2]) == 3  # 0.001 BTC lots
        _, _, body = await get(sim, "binance_coinm", "/dapi/v1/openInterest?symbol=BTCUSD_PERP")
        assert list(json.loads(body)) == ["symbol", "pair", "openInterest", "contractType", "time"]
        assert (await get(sim, "binance_usdm", "/fapi/v1/openInterest"))[0] == 400  # symbol is mandatory
        assert (await get(sim, "binance_usdm", "/dapi/v1/openInterest?symbol=BTCUSDT"))[0] == 404
        assert (await stats(sim, "binance_usdm"))["rejected"] == {"rest_param": 1, "rest_path": 1}
    simulate(scenario, venues=("binance_usdm", "binance_coinm"))


def test_binance_usdm_chains_each_depth_update_to_the_last_by_pu():
    async def scenario(sim):
        client = await connect(sim, "binance_usdm", "/public/ws/btcusdt@depth@100ms")
        await until(lambda: len(client.messages) >= 20, "twenty depth updates")
        events = client.messages[:20]
        assert all(event["pu"] == previous["u"] for previous, event in zip(events, events[1:]))
    simulate(scenario, venues=("binance_usdm",))


def test_binance_usdm_acks_a_stream_of_the_other_route_but_never_sends_it_and_counts_it():
    async def scenario(sim):
        wrong = await connect(sim, "binance_usdm", "/public/ws")
        wrong.send({"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 1})
        await until(lambda: wrong.where(result=None, id=1), "the acknowledgement")
        right = await connect(sim, "binance_usdm", "/market/ws/btcusdt@aggTrade")
        await until(lambda: len(right.messages) >= 5, "five aggTrades on the market route")
        assert wrong.messages == [{"result": None, "id": 1}]
        assert (await stats(sim, "binance_usdm"))["rejected"] == {"wrong_route": 1}
    simulate(scenario, venues=("binance_usdm",))


@pytest.mark.parametrize("path, status", [
    ("/fstream/stream?streams=btcusdt@depth", 404),
    ("/public/stream?streams=btcusdt@trade", 400),  # @trade is not documented on futures
    ("/public/stream?streams=btcusdt@depth&timeUnit=MICROSECOND", 400),  # documented for spot only
    ("/market/stream?streams=BTCUSDT@aggTrade", 400),
])
def test_binance_usdm_refuses_an_undocumented_path_stream_or_parameter(path, status):
    async def scenario(sim):
        assert await refused(sim, "binance_usdm", path) == status
        assert sum((await stats(sim, "binance_usdm"))["rejected"].values()) == 1
    simulate(scenario, venues=("binance_usdm",))


def test_binance_usdm_rest_weighs_depth_by_the_futures_table_and_takes_only_its_limits():
    async def scenario(sim):
        used = []
        for target in ("/fapi/v1/depth?symbol=BTCUSDT&limit=50", "/fapi/v1/depth?symbol=BTCUSDT&limit=100",
                       "/fapi/v1/depth?symbol=BTCUSDT&limit=1000", "/fapi/v1/depth?symbol=BTCUSDT",
                       "/fapi/v1/exchangeInfo", "/fapi/v1/depth?symbol=BTCUSDT&limit=5000",
                       "/fapi/v1/depth?symbol=BTCUSDT&limit=99", "/api/v3/depth?symbol=BTCUSDT&limit=100"):
            status, headers, _ = await get(sim, "binance_usdm", target)
            used.append((status, int(headers["X-MBX-USED-WEIGHT-1M"])))
        assert used == [(200, 2), (200, 7), (200, 27), (200, 37), (200, 38), (400, 38), (400, 38), (404, 38)]
        assert (await stats(sim, "binance_usdm"))["rejected"] == {"rest_param": 2, "rest_path": 1}
        body = json.loads((await get(sim, "binance_usdm", "/fapi/v1/depth?symbol=BTCUSDT&limit=5"))[2])
        assert set(body) == {"lastUpdateId", "E", "T", "bids", "asks"} and len(body["bids"]) == 5
    simulate(scenario, venues=("binance_usdm",))


def test_binance_usdm_exchange_info_lists_perpetuals_with_their_filters():
    async def scenario(sim):
        status, _, body = await get(sim, "binance_usdm", "/fapi/v1/exchangeInfo")
        entry = json.loads(body)["symbols"][0]
        assert (status, entry["contractType"], entry["marginAsset"]) == (200, "PERPETUAL", "USDT")
        [instrument] = VENUES["binance_usdm"].parse_instruments("binance_usdm", json.loads(body))
        assert (instrument.symbol, str(instrument.tick), str(instrument.lot)) == ("BTC-USDT-PERP", "0.1", "0.001")
    simulate(scenario, venues=("binance_usdm",))


def test_binance_usdm_closes_a_connection_sending_more_than_10_messages_a_second():
    async def scenario(sim):
        client = await connect(sim, "binance_usdm", "/public/ws")
        for k in range(11):
            client.send({"method": "LIST_SUBSCRIPTIONS", "id": k})
        await until(lambda: client.disconnected, "the close")
        assert client.close_code == WSCloseCode.POLICY_VIOLATION and len(client.where(result=[])) == 10
    simulate(scenario, venues=("binance_usdm",))


def test_binance_usdm_refuses_more_than_its_streams_per_connection():
    async def scenario(sim):
        assert await refused(sim, "binance_usdm", "/public/stream?streams=btcusdt@depth/btcusdt@bookTicker") == 400
        assert (await stats(sim, "binance_usdm"))["rejected"] == {"too_many_streams": 1}
    simulate(scenario, venues=("binance_usdm",), binance_usdm=BinanceFuturesLimits(streams_per_connection=1))


def test_binance_coinm_serves_books_and_trades_on_one_stream_and_counts_contracts():
    async def scenario(sim):
        assert await refused(sim, "binance_coinm", "/public/stream?streams=btcusd_perp@depth") == 404
        depth, trades = "btcusd_perp@depth@100ms", "btcusd_perp@aggTrade"
        client = await connect(sim, "binance_coinm", f"/stream?streams={depth}/{trades}")
        await until(lambda: client.where(stream=depth) and client.where(stream=trades), "depth updates and aggTrades")
        assert client.where(stream=depth)[0]["data"]["ps"] == "BTCUSD"
        _, _, info = await get(sim, "binance_coinm", "/dapi/v1/exchangeInfo")
        [instrument] = VENUES["binance_coinm"].parse_instruments("binance_coinm", json.loads(info))
        assert (instrument.symbol, instrument.contract_size, instrument.settle) == ("BTC-USD-PERP", 100, "BTC")
        book = json.loads((await get(sim, "binance_coinm", "/dapi/v1/depth?symbol=BTCUSD_PERP&limit=10"))[2])
        assert (book["symbol"], book["pair"], len(book["asks"])) == ("BTCUSD_PERP", "BTCUSD", 10)
        assert (await get(sim, "binance_coinm", "/fapi/v1/depth?symbol=BTCUSD_PERP"))[0] == 404
    simulate(scenario, venues=("binance_coinm",))


# ---------------------------------------------------------------- OKX v5 public

def books_of(client: Client, inst: str) -> list:
    return [m for m in client.messages if isinstance(m, dict) and m.get("arg") == {"channel": "books", "instId": inst}
            and "data" in m]


def test_okx_answers_only_the_public_path():
    async def scenario(sim):
        assert await refused(sim, "okx", "/ws/v5/business") == 404
        assert (await stats(sim, "okx"))["rejected"] == {"path": 1}
    simulate(scenario, venues=("okx",))


def test_okx_acks_each_arg_then_sends_the_snapshot_then_updates_chained_by_seq_id_with_the_top_25_checksum():
    async def scenario(sim):
        client = await connect(sim, "okx", "/ws/v5/public")
        client.send({"id": "7", "op": "subscribe", "args": [{"channel": "books", "instId": "ETH-USDT-SWAP"},
                                                            {"channel": "trades", "instId": "ETH-USDT-SWAP"}]})
        await until(lambda: len(books_of(client, "ETH-USDT-SWAP")) >= 10 and client.where(arg={
            "channel": "trades", "instId": "ETH-USDT-SWAP"}, event=None), "a snapshot, updates and a trade")
        acks = client.where(event="subscribe")
        assert [ack["arg"]["channel"] for ack in acks] == ["books", "trades"]
        assert all(ack["id"] == "7" and ack["connId"] for ack in acks)
        pushes = books_of(client, "ETH-USDT-SWAP")
        assert client.messages.index(acks[0]) < client.messages.index(pushes[0])
        assert [push["action"] for push in pushes[:3]] == ["snapshot", "update", "update"]
        data = [push["data"][0] for push in pushes]
        assert data[0]["prevSeqId"] == -1
        assert all(d["prevSeqId"] == previous["seqId"] for previous, d in zip(data, data[1:]))
        snapshot = data[0]
        assert snapshot["checksum"] == checksum(*([tuple(level[:2]) for level in snapshot[side][:25]]
                                                  for side in ("bids", "asks")))
    simulate(scenario, venues=("okx",))


def test_okx_connections_on_one_instrument_share_its_seq_ids_and_a_new_subscriber_breaks_no_chain():
    async def scenario(sim):
        first, second = [await connect(sim, "okx", "/ws/v5/public") for _ in range(2)]
        first.send({"op": "subscribe", "args": [{"channel": "books", "instId": "ETH-USDT-SWAP"}]})
        await until(lambda: len(books_of(first, "ETH-USDT-SWAP")) >= 5, "five pushes on the first")
        second.send({"op": "subscribe", "args": [{"channel": "books", "instId": "ETH-USDT-SWAP"}]})
        await until(lambda: all(len(books_of(c, "ETH-USDT-SWAP")) >= 20 for c in (first, second)),
                    "twenty pushes on each")
        for client in (first, second):
            data = [push["data"][0] for push in books_of(client, "ETH-USDT-SWAP")]
            assert all(d["prevSeqId"] == previous["seqId"] for previous, d in zip(data, data[1:]))
        seq_ids = [{push["data"][0]["seqId"] for push in books_of(c, "ETH-USDT-SWAP")[1:]} for c in (first, second)]
        assert len(seq_ids[0] & seq_ids[1]) >= 15
    simulate(scenario, venues=("okx",))


@pytest.mark.parametrize("request_", [
    {"op": "subscribe", "args": {"channel": "books", "instId": "ETH-USDT-SWAP"}},
    {"op": "subscribe", "args": []},
    {"op": "sub", "args": [{"channel": "books", "instId": "ETH-USDT-SWAP"}]},
    {"op": "subscribe", "args": [{"channel": "books", "instId": "ETH-USDT-SWAP", "depth": 5}]},
    {"op": "subscribe", "args": [{"channel": "books"}]},
    {"op": "subscribe", "args": [{"channel": "liquidation-orders", "instType": "SWAP", "instId": "ETH-USDT-SWAP"}]},
    {"op": "subscribe", "args": [{"channel": "books", "instId": "ETH-USDT-SWAP" + " " * 65536}]},
    {"op": "subscribe", "args": [{"channel": "books", "instId": "ETH-USDT-SWAP"}], "id": "not-alphanumeric"},
    {"method": "subscribe", "params": ["books"]},
    "not json",
])
def test_okx_answers_a_malformed_request_with_one_error_60012_and_subscribes_nothing(request_):
    async def scenario(sim):
        client = await connect(sim, "okx", "/ws/v5/public")
        client.send(request_.encode() if isinstance(request_, str) else request_)
        error = (await until(lambda: client.where(event="error"), "the error"))[0]
        assert error["code"] == "60012" and error["msg"].startswith("Invalid request") and error["connId"]
        assert (await stats(sim, "okx"))["rejected"] == {"bad_request": 1} and not client.where(event="subscribe")
    simulate(scenario, venues=("okx",))


def test_okx_refuses_an_unknown_channel_or_instrument_per_arg_and_subscribes_the_others():
    async def scenario(sim):
        client = await connect(sim, "okx", "/ws/v5/public")
        client.send({"op": "subscribe", "args": [{"channel": "books", "instId": "ETH-USDT"},
                                                 {"channel": "books7", "instId": "ETH-USDT-SWAP"},
                                                 {"channel": "trades", "instId": "ETH-USDT-SWAP"}]})
        await until(lambda: len(client.where(event="error")) == 2 and client.where(event="subscribe"), "three answers")
        assert {error["code"] for error in client.where(event="error")} == {"60018"}
        assert client.where(event="subscribe")[0]["arg"] == {"channel": "trades", "instId": "ETH-USDT-SWAP"}
        assert (await stats(sim, "okx"))["rejected"] == {"unknown_channel": 2}
    simulate(scenario, venues=("okx",))


def pushes(client: Client, channel: str) -> list:
    return [m for m in client.messages if isinstance(m, dict) and m.get("arg", {}).get("channel") == channel
            and "data" in m]


def test_okx_serves_bbo_funding_mark_open_interest_index_and_liquidations_in_the_documented_shapes():
    """§2.4, §2.8: bbo-tbt one level a side numbered by seqId, funding-rate, mark-price and index-tickers
    (by index) every second, open-interest every few seconds (in contracts and coin), liquidation-orders
    by instType now and then."""
    async def scenario(sim):
        client = await connect(sim, "okx", "/ws/v5/public")
        client.send({"op": "subscribe", "args": [{"channel": c, "instId": "ETH-USDT-SWAP"} for c in (
            "bbo-tbt", "funding-rate", "mark-price", "open-interest")] + [
            {"channel": "liquidation-orders", "instType": "SWAP"}, {"channel": "index-tickers", "instId": "ETH-USDT"}]})
        await until(lambda: all(pushes(client, c) for c in ("bbo-tbt", "funding-rate", "mark-price", "open-interest",
                                                            "liquidation-orders", "index-tickers")), "a push of each",
                    timeout_s=25)
        assert len(client.where(event="subscribe")) == 6
        index = pushes(client, "index-tickers")[0]
        assert index["arg"] == {"channel": "index-tickers", "instId": "ETH-USDT"} and set(index["data"][0]) == {
            "instId", "idxPx", "high24h", "low24h", "open24h", "sodUtc0", "sodUtc8", "ts"}
        bbos = [push["data"][0] for push in pushes(client, "bbo-tbt")]
        assert all(len(b["bids"]) == len(b["asks"]) == 1 and len(b["bids"][0]) == 4 for b in bbos)
        assert [b["seqId"] for b in bbos] == sorted({b["seqId"] for b in bbos})  # increasing
        funding = pushes(client, "funding-rate")[0]["data"][0]
        assert int(funding["nextFundingTime"]) - int(funding["fundingTime"]) == 8 * 3600 * 1000
        assert int(funding["fundingTime"]) > int(funding["ts"]) and funding["nextFundingRate"] == ""
        assert set(pushes(client, "mark-price")[0]["data"][0]) == {"instType", "instId", "markPx", "ts"}
        oi = pushes(client, "open-interest")[0]["data"][0]
        assert Decimal(oi["oiCcy"]) == Decimal(oi["oi"]) * Decimal("0.1")  # ETH-USDT-SWAP: 0.1 ETH a contract
        liquidation = pushes(client, "liquidation-orders")[0]
        assert liquidation["arg"] == {"channel": "liquidation-orders", "instType": "SWAP"}
        (item,) = liquidation["data"]
        assert item["instId"] == "ETH-USDT-SWAP" and item["instType"] == "SWAP" and item["uly"] == "ETH-USDT"
        assert [(d["side"], d["posSide"]) for d in item["details"]] in ([("buy", "short")], [("sell", "long")])
    simulate(scenario, venues=("okx",))


def test_okx_refuses_a_market_data_channel_by_the_wrong_key_or_for_the_wrong_inst_type():
    async def scenario(sim):
        client = await connect(sim, "okx", "/ws/v5/public")
        client.send({"op": "subscribe", "args": [{"channel": "liquidation-orders", "instId": "ETH-USDT-SWAP"},
                                                 {"channel": "liquidation-orders", "instType": "SPOT"},
                                                 {"channel": "funding-rate", "instType": "SWAP"},
                                                 {"channel": "index-tickers", "instId": "ETH-USDT-SWAP"},
                                                 {"channel": "index-tickers", "instId": "DOGE-USDT"},
                                                 {"channel": "funding-rate", "instId": "ETH-USDT-SWAP"}]})
        await until(lambda: len(client.where(event="error")) == 5 and client.where(event="subscribe"), "six answers")
        assert {error["code"] for error in client.where(event="error")} == {"60018"}
        assert client.where(event="subscribe")[0]["arg"] == {"channel": "funding-rate", "instId": "ETH-USDT-SWAP"}
    simulate(scenario, venues=("okx",))


def test_okx_answers_the_text_ping_with_the_text_pong():
    async def scenario(sim):
        pongs = []
        client = await connect(sim, "okx", "/ws/v5/public")
        client.on_ws_frame = lambda transport, frame: pongs.append(frame.get_payload_as_bytes())
        client.transport.send(WSMsgType.TEXT, b"ping")
        assert (await until(lambda: pongs, "the pong")) == [b"pong"]
    simulate(scenario, venues=("okx",))


def test_okx_closes_a_connection_with_nothing_subscribed_for_its_idle_time():
    async def scenario(sim):
        subscribed = await connect(sim, "okx", "/ws/v5/public")
        subscribed.send({"op": "subscribe", "args": [{"channel": "books", "instId": "ETH-USDT-SWAP"}]})
        bare = await connect(sim, "okx", "/ws/v5/public")
        await until(lambda: bare.disconnected, "the idle close", timeout_s=5)
        assert not subscribed.disconnected and (await stats(sim, "okx"))["closed"] == {"idle": 1}
    simulate(scenario, venues=("okx",), okx=OkxLimits(idle_s=0.5))


def test_okx_refuses_subscribe_requests_over_the_hourly_budget_with_60014():
    async def scenario(sim):
        client = await connect(sim, "okx", "/ws/v5/public")
        for _ in range(3):
            client.send({"op": "subscribe", "args": [{"channel": "trades", "instId": "ETH-USDT-SWAP"}]})
        await until(lambda: len(client.where(event="subscribe")) == 2 and client.where(event="error"), "the refusal")
        assert client.where(event="error")[0]["code"] == "60014"
        assert (await stats(sim, "okx"))["rejected"] == {"request_rate": 1}
    simulate(scenario, venues=("okx",), okx=OkxLimits(requests_per_hour=2))


def test_okx_refuses_a_fourth_connection_in_a_second_with_429():
    async def scenario(sim):
        for _ in range(3):
            await connect(sim, "okx", "/ws/v5/public")
        assert await refused(sim, "okx", "/ws/v5/public") == 429
        assert (await stats(sim, "okx"))["rejected"] == {"connection_rate": 1}
    simulate(scenario, venues=("okx",))


def test_okx_lists_instruments_by_inst_type_and_refuses_a_request_without_one():
    async def scenario(sim):
        status, _, body = await get(sim, "okx", "/api/v5/public/instruments?instType=SWAP")
        swaps = VENUES["okx"].parse_instruments("okx", json.loads(body))
        assert status == 200 and [(i.symbol, str(i.contract_size), i.contract_ccy) for i in swaps] == [
            ("ETH-USDT-PERP", "0.1", "ETH"), ("BTC-USDT-PERP", "0.01", "BTC")]
        assert json.loads((await get(sim, "okx", "/api/v5/public/instruments?instType=SPOT"))[2])["data"] == []
        status, _, body = await get(sim, "okx", "/api/v5/public/instruments")
        assert (status, json.loads(body)["code"]) == (400, "50014")
        status, _, body = await get(sim, "okx", "/api/v5/public/instruments?instType=PERP")
        assert (status, json.loads(body)["code"]) == (400, "51000")
        assert (await get(sim, "okx", "/api/v5/market/books?instId=ETH-USDT-SWAP"))[0] == 404
        assert (await stats(sim, "okx"))["rejected"] == {"rest_param": 2, "rest_path": 1}
    simulate(scenario, venues=("okx",))


def test_okx_instruments_over_the_rate_get_429_with_50011():
    async def scenario(sim):
        answers = [await get(sim, "okx", "/api/v5/public/instruments?instType=SWAP") for _ in range(3)]
        assert [status for status, _, _ in answers] == [200, 200, 429]
        assert json.loads(answers[2][2])["code"] == "50011"
        assert (await get(sim, "okx", "/api/v5/public/instruments?instType=SPOT"))[0] == 200  # per instType
    simulate(scenario, venues=("okx",), okx=OkxLimits(instruments_per_2s=2))


# ---------------------------------------------------------------- fh sim --limit

def test_fh_sim_limit_sets_a_venue_limit_by_name():
    assert parse_limits(["binance.lifetime_s=1.5", "coinbase.messages_per_s=3"]) == {
        "binance": BinanceLimits(lifetime_s=1.5), "coinbase": CoinbaseLimits(messages_per_s=3)}
    for wrong in ("binance.lifetime=1", "kraken.lifetime_s=1", "coinbase.messages_per_s=2.5", "binance.ban_s"):
        with pytest.raises(ValueError):
            parse_limits([wrong])


def test_fh_sim_help_names_every_limit_with_its_documented_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sim", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for venue, limits in LIMITS.items():
        for limit in dataclasses.fields(limits):
            assert f"{venue}.{limit.name} ({limit.default:g})" in text


def test_fh_sim_names_the_venues_it_simulates_when_asked_for_another():
    result = subprocess.run(FH + ["sim", "--venues", "okx,bitmex", "--duration", "1"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"no simulator for bitmex; known: {', '.join(PORT_ORDER)}" in result.stderr


def test_fh_sim_runs_with_the_limits_given_on_its_command_line():
    base = free_base_port()
    argv = FH + ["sim", "--venues", "binance", "--port", str(base), "--duration", "20",
                 "--limit", "binance.lifetime_s=0.5"]
    with subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as sim:
        try:
            urls = json.loads(sim.stdout.readline())
            assert urls["binance"]["ws_url"] == f"ws://127.0.0.1:{base}"
            url = f"{urls['binance']['ws_url']}/stream?streams=btcusdt@trade"

            async def lifetime():
                deadline = time.monotonic() + 30
                while True:  # the URLs are printed as the simulator starts listening
                    try:
                        _, client = await ws_connect(Client, url)
                        break
                    except ConnectionRefusedError:
                        assert time.monotonic() < deadline, "fh sim is not listening"
                        await asyncio.sleep(0.05)
                await until(lambda: client.disconnected, "the lifetime close", timeout_s=5)
                return client
            assert asyncio.run(lifetime()).where(stream="!serverShutdown")
        finally:
            sim.terminate()


# ---------------------------------------------------------------- Bybit v5 public (derivatives-protocols.md §3)

LINEAR = "/v5/public/linear"


def topic_of(client: Client, topic: str) -> list:
    return [m for m in client.messages if isinstance(m, dict) and m.get("topic") == topic]


def test_bybit_answers_only_its_categorys_public_path():
    async def scenario(sim):
        assert await refused(sim, "bybit_linear", "/v5/public/spot") == 404
        assert await refused(sim, "bybit_linear", "/v5/private") == 404
        assert (await stats(sim, "bybit_linear"))["rejected"] == {"path": 2}
    simulate(scenario, venues=("bybit_linear",))


def test_bybit_linear_acks_a_subscribe_then_sends_the_snapshot_then_deltas_numbered_by_u_and_trades():
    async def scenario(sim):
        client = await connect(sim, "bybit_linear", LINEAR)
        client.send({"req_id": "7", "op": "subscribe", "args": ["orderbook.50.SOLUSDT", "publicTrade.SOLUSDT"]})
        await until(lambda: len(topic_of(client, "orderbook.50.SOLUSDT")) >= 10 and topic_of(
            client, "publicTrade.SOLUSDT"), "a snapshot, deltas and a trade")
        (ack,) = client.where(op="subscribe")
        assert ack == {"success": True, "ret_msg": "", "conn_id": ack["conn_id"], "req_id": "7", "op": "subscribe"}
        books = topic_of(client, "orderbook.50.SOLUSDT")
        assert [book["type"] for book in books[:3]] == ["snapshot", "delta", "delta"]
        assert all(book["data"]["u"] == previous["data"]["u"] + 1 for previous, book in zip(books, books[1:]))
        assert topic_of(client, "publicTrade.SOLUSDT")[0]["data"][0]["S"] in ("Buy", "Sell")
    simulate(scenario, venues=("bybit_linear",))


def test_bybit_connections_on_one_topic_share_its_numbering_and_a_new_subscriber_breaks_no_chain():
    async def scenario(sim):
        first, second = [await connect(sim, "bybit_linear", LINEAR) for _ in range(2)]
        first.send({"op": "subscribe", "args": ["orderbook.50.SOLUSDT"]})
        await until(lambda: len(topic_of(first, "orderbook.50.SOLUSDT")) >= 5, "five pushes on the first")
        second.send({"op": "subscribe", "args": ["orderbook.50.SOLUSDT"]})
        await until(lambda: all(len(topic_of(c, "orderbook.50.SOLUSDT")) >= 20 for c in (first, second)),
                    "twenty pushes on each")
        for client in (first, second):
            numbers = [book["data"]["u"] for book in topic_of(client, "orderbook.50.SOLUSDT")]
            assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    simulate(scenario, venues=("bybit_linear",))


def test_bybit_reset_fault_sends_every_listener_the_whole_book_with_u_1_and_numbers_on_from_it():
    async def scenario(sim):
        client = await connect(sim, "bybit_linear", LINEAR)
        client.send({"op": "subscribe", "args": ["orderbook.50.SOLUSDT"]})
        await until(lambda: len(topic_of(client, "orderbook.50.SOLUSDT")) >= 5, "five pushes")
        sim.venues["bybit_linear"].inject("reset", "SOLUSDT")
        await until(lambda: [b["data"]["u"] for b in topic_of(client, "orderbook.50.SOLUSDT")].count(3) == 2,
                    "deltas after the reset")  # the first snapshot was u 1 as well
        books = topic_of(client, "orderbook.50.SOLUSDT")
        restart = [k for k, book in enumerate(books) if book["data"]["u"] == 1][1]
        assert books[restart]["type"] == "snapshot" and len(books[restart]["data"]["b"]) == 50
        assert [book["data"]["u"] for book in books[restart:restart + 3]] == [1, 2, 3]
        assert (await stats(sim, "bybit_linear"))["served"] == {"reset": 1}
    simulate(scenario, venues=("bybit_linear",))


def test_bybit_serves_tickers_snapshot_then_changed_fields_liquidations_and_the_level_1_book():
    async def scenario(sim):
        client = await connect(sim, "bybit_linear", LINEAR)
        client.send({"op": "subscribe", "args": ["tickers.SOLUSDT", "allLiquidation.SOLUSDT", "orderbook.1.SOLUSDT"]})
        await until(lambda: len(topic_of(client, "tickers.SOLUSDT")) >= 3 and topic_of(
            client, "allLiquidation.SOLUSDT") and len(topic_of(client, "orderbook.1.SOLUSDT")) >= 3,
                    "tickers, a liquidation, level-1 books", timeout_s=10)
        tickers = topic_of(client, "tickers.SOLUSDT")
        assert tickers[0]["type"] == "snapshot" and {"fundingRate", "nextFundingTime", "markPrice", "indexPrice",
                                                     "openInterest"} <= set(tickers[0]["data"])
        assert all(t["type"] == "delta" and set(t["data"]) - {"symbol"} for t in tickers[1:])
        assert all(t["cs"] > previous["cs"] for previous, t in zip(tickers, tickers[1:]))
        (liquidation,) = topic_of(client, "allLiquidation.SOLUSDT")[0]["data"]
        assert liquidation["S"] in ("Buy", "Sell") and set(liquidation) == {"T", "s", "S", "v", "p"}
        level_1 = topic_of(client, "orderbook.1.SOLUSDT")
        assert all(b["type"] == "snapshot" and len(b["data"]["b"]) == len(b["data"]["a"]) == 1 for b in level_1)
    simulate(scenario, venues=("bybit_linear",))


def test_bybit_spot_acks_in_its_shape_and_refuses_more_than_ten_args_a_request():
    async def scenario(sim):
        client = await connect(sim, "bybit", "/v5/public/spot")
        client.send({"req_id": "1", "op": "subscribe", "args": [f"orderbook.{d}.ETHUSDT" for d in (1, 50, 200)]})
        client.send({"req_id": "2", "op": "subscribe", "args": [f"publicTrade.ETHUSDT{k}" for k in range(11)]})
        await until(lambda: len(client.where(op="subscribe")) == 2, "two answers")
        ok, refusal = client.where(op="subscribe")
        assert (ok["success"], ok["ret_msg"], ok["req_id"]) == (True, "subscribe", "1")
        assert (refusal["success"], refusal["ret_msg"], refusal["req_id"]) == (False, "error:args size >10", "2")
        assert (await stats(sim, "bybit"))["rejected"] == {"args_per_request": 1}
    simulate(scenario, venues=("bybit",))


@pytest.mark.parametrize("request_", [
    "not json",
    {"op": "sub", "args": ["publicTrade.SOLUSDT"]},
    {"op": "subscribe", "args": "publicTrade.SOLUSDT"},
    {"op": "subscribe", "args": []},
    {"op": "subscribe", "args": [["publicTrade.SOLUSDT"]]},
    {"op": "subscribe", "args": ["publicTrade.SOLUSDT"], "id": "1"},
    {"op": "subscribe", "args": ["publicTrade.SOLUSDT"], "req_id": 1},
    {"op": "ping", "args": ["x"]},
    {"method": "SUBSCRIBE", "params": ["publicTrade.SOLUSDT"]},
])
def test_bybit_answers_a_malformed_request_with_one_failure_and_subscribes_nothing(request_):
    async def scenario(sim):
        client = await connect(sim, "bybit_linear", LINEAR)
        client.send(request_.encode() if isinstance(request_, str) else request_)
        (answer,) = await until(lambda: client.where(success=False), "the failure")
        assert answer["ret_msg"].startswith("error:") and answer["conn_id"]
        assert (await stats(sim, "bybit_linear"))["rejected"] == {"bad_request": 1}
        await asyncio.sleep(0.3)
        assert not [m for m in client.messages if "topic" in m]
    simulate(scenario, venues=("bybit_linear",))


@pytest.mark.parametrize("topic", ["orderbook.25.SOLUSDT", "orderbook.50.BTCUSDT", "kline.1.SOLUSDT",
                                   "publicTrade", "tickers.SOLUSDT.x"])
def test_bybit_refuses_a_request_naming_a_topic_it_does_not_serve_and_subscribes_none_of_it(topic):
    async def scenario(sim):
        client = await connect(sim, "bybit_linear", LINEAR)
        client.send({"op": "subscribe", "args": ["publicTrade.SOLUSDT", topic]})
        (answer,) = await until(lambda: client.where(op="subscribe"), "the answer")
        assert answer["success"] is False and topic in answer["ret_msg"]
        assert (await stats(sim, "bybit_linear"))["rejected"] == {"unknown_topic": 1}
    simulate(scenario, venues=("bybit_linear",))


def test_bybit_spot_serves_no_tickers_or_liquidations():
    async def scenario(sim):
        client = await connect(sim, "bybit", "/v5/public/spot")
        for topic in ("tickers.ETHUSDT", "allLiquidation.ETHUSDT"):
            client.send({"op": "subscribe", "args": [topic]})
        await until(lambda: len(client.where(success=False)) == 2, "two refusals")
    simulate(scenario, venues=("bybit",))


def test_bybit_refuses_a_topic_already_subscribed_and_args_of_21000_characters_or_more():
    async def scenario(sim):
        client = await connect(sim, "bybit_linear", LINEAR)
        client.send({"op": "subscribe", "args": ["publicTrade.SOLUSDT"]})
        client.send({"op": "subscribe", "args": ["publicTrade.SOLUSDT"]})
        client.send({"op": "unsubscribe", "args": ["orderbook.50.SOLUSDT"] * 1000})
        await until(lambda: len(client.where(op="subscribe")) == 2 and client.where(op="unsubscribe"), "3 answers")
        assert [a["success"] for a in client.where(op="subscribe")] == [True, False]
        assert client.where(op="unsubscribe")[0]["success"] is False
        assert (await stats(sim, "bybit_linear"))["rejected"] == {"already_subscribed": 1, "args_chars": 1}
    simulate(scenario, venues=("bybit_linear",))


@pytest.mark.parametrize("venue, path, pong", [
    ("bybit_linear", LINEAR, {"success": True, "ret_msg": "pong", "req_id": "100001", "op": "ping"}),
    ("bybit", "/v5/public/spot", {"success": True, "ret_msg": "pong", "op": "ping"}),
])
def test_bybit_answers_the_ping_with_its_categorys_pong(venue, path, pong):
    async def scenario(sim):
        client = await connect(sim, venue, path)
        client.send({"req_id": "100001", "op": "ping"})
        (answer,) = await until(lambda: client.where(op="ping"), "the pong")
        assert {k: v for k, v in answer.items() if k != "conn_id"} == pong and answer["conn_id"]
    simulate(scenario, venues=(venue,))


def test_bybit_closes_a_connection_that_does_not_ping_and_keeps_one_that_does():
    async def scenario(sim):
        pinging, silent = [await connect(sim, "bybit_linear", LINEAR) for _ in range(2)]
        for client in (pinging, silent):
            client.send({"op": "subscribe", "args": ["orderbook.50.SOLUSDT"]})
        deadline = time.monotonic() + 1.5
        while not silent.disconnected and time.monotonic() < deadline:
            pinging.send({"op": "ping"})
            await asyncio.sleep(0.2)
        assert silent.disconnected and not pinging.disconnected
        assert (await stats(sim, "bybit_linear"))["closed"] == {"ping_timeout": 1}
    simulate(scenario, venues=("bybit_linear",), bybit_linear=BybitLimits(ping_timeout_s=0.6))


def test_bybit_refuses_new_connections_over_the_per_ip_window_with_429():
    async def scenario(sim):
        for _ in range(2):
            await connect(sim, "bybit_linear", LINEAR)
        assert await refused(sim, "bybit_linear", LINEAR) == 429
        assert (await stats(sim, "bybit_linear"))["rejected"] == {"connection_rate": 1}
    simulate(scenario, venues=("bybit_linear",), bybit_linear=BybitLimits(connections_per_window=2))


def paged_simulator(page_max: int = 1000) -> Simulator:
    """bybit_linear listing three perpetuals (of which the market steps none: the REST side only)."""
    instruments = [Instrument("bybit_linear", f"{base}USDT", base, "USDT", 2, 1, PERPETUAL, settle="USDT")
                   for base in ("SOL", "BTC", "ETH")]
    rng = np.random.default_rng(1)
    references = {i.symbol: Reference(REFERENCE_MIDS[i.base], rng) for i in instruments}
    venue = BybitLinearSim(instruments, references, 1, 0.0, limits=BybitLimits(instruments_page_max=page_max))
    return Simulator({"bybit_linear": venue}, base_port=free_base_port())


def test_bybit_instruments_info_pages_by_cursor_and_refuses_what_it_does_not_document():
    async def main():
        async with paged_simulator() as sim:
            target = "/v5/market/instruments-info?category=linear&limit=2"
            first = json.loads((await get(sim, "bybit_linear", target))[2])["result"]
            assert [e["symbol"] for e in first["list"]] == ["SOLUSDT", "BTCUSDT"] and first["nextPageCursor"]
            cursor = urllib.parse.quote(first["nextPageCursor"])
            last = json.loads((await get(sim, "bybit_linear", f"{target}&cursor={cursor}"))[2])["result"]
            assert [e["symbol"] for e in last["list"]] == ["ETHUSDT"] and last["nextPageCursor"] == ""
            parsed = VENUES["bybit_linear"].parse_instruments("bybit_linear", {"result": first})
            assert parsed[0].symbol == "SOL-USDT-PERP"
            for bad in ("category=futures", "", "category=linear&limit=0", "category=linear&limit=1001",
                        "category=linear&cursor=abc", "category=linear&instType=SWAP"):
                status, _, body = await get(sim, "bybit_linear", f"/v5/market/instruments-info?{bad}")
                assert (status, json.loads(body)["retCode"]) == (200, 10001), bad
            assert (await get(sim, "bybit_linear", "/v5/market/orderbook?category=linear"))[0] == 404
            assert (await stats(sim, "bybit_linear"))["rejected"] == {"rest_param": 6, "rest_path": 1}
    asyncio.run(main())
