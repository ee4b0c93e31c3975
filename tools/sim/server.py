"""`fh sim`: Binance (spot, USD-M and COIN-M futures), Coinbase Advanced Trade, Kraken v2, OKX v5 and
Bybit v5 public (linear by default; spot and inverse on request) served on loopback, so the real
venue workers run against it unmodified (only base URLs change).

Each venue gets a WebSocket port (picows) and a REST port (plain HTTP/1.1), with the live paths and
message shapes. Markets are synthetic (`Market` per venue and symbol, all following one reference
mid per BASE-QUOTE with a small drifting offset per venue, so the NBBO changes venue, and none adding
an order through another venue's touch, so the NBBO never crosses unless `allow_crosses`), or a capture
replayed frame by frame. Faults are injected per venue, on a schedule or on demand through
`GET <rest>/_sim/fault?kind=...` (see `FAULTS`); `/_sim/stats` counts those injected and, for the
faults that wait for an occasion (a diff to drop, a REST request to refuse), those served.

The synthetic venues are strict: they answer only the documented URL paths and message shapes
(docs/exchange-protocols.md §1, §2.1, §3; docs/derivatives-protocols.md §1, §2, §3, §4.1), refuse anything
else with the venue's error or close code, and enforce the documented limits (`BinanceLimits`,
`BinanceFuturesLimits`, `CoinbaseLimits`, `OkxLimits`, `BybitLimits`: constructor arguments, set from
`fh sim --limit`).
Every refusal is counted by reason, and every connection the server closes by the rule that closed it
(`GET <rest>/_sim/stats`). The three Binance deployments are one server with their differences as data
(`BINANCE_APIS`: routes, stream names, REST paths, weights, metadata); the futures ones chain each
depthUpdate to the last by `pu`. Binance numbers its book updates, so its simulator keeps the top of
each book for its last update ids (`GET <rest>/_sim/book?symbol=S&update_id=N`): what a client's valid
book must equal. Only those rules close connections: a quiet symbol never does, except on OKX, which
documents closing a connection that had nothing pushed for 30 s (its clients ping).

Perpetuals (`DEFAULT_INSTRUMENTS`): BTC-USDT-PERP on Binance USD-M (sizes in BTC) and OKX (in
contracts of 0.01 BTC), whose NBBO adds them in BTC; one on each other venue. Bybit numbers its book updates too (`u`, per
topic); its `reset` fault sends the `u == 1` snapshot of a service restart.

Per-IP limits count all of a venue's clients together: the simulator serves loopback, where every
client has the same address (and picows' listener factory, which refuses connections at the
handshake, is not told the peer's address).
"""
from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from decimal import Decimal
from http import HTTPStatus
from urllib.parse import parse_qs, urlparse

import numpy as np
from picows import (WSCloseCode, WSListener, WSMsgType, WSTransport, WSUpgradeResponse, WSUpgradeResponseWithListener,
                    ws_create_server)

from feedhandler.capture import CaptureReader, FrameKind, split_rest
from feedhandler.instruments import FUTURE, PERPETUAL, SPOT, Instrument
from feedhandler.sim_market import ASK, BID, Market
from feedhandler.venues import VENUES
from feedhandler.venues.binance.protocol import SNAPSHOT_WEIGHTS
from feedhandler.venues.binance_usdm.protocol import OPEN_INTEREST_WEIGHT
from feedhandler.venues.binance_usdm.protocol import SNAPSHOT_WEIGHTS as FUTURES_SNAPSHOT_WEIGHTS
from feedhandler.venues.coinbase import CoinbaseAdvancedEncoder
from feedhandler.venues.base import compact_json
from feedhandler.venues.bybit import BybitEncoder
from feedhandler.venues.bybit.protocol import TOPIC_DEPTHS as BYBIT_TOPIC_DEPTHS  # §3.4: spot, linear, inverse
from feedhandler.venues.bybit.simulator import BybitStatsEncoder
from feedhandler.venues.encoding import rfc3339, wire
from feedhandler.venues.kraken import KrakenV2Encoder
from feedhandler.venues.okx import OkxEncoder
from feedhandler.venues.okx.protocol import SUBSCRIBE_MAX_BYTES, index_of

FAULTS = {  # kind: what it does (arguments from the query string)
    "drop": "the next book diff of `symbol` (default: every symbol) is not sent: a sequence gap",
    "duplicate": "the next book diff of `symbol` is sent twice",
    "disconnect": "every connection is cut (TCP reset, no close frame)",
    "close": "server-initiated close (Binance sends serverShutdown first)",
    "bad_checksum": "Kraken, OKX: the next book update of `symbol` carries a wrong checksum",
    "reset": "Bybit: the next book message of `symbol` is a whole book with u 1 (a service restart)",
    "malformed": "a truncated JSON frame is sent to every connection",
    "stall": "no data and no heartbeats for `seconds`",
    "burst": "the market runs at `rate` steps/s per symbol for `seconds`",
    "slow_rest": "the next `count` REST responses wait `seconds`",
    "rest_429": "the next `count` REST requests get 429 Too Many Requests (Retry-After: 1)",
}
BOOK_HISTORY, BOOK_HISTORY_DEPTH = 4096, 10  # Binance: the top levels of each book at its last update ids
MALFORMED = b'{"stream":"x@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"X","U":'


REFERENCE_MIDS = {"BTC": 100_000, "ETH": 3_500, "SOL": 180}  # quote units, any quote
DEFAULT_INSTRUMENTS = {  # venue symbols as each venue spells them (Kraken: v2 names)
    "binance": [Instrument("binance", "BTCUSDT", "BTC", "USDT", 2, 5),
                Instrument("binance", "ETHUSDT", "ETH", "USDT", 2, 4)],
    "coinbase": [Instrument("coinbase", "BTC-USD", "BTC", "USD", 2, 8),
                 Instrument("coinbase", "ETH-USD", "ETH", "USD", 2, 8),
                 Instrument("coinbase", "BTC-USDT", "BTC", "USDT", 2, 8)],
    "kraken": [Instrument("kraken", "BTC/USD", "BTC", "USD", 1, 8), Instrument("kraken", "ETH/USD", "ETH", "USD", 2, 8),
               Instrument("kraken", "BTC/USDT", "BTC", "USDT", 1, 8)],
    # perpetuals: BTC-USDT-PERP on USD-M (BTC) and OKX (contracts of 0.01 BTC): the NBBO adds them in BTC
    "binance_usdm": [Instrument("binance_usdm", "BTCUSDT", "BTC", "USDT", 1, 3, PERPETUAL, settle="USDT")],
    "binance_coinm": [Instrument("binance_coinm", "BTCUSD_PERP", "BTC", "USD", 1, 0, PERPETUAL,
                                 contract_size=Decimal(100), contract_ccy="USD", settle="BTC")],
    "okx": [Instrument("okx", "ETH-USDT-SWAP", "ETH", "USDT", 2, 2, PERPETUAL, contract_size=Decimal("0.1"),
                       contract_ccy="ETH", settle="USDT"),
            Instrument("okx", "BTC-USDT-SWAP", "BTC", "USDT", 1, 2, PERPETUAL, contract_size=Decimal("0.01"),
                       contract_ccy="BTC", settle="USDT")],
    "bybit_linear": [Instrument("bybit_linear", "SOLUSDT", "SOL", "USDT", 2, 1, PERPETUAL, contract_ccy="SOL",
                                settle="USDT")],
    # served on request only (not in DEFAULT_VENUES): ETH-USDT spot adds base units, as spot venues do;
    # an inverse perpetual's sizes are USD
    "bybit": [Instrument("bybit", "ETHUSDT", "ETH", "USDT", 2, 4)],
    "bybit_inverse": [Instrument("bybit_inverse", "ETHUSD", "ETH", "USD", 2, 0, PERPETUAL, contract_ccy="USD",
                                 settle="ETH")],
}


_BINANCE, _FUTURES, _COINBASE, _OKX, _BYBIT = (VENUES[v].limits for v in ("binance", "binance_usdm", "coinbase", "okx",
                                                                           "bybit"))


@dataclass(frozen=True)
class BinanceLimits:
    """Binance spot's documented limits (exchange-protocols.md §1.1, §1.2, §1.5; derivatives-protocols.md
    §4.1), the same data the workers obey (`feedhandler.venues.binance.protocol.LIMITS`). Durations are in
    seconds so that tests can shrink them."""

    lifetime_s: float = _BINANCE.lifetime_s  # a connection lives 24 h; serverShutdown comes before the close
    ping_every_s: float = _BINANCE.server_ping_s  # the server sends a ping frame this often
    pong_timeout_s: float = _BINANCE.pong_deadline_s  # no pong echoing a ping for this long: disconnected
    messages_per_s: int = _BINANCE.messages.count  # incoming text, ping and pong frames per connection and second
    streams_per_connection: int = _BINANCE.streams_per_connection
    connections_per_window: int = _BINANCE.connections.count  # new connections per IP in the window; more: 429
    connections_window_s: float = _BINANCE.connections.per_s
    weight_per_window: int = _BINANCE.rest_weight_per_minute  # REST request weight per IP and minute; more: 429
    weight_window_s: float = 60.0
    ban_s: float = 120.0  # HTTP 418 for asking again during a 429's Retry-After (the shortest documented ban)


@dataclass(frozen=True)
class BinanceFuturesLimits(BinanceLimits):
    """Binance USD-M and COIN-M futures' documented limits (derivatives-protocols.md §1.2, §1.6), the same
    data their workers obey (`feedhandler.venues.binance_usdm.protocol.LIMITS`); the rest as on spot."""

    ping_every_s: float = _FUTURES.server_ping_s
    pong_timeout_s: float = _FUTURES.pong_deadline_s
    messages_per_s: int = _FUTURES.messages.count
    streams_per_connection: int = _FUTURES.streams_per_connection
    weight_per_window: int = _FUTURES.rest_weight_per_minute


@dataclass(frozen=True)
class CoinbaseLimits:
    """Coinbase Advanced Trade's documented limits (exchange-protocols.md §2.1)."""

    subscribe_deadline_s: float = _COINBASE.subscribe_deadline_s  # no subscribe this long after connecting: closed
    messages_per_s: int = _COINBASE.messages.count  # client messages per IP; more: an error, then closed with 1008
    connections_per_s: int = _COINBASE.connections.count  # new connections per IP; more: HTTP 429 at the handshake
    level2_per_connection: int = _COINBASE.streams_per_connection  # observed: "too many L2 streams requested ..."


@dataclass(frozen=True)
class OkxLimits:
    """OKX v5 public's documented limits (derivatives-protocols.md §2.2, §2.9)."""

    connections_per_s: int = _OKX.connections.count  # connection attempts per IP and second; more: HTTP 429
    requests_per_hour: int = _OKX.messages.count  # subscribe/unsubscribe requests per connection and hour
    idle_s: float = 30.0  # nothing subscribed, or nothing pushed, for this long: the server closes
    instruments_per_2s: int = 20  # GET /api/v5/public/instruments per IP and instType in 2 s




def parse_limits(texts: list[str]) -> dict[str, AnyLimits]:
    """`venue.name=value` settings (e.g. `binance.lifetime_s=2`) over the documented limits, as the
    limits of each venue that has a setting."""
    changes: dict[str, dict[str, float]] = {}
    for text in texts:
        key, _, value = text.partition("=")
        venue, _, name = key.partition(".")
        defaults = LIMITS[venue]() if venue in LIMITS else None
        if not hasattr(defaults, name) or not value:
            known = ", ".join(f"{v}.{f.name}" for v, kind in LIMITS.items() for f in fields(kind))
            raise ValueError(f"limit {text!r}: expected venue.name=value, the name one of {known}")
        try:
            changes.setdefault(venue, {})[name] = type(getattr(defaults, name))(value)
        except ValueError:
            raise ValueError(f"limit {text!r}: {value!r} is not a {type(getattr(defaults, name)).__name__}") from None
    return {venue: LIMITS[venue](**values) for venue, values in changes.items()}


class Window:
    """A sliding-window rate limit: at most `limit` events in any `seconds`."""

    def __init__(self, limit: int, seconds: float):
        self.limit, self.seconds = limit, seconds
        self.times: deque[float] = deque()

    def admit(self, now: float) -> bool:
        """Records an event at `now`; False when it is one too many."""
        while self.times and self.times[0] <= now - self.seconds:
            self.times.popleft()
        self.times.append(now)
        return len(self.times) <= self.limit


@dataclass
class Tally:
    """What a venue's rules did, for /_sim/stats: requests refused (by reason), connections opened, and
    connections the server closed (by rule)."""

    rejected: Counter = field(default_factory=Counter)
    opened: int = 0
    closed: Counter = field(default_factory=Counter)

    def stats(self) -> dict:
        return {"rejected": dict(self.rejected), "opened": self.opened, "closed": dict(self.closed)}


class Refusal(Exception):
    """A client request the venue answers with an error: `reason` is what the tally counts, `message` the
    venue's error text, `code` its error code where it has one, `status` the HTTP status (REST)."""

    def __init__(self, reason: str, message: str, code: int = 0, status: int = 400):
        super().__init__(message)
        self.reason, self.message, self.code, self.status = reason, message, code, status


@dataclass
class Faults:
    """Pending faults of one venue; the market loop and the servers consume them."""

    drop: dict[str, int] = field(default_factory=dict)  # symbol or "*" -> diffs to drop
    duplicate: dict[str, int] = field(default_factory=dict)
    bad_checksum: dict[str, int] = field(default_factory=dict)
    reset: dict[str, int] = field(default_factory=dict)
    stall_until: float = 0.0
    burst_rate: float = 0.0
    burst_until: float = 0.0
    slow_rest_s: float = 0.0
    slow_rest_count: int = 0
    rest_429: int = 0
    injected: dict[str, int] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)  # faults that took effect, by kind: a test's evidence

    def take(self, kind: str, symbol: str) -> bool:
        """Whether a pending `kind` fault (drop, duplicate, bad_checksum, reset) of `symbol` or "*" applies now."""
        pending = getattr(self, kind)
        for key in (symbol, "*"):
            if pending.get(key, 0) > 0:
                pending[key] -= 1
                self.count_served(kind)
                return True
        return False

    def count_served(self, kind: str) -> None:
        self.served[kind] = self.served.get(kind, 0) + 1


class StepFault:
    """Whether one step's book diff is dropped or duplicated, taken from the pending faults only
    when the step has a diff (a step that changed nothing must not use up a fault)."""

    def __init__(self, faults: Faults, symbol: str):
        self._faults, self._symbol = faults, symbol
        self._decided: tuple[bool, int] | None = None

    def decide(self) -> tuple[bool, int]:
        """(drop, times to send); the same answer for every session of the step."""
        if self._decided is None:
            self._decided = (self._faults.take("drop", self._symbol),
                             2 if self._faults.take("duplicate", self._symbol) else 1)
        return self._decided


class Reference:
    """The shared mid of one BASE-QUOTE (in 1e-8 quote units), each venue's offset from it and each
    venue's touch. Unless crosses are allowed, no venue adds an order through another venue's touch
    (arbitrage would take it at once, as it does between live venues), so the venues' quotes never
    lock or cross each other and neither does the NBBO made of them."""

    def __init__(self, mid: float, rng: np.random.Generator, allow_crosses: bool = False):
        self.rng = rng
        self.mid = int(mid * 1e8)
        self.offsets: dict[str, int] = {}
        self.allow_crosses = allow_crosses
        self.touches: dict[str, tuple[int, int]] = {}  # venue: (best bid, best ask) in 1e-8 quote units

    def advance(self) -> None:
        self.mid += int(self.rng.normal(0, self.mid * 3e-6))
        for venue in self.offsets:  # bounded drift of each venue's offset: leadership changes venue
            self.offsets[venue] = int(np.clip(self.offsets[venue] + self.rng.normal(0, self.mid * 1e-6),
                                              -self.mid * 3e-6, self.mid * 3e-6))

    def target(self, venue: str, px_dec: int) -> int:
        return (self.mid + self.offsets.setdefault(venue, 0)) // 10 ** (8 - px_dec)

    def bounds(self, venue: str, px_dec: int) -> tuple[int, int] | None:
        """The highest bid and the lowest ask (in the venue's ticks) that lock or cross no other venue's
        touch; None when crosses are allowed or no other venue quotes."""
        others = [touch for name, touch in self.touches.items() if name != venue]
        if self.allow_crosses or not others:
            return None
        tick = 10 ** (8 - px_dec)
        lowest_ask, highest_bid = min(ask for _, ask in others), max(bid for bid, _ in others)
        return -(-lowest_ask // tick) - 1, highest_bid // tick + 1

    def quote(self, venue: str, px_dec: int, market: Market) -> None:
        """Take note of the venue's touch after its market changed."""
        tick = 10 ** (8 - px_dec)
        self.touches[venue] = (market.best(BID) * tick, market.best(ASK) * tick)


class Session(WSListener):
    """One client connection: what it subscribed to, its per-connection protocol state and its timers."""

    def __init__(self, venue: VenueSim, path: str):
        self.venue = venue
        self.path = path
        self.transport: WSTransport | None = None
        self.books: dict[str, object] = {}  # venue symbol -> encoder
        self.trades: set[str] = set()
        self.channels: dict[str, set[str]] = {}  # Coinbase: the other channels subscribed, with their products
        self.subscribed = False  # Coinbase: a subscribe was accepted (before the deadline, or closed)
        self.sequence = itertools.count()  # Coinbase: one sequence_num per connection
        self.opened = time.monotonic()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.venue.sessions.add(self)
        self.venue.tally.opened += 1
        self.venue.on_connect(self)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self.venue.sessions.discard(self)

    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            if not transport.is_close_frame_sent:
                transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif transport.is_close_frame_sent or not self.venue.admit(self, kind):
            return  # closing: whatever else the client sends is not answered
        elif kind == WSMsgType.PING:  # auto-pong is off so that pings count against rate limits
            transport.send_pong(frame.get_payload_as_bytes())
        elif kind == WSMsgType.PONG:
            self.venue.on_pong(self, frame.get_payload_as_bytes())
        elif kind in (WSMsgType.TEXT, WSMsgType.BINARY):
            self.venue.on_message(self, frame.get_payload_as_bytes())

    def send(self, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send(WSMsgType.TEXT, payload)

    def after(self, name: str, seconds: float, callback) -> None:
        """Calls `callback(self)` in `seconds`, instead of the pending timer of the same name."""
        if name in self._timers:
            self._timers[name].cancel()
        self._timers[name] = asyncio.get_running_loop().call_later(seconds, callback, self)

    def close(self, rule: str, code: WSCloseCode, reason: str) -> None:
        """Server-initiated close by one of the venue's documented rules, counted by rule."""
        if self.transport is None or self.transport.is_close_frame_sent:
            return
        for timer in self._timers.values():  # nothing is sent after the close frame
            timer.cancel()
        self.venue.tally.closed[rule] += 1
        self.transport.send_close(code, reason.encode())
        self.transport.disconnect()


class VenueSim:
    """One venue: its markets, its sessions, its faults, its rules. Subclasses speak the venue's protocol."""

    name = ""
    ws_path = "/"  # the one WebSocket path the venue answers
    connections: Window | None = None  # new connections per IP, where the venue limits them

    def __init__(self, instruments: list[Instrument], references: dict[str, Reference], seed: int,
                 rate: float, depth: int = 200):
        self.instruments = {inst.venue_symbol: inst for inst in instruments}
        self.references = references
        self.rate = rate  # market steps per second per symbol
        self.faults = Faults()
        self.tally = Tally()
        self.sessions: set[Session] = set()
        self.markets = {}
        for k, (symbol, inst) in enumerate(self.instruments.items()):
            mid = references[inst.symbol].target(self.name, inst.px_dec)
            self.markets[symbol] = Market(mid, seed=seed * 1000 + k, max_levels=depth,
                                          mean_lots=max(1, 10 ** inst.qty_dec // 2))
            references[inst.symbol].quote(self.name, inst.px_dec, self.markets[symbol])
        self.rng = np.random.default_rng(seed)  # the venue's draws besides its markets' (funding, liquidations)
        self.steps = 0
        self.frames_sent = 0

    # ------------------------------------------------------------ market
    def current_rate(self, now: float) -> float:
        return self.faults.burst_rate if now < self.faults.burst_until else self.rate

    def step(self, symbol: str, ts_ns: int) -> None:
        inst = self.instruments[symbol]
        market, reference = self.markets[symbol], self.references[inst.symbol]
        step = market.step(reference.target(self.name, inst.px_dec), reference.bounds(self.name, inst.px_dec))
        reference.quote(self.name, inst.px_dec, market)
        self.steps += 1
        self.publish(symbol, market, step, ts_ns, StepFault(self.faults, symbol))

    def publish(self, symbol: str, market: Market, step, ts_ns: int, fault: StepFault) -> None:
        raise NotImplementedError

    def heartbeat(self, ts_ns: int) -> None:
        """Once a second, venues that send heartbeats do."""

    def send(self, session: Session, payload: bytes, repeat: int = 1) -> None:
        for _ in range(repeat):
            session.send(payload)
            self.frames_sent += 1

    # ------------------------------------------------------------ protocol
    def accept(self, path: str) -> Session | WSUpgradeResponseWithListener:
        """The WebSocket handshake (picows' listener factory): a session, or the HTTP refusal."""
        if self.connections is not None and not self.connections.admit(time.monotonic()):
            return self.refuse(HTTPStatus.TOO_MANY_REQUESTS, "connection_rate", "too many new connections")
        return self.open(path)

    def open(self, path: str) -> Session | WSUpgradeResponseWithListener:
        """A session on the venue's WebSocket path; any other path is not found."""
        if path != self.ws_path:
            return self.refuse(HTTPStatus.NOT_FOUND, "path", f"no WebSocket endpoint at {path}")
        return Session(self, path)

    def refuse(self, status: HTTPStatus, reason: str, detail: str) -> WSUpgradeResponseWithListener:
        """An HTTP error instead of the 101 upgrade, counted."""
        self.tally.rejected[reason] += 1
        body = f"{status.value} {status.phrase}: {detail}".encode()
        return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(status, body), None)

    def admit(self, session: Session, kind: WSMsgType) -> bool:
        """Whether an incoming frame is within the venue's message-rate limit; the session is closed when not."""
        return True

    def over_rate(self, session: Session, notice: bytes | None = None) -> bool:
        """Refuses the frame that broke the message-rate limit: counted, `notice` sent, the session closed."""
        self.tally.rejected["message_rate"] += 1
        if notice is not None:
            session.send(notice)
        session.close("message_rate", WSCloseCode.POLICY_VIOLATION, "too many messages")
        return False

    def on_connect(self, session: Session) -> None:
        pass

    def on_pong(self, session: Session, payload: bytes) -> None:
        pass

    def on_message(self, session: Session, payload: bytes) -> None:
        pass

    def rest(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        self.tally.rejected["rest_path"] += 1
        return 404, {}, b'{"error":"not found"}'

    def metadata(self) -> bytes:
        raise NotImplementedError

    def book(self, symbol: str, update_id: int) -> dict | None:
        """The top of a book at an update id, for venues that number their book updates; else None."""
        return None

    # ------------------------------------------------------------ faults
    def inject(self, kind: str, symbol: str = "*", seconds: float = 2.0, rate: float = 0.0, count: int = 1) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
        faults, now = self.faults, time.monotonic()
        faults.injected[kind] = faults.injected.get(kind, 0) + 1
        if kind in ("drop", "duplicate", "bad_checksum", "reset"):
            pending = getattr(faults, kind)
            pending[symbol] = pending.get(symbol, 0) + count
        elif kind == "stall":
            faults.stall_until = now + seconds
        elif kind == "burst":
            faults.burst_rate, faults.burst_until = rate or 10 * self.rate, now + seconds
        elif kind == "slow_rest":
            faults.slow_rest_s, faults.slow_rest_count = seconds, count
        elif kind == "rest_429":
            faults.rest_429 += count
        elif kind == "malformed":
            for session in list(self.sessions):
                self.send(session, MALFORMED)
        elif kind == "disconnect":
            for session in list(self.sessions):
                session.transport.disconnect(graceful=False)
        elif kind == "close":
            self.close_all()

    def close_all(self) -> None:
        for session in list(self.sessions):
            session.transport.send_close()
            session.transport.disconnect()


# Binance stream names: a lowercase symbol and a documented kind (web-socket-streams.md; derivatives-protocols.md
# §1.3 for futures); the simulator serves those of its `feeds`, and accepts the others without sending them.
BINANCE_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
BINANCE_REQUEST_ID = re.compile(r"[A-Za-z0-9-]{0,36}")  # alphanumeric, at most 36 (a UUID's dashes allowed)
PERPETUAL_DELIVERY_MS = 4133404800000  # the deliveryDate exchangeInfo gives a USD-M perpetual (year 2100)


def _step(decimals: int) -> str:
    """A tick or lot of `decimals` as Binance prints it: '0.01', '1'."""
    return f"{10.0 ** -decimals:.{decimals}f}" if decimals else "1"


def spot_exchange_info(instruments: dict[str, Instrument]) -> dict:
    """GET /api/v3/exchangeInfo's symbols: assets and the precisions Binance prints."""
    return {"symbols": [{"symbol": s, "status": "TRADING", "baseAsset": i.base, "quoteAsset": i.quote,
                         "quoteAssetPrecision": i.px_dec, "baseAssetPrecision": i.qty_dec}
                        for s, i in instruments.items()]}


def futures_exchange_info(instruments: dict[str, Instrument]) -> dict:
    """GET /fapi/v1/exchangeInfo or /dapi/v1/exchangeInfo's symbols (§1.6): perpetual contracts with their
    PRICE_FILTER tick and LOT_SIZE step, margin asset, and COIN-M's contractSize (USD per contract)."""
    symbols = []
    for s, i in instruments.items():
        entry = {"symbol": s, "pair": f"{i.base}{i.quote}", "contractType": "PERPETUAL",
                 "deliveryDate": PERPETUAL_DELIVERY_MS, "onboardDate": 1569398400000, "baseAsset": i.base,
                 "quoteAsset": i.quote, "marginAsset": i.settle, "pricePrecision": i.px_dec,
                 "quantityPrecision": i.qty_dec,
                 "filters": [{"filterType": "PRICE_FILTER", "tickSize": _step(i.px_dec), "minPrice": _step(i.px_dec),
                              "maxPrice": "4529764"},
                             {"filterType": "LOT_SIZE", "stepSize": _step(i.qty_dec), "minQty": _step(i.qty_dec),
                              "maxQty": "1000"}]}
        if i.contract_ccy:  # COIN-M: quantities are contracts of contractSize USD; the status field is named apart
            entry.update(contractSize=int(i.contract_size), contractStatus="TRADING")
        else:
            entry["status"] = "TRADING"
        symbols.append(entry)
    return {"rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                            "limit": _FUTURES.rest_weight_per_minute}], "symbols": symbols}


@dataclass(frozen=True)
class BinanceApi:
    """One Binance deployment as the simulator serves it, as data (spot, USD-M and COIN-M differ only here):
    its WebSocket routes (a path prefix before /ws or /stream, and the stream kinds it carries), the stream
    names it knows, which of them it serves, the timeUnit values it takes, and its REST paths, weights,
    depth limits and exchangeInfo."""

    routes: tuple[tuple[str, re.Pattern], ...]  # (path prefix, kinds carried); a kind elsewhere is acked, never sent
    stream: re.Pattern  # symbol@kind, every documented kind
    feeds: dict[str, str]  # kind -> what it carries ("depth", "trade", "bbo", "mark", "mark@3s", "liquidation"): the kinds served
    time_units: tuple[str, ...]  # documented timeUnit values (the default is ms)
    depth_path: str
    depth_weights: tuple[tuple[int, int], ...]  # limit up to -> weight; a larger limit gets the largest
    depth_limits: tuple[int, ...]  # the only limits taken (empty: any positive integer)
    default_limit: int
    info_path: str
    info_weight: int
    exchange_info: Callable[[dict[str, Instrument]], dict]
    open_interest_path: str = ""  # futures: GET <path>?symbol=S ("": none)


ANY_KIND = re.compile(r".+")
FUTURES_STREAM = re.compile(r"([a-z0-9_]+)@(depth(?:@(?:100|500)ms)?|depth(?:5|10|20)(?:@(?:100|500)ms)?|bookTicker"
                            r"|aggTrade|markPrice(?:@1s)?|forceOrder)")
FUTURES_PUBLIC = re.compile(r"depth.*|bookTicker")  # USD-M's /public route; /market carries the others
FUTURES_FEEDS = {"depth": "depth", "depth@100ms": "depth", "depth@500ms": "depth", "aggTrade": "trade",
                 "bookTicker": "bbo", "markPrice@1s": "mark", "markPrice": "mark@3s", "forceOrder": "liquidation"}
LIQUIDATION_CHANCE = 0.3  # the chance, each second and symbol, of a forceOrder event
FUTURES_REST = dict(depth_weights=FUTURES_SNAPSHOT_WEIGHTS, depth_limits=_FUTURES.snapshot_limits, default_limit=500,
                    info_weight=_FUTURES.instruments_weight, exchange_info=futures_exchange_info)
BINANCE_APIS = {
    "binance": BinanceApi(
        routes=(("", ANY_KIND),),
        stream=re.compile(r"([a-z0-9]+)@(depth(?:@100ms)?|trade|aggTrade|bookTicker|depth(?:5|10|20)(?:@100ms)?)"),
        feeds={"depth": "depth", "depth@100ms": "depth", "trade": "trade"}, time_units=("MICROSECOND", "microsecond"),
        depth_path="/api/v3/depth", depth_weights=SNAPSHOT_WEIGHTS, depth_limits=(), default_limit=100,
        info_path="/api/v3/exchangeInfo", info_weight=_BINANCE.instruments_weight,
        exchange_info=spot_exchange_info),
    # the 2026 split (§1.1): /public and /market; the retired unrouted path still carries /public's streams
    "binance_usdm": BinanceApi(
        routes=(("/public", FUTURES_PUBLIC), ("/market", re.compile(r"aggTrade|markPrice.*|forceOrder")),
                ("", FUTURES_PUBLIC)),
        stream=FUTURES_STREAM, feeds=FUTURES_FEEDS, time_units=(), depth_path="/fapi/v1/depth",
        info_path="/fapi/v1/exchangeInfo", open_interest_path="/fapi/v1/openInterest", **FUTURES_REST),
    "binance_coinm": BinanceApi(
        routes=(("", ANY_KIND),), stream=FUTURES_STREAM, feeds=FUTURES_FEEDS, time_units=(),
        depth_path="/dapi/v1/depth", info_path="/dapi/v1/exchangeInfo", open_interest_path="/dapi/v1/openInterest",
        **FUTURES_REST),
}


class WeightBudget:
    """Binance's REQUEST_WEIGHT limit (rest-api.md, LIMITS): the weight used in the current window (what
    X-MBX-USED-WEIGHT-1M reports), a 429 for a request over the limit, and a 418 ban for asking again
    during a 429's Retry-After."""

    def __init__(self, limits: BinanceLimits):
        self.limits = limits
        self.used = 0
        self.window_end = 0.0
        self.retry_until = 0.0  # the last 429's Retry-After
        self.banned_until = 0.0

    def refusal(self, weight: int, now: float) -> tuple[int, float] | None:
        """(418 or 429, Retry-After seconds) for a request of `weight` at `now`, or None: the weight is spent."""
        if now >= self.window_end:
            self.used, self.window_end = 0, now + self.limits.weight_window_s
        if self.banned_until <= now < self.retry_until:
            self.banned_until = now + self.limits.ban_s
        if now < self.banned_until:
            return 418, self.banned_until - now
        if self.used + weight > self.limits.weight_per_window:
            self.retry_until = self.window_end
            return 429, self.window_end - now
        self.used += weight
        return None


class BinanceSession(Session):
    """A Binance connection: its route (the stream kinds it carries), its streams (each as subscribed, with
    the symbol and feed it names; None: not sent), whether events come wrapped (combined) and in µs, its
    incoming message rate and the last ping it was sent."""

    def __init__(self, venue: BinanceSim, path: str, route: re.Pattern, streams: list[str], combined: bool,
                 micros: bool):
        super().__init__(venue, path)
        self.route = route
        self.streams: dict[str, tuple[str, str | None]] = {}
        self.subscribe(streams)
        self.combined, self.micros = combined, micros
        self.messages = Window(venue.limits.messages_per_s, 1.0)
        self.ping_payload: bytes | None = None

    def subscribe(self, names: list[str]) -> None:
        """Listen to these (checked) streams; one of a kind another route carries is acknowledged and never
        sent, as fstream does (derivatives-protocols.md §1.1), and counted."""
        for name in names:
            symbol, kind = self.venue.api.stream.fullmatch(name).groups()
            routed = self.route.fullmatch(kind) is not None
            if not routed:
                self.venue.tally.rejected["wrong_route"] += 1
            self.streams[name] = (symbol.upper(), self.venue.api.feeds.get(kind) if routed else None)

    def listening(self, symbol: str, feed: str) -> list[str]:
        """The streams of this connection that carry `feed` (BinanceApi.feeds) of `symbol`."""
        return [name for name, served in self.streams.items() if served == (symbol, feed)]


class BinanceSim(VenueSim):
    """Binance spot; the futures venues are the same server with their own `api` data (BINANCE_APIS),
    limits (LIMITS) and encoder (the venue's), diffs chained by `pu`."""

    name = "binance"
    liquidation_chance = LIQUIDATION_CHANCE  # futures: each second and symbol

    def __init__(self, *args, limits: BinanceLimits | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.api = BINANCE_APIS[self.name]
        self.limits = limits = limits or LIMITS[self.name]()
        self.connections = Window(limits.connections_per_window, limits.connections_window_s)
        encoder = VENUES[self.name].encoder
        self.encoders = {s: encoder(s, i.px_dec, i.qty_dec) for s, i in self.instruments.items()}
        self.history = {s: deque(maxlen=BOOK_HISTORY) for s in self.instruments}  # (update id, bids, asks)
        self.budget = WeightBudget(limits)
        self.pings = itertools.count(1)
        self.open_interest = {s: 10_000 * 10 ** i.qty_dec for s, i in self.instruments.items()}  # futures: contracts or base

    # ------------------------------------------------------------ connection
    def open(self, path: str) -> Session | WSUpgradeResponseWithListener:
        """On a route's prefix: `/ws/<stream>` (raw), `/ws` (raw, streams subscribed live) or
        `/stream?streams=<s1>/<s2>...` (combined), each optionally with a documented `timeUnit`; anything
        else is refused."""
        url = urlparse(path)
        query = parse_qs(url.query, keep_blank_values=True)
        for prefix, route in self.api.routes:
            rest = url.path.removeprefix(prefix) if url.path.startswith(prefix + "/") else ""
            if rest in ("/stream", "/ws") or rest.startswith("/ws/"):
                break
        else:
            return self.refuse(HTTPStatus.NOT_FOUND, "path", f"no WebSocket endpoint at {url.path}")
        if rest == "/stream":
            combined, names = True, query.pop("streams", [""])[-1].split("/")
        else:
            combined, names = False, [rest[4:]] if rest != "/ws" else []
        time_unit = query.pop("timeUnit", [""])[-1]
        if query or time_unit not in ("", *self.api.time_units):
            return self.refuse(HTTPStatus.BAD_REQUEST, "query", f"unknown parameters in {url.query!r}")
        try:
            self.check_streams(names, {})
        except Refusal as refusal:
            return self.refuse(HTTPStatus.BAD_REQUEST, refusal.reason, refusal.message)
        return BinanceSession(self, path, route, names, combined, time_unit != "")

    def check_streams(self, names: list[str], current: dict[str, object]) -> None:
        """Raises a Refusal unless every name is a documented stream of a listed symbol (lowercase) and
        the connection stays within its stream limit."""
        for name in names:
            match = self.api.stream.fullmatch(name)
            if match is None or match[1].upper() not in self.instruments:
                raise Refusal("stream", f"Invalid request: unknown stream name {name!r}", 2)
        if len(current.keys() | set(names)) > self.limits.streams_per_connection:
            raise Refusal("too_many_streams",
                          f"Invalid request: more than {self.limits.streams_per_connection} streams", 2)

    def on_connect(self, session: BinanceSession) -> None:
        session.after("ping", self.limits.ping_every_s, self.ping)
        session.after("pong", self.limits.pong_timeout_s, self.pong_timed_out)
        session.after("lifetime", self.limits.lifetime_s, self.expire)

    def ping(self, session: BinanceSession) -> None:
        session.ping_payload = str(next(self.pings)).encode()
        session.transport.send_ping(session.ping_payload)
        session.after("ping", self.limits.ping_every_s, self.ping)

    def on_pong(self, session: BinanceSession, payload: bytes) -> None:
        if payload == session.ping_payload:  # an unsolicited pong does not keep the connection alive
            session.after("pong", self.limits.pong_timeout_s, self.pong_timed_out)

    def pong_timed_out(self, session: BinanceSession) -> None:
        session.close("pong_timeout", WSCloseCode.POLICY_VIOLATION, "no pong")

    def expire(self, session: BinanceSession) -> None:
        session.send(self.shutdown_notice(session))
        session.close("lifetime", WSCloseCode.GOING_AWAY, "connection lifetime reached")

    def shutdown_notice(self, session: BinanceSession) -> bytes:
        event = {"e": "serverShutdown", "E": time.time_ns() // (1000 if session.micros else 1_000_000)}
        return compact_json({"stream": "!serverShutdown", "data": event} if session.combined else event)

    def admit(self, session: BinanceSession, kind: WSMsgType) -> bool:
        return session.messages.admit(time.monotonic()) or self.over_rate(session)

    # ------------------------------------------------------------ live requests
    def on_message(self, session: BinanceSession, payload: bytes) -> None:
        request_id = None
        try:
            try:
                request = json.loads(payload.decode(errors="replace"))
            except json.JSONDecodeError as exc:
                raise Refusal("bad_json", f"Invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", 3)
            request_id = self.request_id(request)
            result = self.answer(session, request["method"], request.get("params"))
        except Refusal as refusal:
            self.tally.rejected[refusal.reason] += 1
            session.send(compact_json({"error": {"code": refusal.code, "msg": refusal.message}, "id": request_id}))
            return
        session.send(compact_json({"result": result, "id": request_id}))

    @staticmethod
    def request_id(request) -> int | str | None:
        """The request's id, once its envelope is checked: `method`, optional `params` and `id` only."""
        if not isinstance(request, dict) or "method" not in request:
            raise Refusal("bad_request", "Invalid request: missing field `method`", 2)
        if request.keys() - {"method", "params", "id"}:
            raise Refusal("bad_request", "Invalid request: too many parameters", 2)
        request_id = request.get("id", ...)  # absent: as invalid as a wrong type
        valid = request_id is None or (isinstance(request_id, int) and not isinstance(request_id, bool)
                                       and -2 ** 63 <= request_id < 2 ** 63) \
            or (isinstance(request_id, str) and BINANCE_REQUEST_ID.fullmatch(request_id))
        if not valid:
            raise Refusal("bad_request", "Invalid request: request ID must be an unsigned integer", 2)
        return request_id

    def answer(self, session: BinanceSession, method, params):
        """The result of a live request, or a Refusal with the documented error."""
        if method not in BINANCE_METHODS:
            raise Refusal("bad_request", f"Invalid request: unknown variant {method!r}, expected one of "
                                         + ", ".join(f"`{m}`" for m in BINANCE_METHODS), 2)
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(name, str) for name in params):
                raise Refusal("bad_request", "Invalid request: `params` must be a list of stream names", 2)
            if method == "UNSUBSCRIBE":
                for name in params:
                    session.streams.pop(name, None)
            else:
                self.check_streams(params, session.streams)
                session.subscribe(params)
            return None
        if method == "LIST_SUBSCRIPTIONS":
            if params:
                raise Refusal("bad_request", "Invalid request: too many parameters", 2)
            return list(session.streams)
        expected = 2 if method == "SET_PROPERTY" else 1
        if not isinstance(params, list) or len(params) != expected or not isinstance(params[0], str):
            raise Refusal("bad_request", "Invalid request: property name must be a string", 2)
        if params[0] != "combined":
            raise Refusal("bad_property", "Unknown property", 0)
        if method == "GET_PROPERTY":
            return session.combined
        if not isinstance(params[1], bool):
            raise Refusal("bad_property", "Invalid value type: expected Boolean", 1)
        session.combined = params[1]
        return None

    # ------------------------------------------------------------ market data
    def publish(self, symbol, market, step, ts_ns, fault) -> None:
        forms: dict[tuple, bytes] = {}
        encoder, history = self.encoders[symbol], self.history[symbol]
        frames = encoder.frames(market, step, ts_ns)
        if not history or history[-1][0] != encoder.update_id:
            history.append((encoder.update_id, market.top(BID, BOOK_HISTORY_DEPTH), market.top(ASK, BOOK_HISTORY_DEPTH)))
        for frame in frames:
            kind = frame[11:frame.index(b'"', 11)].partition(b"@")[2].decode()  # {"stream":"<symbol>@<kind>"
            self.broadcast(symbol, self.api.feeds[kind], frame, ts_ns, forms, fault)

    def broadcast(self, symbol: str, feed: str, frame: bytes, ts_ns: int, forms: dict[tuple, bytes],
                  fault: StepFault | None = None) -> None:
        """An encoder's frame to every stream listening to `feed` of `symbol`; a book diff under `fault`."""
        for session in list(self.sessions):
            for stream in session.listening(symbol, feed):
                drop, repeat = fault.decide() if feed == "depth" and fault is not None else (False, 1)
                if not drop:
                    self.send(session, self.render(frame, stream, session, ts_ns, forms), repeat)

    def heartbeat(self, ts_ns: int) -> None:
        """Each second, where the venue has them (futures): every symbol's markPrice@1s (and markPrice every
        3 s), and now and then a liquidation (forceOrder pushes at most one a second)."""
        if "mark" not in self.api.feeds.values():
            return
        ts_ms, forms = ts_ns // 1_000_000, {}
        for symbol, encoder in self.encoders.items():
            market = self.markets[symbol]
            mark = compact_json(encoder.mark_price_message(market, ts_ms, self.rng))
            self.broadcast(symbol, "mark", mark, ts_ns, forms)
            if ts_ms // 1000 % 3 == 0:
                self.broadcast(symbol, "mark@3s", mark, ts_ns, forms)
            if self.rng.random() < self.liquidation_chance:
                self.broadcast(symbol, "liquidation", compact_json(encoder.force_order_message(market, ts_ms, self.rng)),
                               ts_ns, forms)

    @staticmethod
    def render(frame: bytes, stream: str, session: BinanceSession, ts_ns: int, forms: dict[tuple, bytes]) -> bytes:
        """The encoder's frame (combined, ms) as this session receives it: named as it subscribed, raw or
        combined, its `E`/`T` in ms or µs. Each form is built once per step, whatever the sessions."""
        key = (frame, stream, session.combined, session.micros)
        if key not in forms:
            message = json.loads(frame)
            event = message["data"]
            if session.micros:
                event.update((name, ts_ns // 1000) for name in ("E", "T") if name in event)
            forms[key] = frame if (message["stream"], session.combined, session.micros) == (stream, True, False) \
                else compact_json({"stream": stream, "data": event} if session.combined else event)
        return forms[key]

    def close_all(self) -> None:
        for session in list(self.sessions):
            session.send(self.shutdown_notice(session))
        super().close_all()

    def metadata(self) -> bytes:
        return json.dumps(self.api.exchange_info(self.instruments)).encode()

    def rest(self, path, query):
        """The REST API within the request-weight budget; every answer carries the weight used so far."""
        headers = {}
        try:
            weight, answer = self.endpoint(path, query)
            over = self.budget.refusal(weight, time.monotonic())
            if over is not None:
                status, retry_after_s = over
                headers["Retry-After"] = str(math.ceil(round(retry_after_s, 6)))  # whole seconds, without float noise
                raise self.over_budget(status, retry_after_s)
            status, body = 200, answer()
        except Refusal as refusal:
            self.tally.rejected[refusal.reason] += 1
            status, body = refusal.status, compact_json({"code": refusal.code, "msg": refusal.message})
        return status, {**headers, "X-MBX-USED-WEIGHT-1M": str(self.budget.used)}, body

    def book(self, symbol: str, update_id: int) -> dict | None:
        """The top of `symbol`'s book as it was at `update_id` (mantissas, best first); None once that
        update id is older than the history kept (or never was)."""
        for at, bids, asks in reversed(self.history.get(symbol, ())):
            if at == update_id:
                return {"update_id": at, "bids": bids, "asks": asks}
            if at < update_id:
                return None
        return None

    def endpoint(self, path: str, query: dict[str, str]) -> tuple[int, Callable[[], bytes]]:
        """(weight, answer) of a request, or a Refusal: 404 for an unknown path, 400 for a bad parameter."""
        api = self.api
        if path == api.info_path:
            return api.info_weight, self.metadata
        if path != api.depth_path and (not api.open_interest_path or path != api.open_interest_path):
            raise Refusal("rest_path", "This operation is not supported.", -1020, 404)
        symbol, limit = query.get("symbol"), query.get("limit", str(api.default_limit))
        if not symbol:
            raise Refusal("rest_param", "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
                          -1102)
        if symbol not in self.instruments:
            raise Refusal("rest_param", "Invalid symbol.", -1121)
        if path == api.open_interest_path:
            return OPEN_INTEREST_WEIGHT, lambda: self.open_interest_answer(symbol)
        if not re.fullmatch(r"[0-9]{1,20}", limit) or int(limit) < 1:
            raise Refusal("rest_param", "Illegal characters found in parameter 'limit'; "
                                        "legal range is '^[0-9]{1,20}$'.", -1100)
        if api.depth_limits and int(limit) not in api.depth_limits:
            raise Refusal("rest_param", "Data sent for parameter 'limit' is not valid.", -1130)
        levels = min(int(limit), api.depth_weights[-1][0])
        weight = next(weight for top, weight in api.depth_weights if levels <= top)
        return weight, lambda: self.encoders[symbol].snapshot(self.markets[symbol], time.time_ns(), depth=levels)

    def open_interest_answer(self, symbol: str) -> bytes:
        """The symbol's open interest, a random walk of up to 5 units an answer, never below one unit."""
        unit = 10 ** self.instruments[symbol].qty_dec
        self.open_interest[symbol] = max(unit, self.open_interest[symbol] + int(self.rng.integers(-5 * unit, 5 * unit + 1)))
        return self.encoders[symbol].open_interest(self.open_interest[symbol], time.time_ns())

    def over_budget(self, status: int, retry_after_s: float) -> Refusal:
        """-1003 TOO_MANY_REQUESTS, worded as errors.md words it for a 429 and for a 418 ban."""
        if status == 418:
            until_ms = time.time_ns() // 1_000_000 + int(retry_after_s * 1000)
            return Refusal("rest_banned", f"Way too much request weight used; IP banned until {until_ms}. "
                                          "Please use WebSocket Streams for live updates to avoid bans.", -1003, 418)
        return Refusal("rest_rate_limit", f"Too much request weight used; current limit is "
                                          f"{self.limits.weight_per_window} request weight per "
                                          f"{self.limits.weight_window_s:g} SECOND. Please use WebSocket Streams for "
                                          "live updates to avoid polling the API.", -1003, 429)


class BinanceUsdmSim(BinanceSim):
    """Binance USD-M futures: books and bookTicker on /public; trades, markPrice and forceOrder on /market
    (BINANCE_APIS)."""

    name = "binance_usdm"


class BinanceCoinmSim(BinanceSim):
    """Binance COIN-M futures: books, trades, bookTicker, markPrice and forceOrder on dstream's /stream
    (BINANCE_APIS)."""

    name = "binance_coinm"


_OKX_ALL = ("SPOT", "SWAP", "FUTURES")
OKX_CHANNELS = {  # by instId on /ws/v5/public, with the instTypes each is for (§2.4, §2.8); all but books5
    # and tickers are served; index-tickers takes an index (the uly of swaps and futures, e.g. BTC-USDT)
    "books": _OKX_ALL, "trades": _OKX_ALL, "books5": _OKX_ALL, "bbo-tbt": _OKX_ALL, "tickers": _OKX_ALL,
    "mark-price": _OKX_ALL, "funding-rate": ("SWAP",), "open-interest": ("SWAP", "FUTURES")}
OKX_INDEX_TICKERS = "index-tickers"
OKX_BY_INST_TYPE = {"liquidation-orders": ("SWAP", "FUTURES", "MARGIN", "OPTION")}  # by instType (§2.8)
OKX_FUNDING_INTERVAL_MS = 8 * 3600 * 1000
OKX_OPEN_INTEREST_EVERY_S = 3  # "about every 3 s when changed"; funding-rate and mark-price every second
OKX_LIQUIDATIONS_PER_S = 0.2  # per instrument, on average
OKX_ID = re.compile(r"[A-Za-z0-9]{1,32}")  # a request's optional id (§2.3)
OKX_INST_TYPES = {SPOT: "SPOT", PERPETUAL: "SWAP", FUTURE: "FUTURES"}
OKX_LISTED = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION", "EVENTS")  # the instTypes instruments answers (§2.9)
OKX_NOTICE = "The connection will soon be closed for a service upgrade. Please reconnect."


class OkxSession(Session):
    """An OKX connection: its id (in every ack), its subscribe/unsubscribe budget, and when it last had
    something pushed and since when it has had nothing subscribed (the idle rule)."""

    def __init__(self, venue: OkxSim, path: str):
        super().__init__(venue, path)
        self.conn_id = f"{next(venue.conn_ids):08x}"
        self.requests = Window(venue.limits.requests_per_hour, 3600.0)
        self.pushed = self.bare_since = time.monotonic()


class OkxSim(VenueSim):
    """OKX v5 public on /ws/v5/public: `books` (a snapshot, then updates chained by seqId/prevSeqId with
    the top-25 checksum), `trades`, `bbo-tbt` on every change of the top, `funding-rate` and `mark-price`
    every second, `open-interest` every few seconds, `liquidation-orders` (by instType) now and then,
    `index-tickers` (by index: each swap's and future's uly) every second, 0.5 tick under the mark; one
    ack per subscribed arg, the text ping, the idle close; instruments by instType over REST."""

    name = "okx"
    ws_path = "/ws/v5/public"

    def __init__(self, instruments: list[Instrument], references: dict[str, Reference], seed: int, rate: float,
                 depth: int = 200, limits: OkxLimits | None = None):
        super().__init__(instruments, references, seed, rate, depth)
        self.limits = limits = limits or OkxLimits()
        self.connections = Window(limits.connections_per_s, 1.0)
        self.encoders = {s: OkxEncoder(s, i.px_dec, i.qty_dec, checksum=True) for s, i in self.instruments.items()}
        self.listings: dict[str, Window] = {}  # instType -> instruments requests
        self.conn_ids = itertools.count(0x5A000000)
        self.rng = np.random.default_rng(seed)  # funding rates, open interest, liquidations
        self.open_interest = {s: 1000 * 10 ** i.qty_dec for s, i in self.instruments.items()}
        self.indices = {index_of(s): s for s, i in self.instruments.items() if i.market != SPOT}  # -> an instrument
        self.beats = 0

    def open(self, path: str) -> Session | WSUpgradeResponseWithListener:
        if path != self.ws_path:
            return self.refuse(HTTPStatus.NOT_FOUND, "path", f"no WebSocket endpoint at {path}")
        return OkxSession(self, path)

    def send(self, session: OkxSession, payload: bytes, repeat: int = 1) -> None:
        session.pushed = time.monotonic()
        super().send(session, payload, repeat)

    def heartbeat(self, ts_ns: int) -> None:
        """Once a second: the context channels, then the idle rule (§2.2): nothing subscribed, or nothing
        pushed, for idle_s: closed."""
        self.beats += 1
        for symbol, inst in self.instruments.items():
            self.context(symbol, OKX_INST_TYPES[inst.market], ts_ns)
        for index, symbol in self.indices.items():  # half a price unit under the mid: finer than the tick
            px_dec = self.instruments[symbol].px_dec
            price = Decimal(wire(self.markets[symbol].mid(), px_dec)) - Decimal(1).scaleb(-px_dec) / 2
            self.push(OKX_INDEX_TICKERS, index, self.encoders[symbol].index_ticker(index, str(price), ts_ns))
        now = time.monotonic()
        for session in list(self.sessions):
            bare = not (session.books or session.trades or session.channels)
            if now - session.pushed >= self.limits.idle_s or bare and now - session.bare_since >= self.limits.idle_s:
                session.close("idle", WSCloseCode.GOING_AWAY, "no data for 30s")

    def context(self, symbol: str, inst_type: str, ts_ns: int) -> None:
        """One second of an instrument's context channels: its funding rate (paid at the next 8 h mark)
        and mark price, every few seconds its open interest (a random walk), now and then a liquidation
        near its touch."""
        encoder, market, inst = self.encoders[symbol], self.markets[symbol], self.instruments[symbol]
        if inst_type == "SWAP":
            rate = f"{self.rng.normal(0.0001, 0.00005):.8f}"
            funding_ms = (ts_ns // 1_000_000 // OKX_FUNDING_INTERVAL_MS + 1) * OKX_FUNDING_INTERVAL_MS
            self.push("funding-rate", symbol, encoder.funding_rate(rate, funding_ms, OKX_FUNDING_INTERVAL_MS, ts_ns))
        if inst_type in OKX_CHANNELS["mark-price"]:  # a spot pair's mark is its margin pair's (§2.8 [OKX-PUB])
            self.push("mark-price", symbol, encoder.mark_price(market, "MARGIN" if inst_type == "SPOT" else inst_type,
                                                               ts_ns))
        if inst_type in OKX_CHANNELS["open-interest"] and self.beats % OKX_OPEN_INTEREST_EVERY_S == 0:
            self.open_interest[symbol] = max(0, self.open_interest[symbol] + int(self.rng.integers(-50, 51)))
            self.push("open-interest", symbol,
                      encoder.open_interest(self.open_interest[symbol], str(inst.contract_size), inst_type, ts_ns))
        if inst_type in OKX_BY_INST_TYPE["liquidation-orders"] and self.rng.random() < OKX_LIQUIDATIONS_PER_S:
            side = "buy" if self.rng.random() < 0.5 else "sell"  # a buy closes a short: at or above the ask
            price = market.best(ASK) if side == "buy" else market.best(BID)
            frame = encoder.liquidation(side, price, int(self.rng.integers(1, 10)) * 10 ** inst.qty_dec, inst_type,
                                        f"{inst.base}-{inst.quote}", ts_ns)
            for session in [s for s in self.sessions if inst_type in s.channels.get("liquidation-orders", ())]:
                self.send(session, frame)

    def push(self, channel: str, symbol: str, frame: bytes) -> None:
        """`frame` to every session subscribed to `channel` for `symbol`."""
        for session in [s for s in self.sessions if symbol in s.channels.get(channel, ())]:
            self.send(session, frame)

    # ------------------------------------------------------------ requests
    def on_message(self, session: OkxSession, payload: bytes) -> None:
        if payload == b"ping":
            self.send(session, b"pong")
            return
        request_id = None
        try:
            request_id, op, args = self.parse(payload)
            if not session.requests.admit(time.monotonic()):
                raise Refusal("request_rate", "Requests too frequent.", 60014)
        except Refusal as refusal:
            self.error(session, refusal, request_id)
            return
        for arg in args:
            channel = arg["channel"]
            field = "instType" if "instType" in arg else "instId"
            key = arg[field]
            if field == "instType":
                known = key in OKX_BY_INST_TYPE.get(channel, ())
            elif channel == OKX_INDEX_TICKERS:
                known = key in self.indices
            else:
                inst = self.instruments.get(key)
                known = inst is not None and OKX_INST_TYPES[inst.market] in OKX_CHANNELS.get(channel, ())
            if not known:
                self.error(session, Refusal("unknown_channel", f"Wrong URL or channel:{channel},{field}:{key} "
                                                               "doesn't exist.", 60018), request_id)
                continue
            self.ack(session, op, arg, request_id)
            (self.subscribe if op == "subscribe" else self.unsubscribe)(session, channel, key)

    @staticmethod
    def parse(payload: bytes) -> tuple[str | None, str, list[dict]]:
        """(id, op, args) of a request in the documented shape (§2.3), else a Refusal."""
        try:
            request = json.loads(payload)
        except ValueError:
            request = None
        if not isinstance(request, dict) or request.keys() - {"id", "op", "args"}:
            raise Refusal("bad_request", f"Invalid request: {payload[:200].decode(errors='replace')}", 60012)
        request_id = request.get("id")
        if request_id is not None and not (isinstance(request_id, str) and OKX_ID.fullmatch(request_id)):
            raise Refusal("bad_request", "Invalid request: id must be up to 32 alphanumeric characters", 60012)
        op, args = request.get("op"), request.get("args")
        if op not in ("subscribe", "unsubscribe"):
            raise Refusal("bad_request", f"Invalid request: unknown op {op!r}", 60012)
        valid = isinstance(args, list) and args and all(
            isinstance(arg, dict) and set(arg) in ({"channel", "instId"}, {"channel", "instType"})
            and all(isinstance(value, str) for value in arg.values()) for arg in args)
        if not valid:
            raise Refusal("bad_request", "Invalid request: args must be a list of {channel, instId or instType}",
                          60012)
        if len(payload) >= SUBSCRIBE_MAX_BYTES:
            raise Refusal("bad_request", "Invalid request: a request must be shorter than 64 KB", 60012)
        return request_id, op, args

    def error(self, session: OkxSession, refusal: Refusal, request_id: str | None) -> None:
        self.tally.rejected[refusal.reason] += 1
        self.send(session, compact_json({**({"id": request_id} if request_id else {}), "event": "error",
                                         "code": str(refusal.code), "msg": refusal.message,
                                         "connId": session.conn_id}))

    def ack(self, session: OkxSession, op: str, arg: dict, request_id: str | None) -> None:
        self.send(session, compact_json({**({"id": request_id} if request_id else {}), "event": op, "arg": arg,
                                         "connId": session.conn_id}))

    def subscribe(self, session: OkxSession, channel: str, inst_id: str) -> None:
        """Listen (`inst_id`: the instType of a channel by instType); a books subscription starts with the
        book's snapshot (prevSeqId -1)."""
        session.bare_since = math.inf
        if channel == "books":
            session.books[inst_id] = self.encoders[inst_id]
            self.send(session, self.encoders[inst_id].snapshot(self.markets[inst_id], time.time_ns()))
        elif channel == "trades":
            session.trades.add(inst_id)
        else:
            session.channels.setdefault(channel, set()).add(inst_id)

    def unsubscribe(self, session: OkxSession, channel: str, inst_id: str) -> None:
        if channel == "books":
            session.books.pop(inst_id, None)
        elif channel == "trades":
            session.trades.discard(inst_id)
        elif inst_id in session.channels.get(channel, ()):
            session.channels[channel].discard(inst_id)
            if not session.channels[channel]:
                del session.channels[channel]
        if not (session.books or session.trades or session.channels):
            session.bare_since = time.monotonic()

    # ------------------------------------------------------------ market data
    def publish(self, symbol, market, step, ts_ns, fault) -> None:
        bbo = self.encoders[symbol].bbo(market, ts_ns)
        if bbo is not None:
            self.push("bbo-tbt", symbol, bbo)
        for frame in self.encoders[symbol].frames(market, step, ts_ns):
            if frame.startswith(b'{"arg":{"channel":"trades"'):
                for session in [s for s in self.sessions if symbol in s.trades]:
                    self.send(session, frame)
                continue
            listeners = [s for s in self.sessions if symbol in s.books]
            drop, repeat = fault.decide() if listeners else (True, 0)
            if not drop and self.faults.take("bad_checksum", symbol):
                frame = re.sub(rb'"checksum":(-?\d+)', lambda m: b'"checksum":%d' % wrong_checksum(int(m[1])), frame)
            for session in [] if drop else listeners:
                self.send(session, frame, repeat)

    def close_all(self) -> None:
        """A service upgrade: notice 64008, then the close."""
        for session in list(self.sessions):
            self.send(session, compact_json({"event": "notice", "code": "64008", "msg": OKX_NOTICE,
                                             "connId": session.conn_id}))
        super().close_all()

    # ------------------------------------------------------------ REST
    def metadata(self, inst_type: str = "SPOT") -> bytes:
        """GET /api/v5/public/instruments?instType=...: the instruments of that type (§2.9)."""
        return compact_json({"code": "0", "msg": "", "data": [
            okx_instrument(i) for i in self.instruments.values() if OKX_INST_TYPES[i.market] == inst_type]})

    def rest(self, path, query):
        if path != "/api/v5/public/instruments":
            return super().rest(path, query)
        inst_type = query.get("instType", "")
        try:
            if query.keys() - {"instType", "uly", "instFamily", "instId"}:
                raise Refusal("rest_param", f"Parameter {sorted(query.keys() - {'instType'})[0]} error", 51000)
            if not inst_type:
                raise Refusal("rest_param", "Parameter instType can not be empty.", 50014)
            if inst_type not in OKX_LISTED:
                raise Refusal("rest_param", "Parameter instType error", 51000)
            if inst_type == "OPTION" and not query.get("instFamily") and not query.get("uly"):
                raise Refusal("rest_param", "Parameter instFamily can not be empty.", 50014)
            window = self.listings.setdefault(inst_type, Window(self.limits.instruments_per_2s, 2.0))
            if not window.admit(time.monotonic()):
                raise Refusal("rest_rate_limit", "Too Many Requests", 50011, 429)
        except Refusal as refusal:
            self.tally.rejected[refusal.reason] += 1
            return refusal.status, {}, compact_json({"code": str(refusal.code), "msg": refusal.message, "data": []})
        return 200, {}, self.metadata(inst_type)


def wrong_checksum(crc: int) -> int:
    """A signed int32 other than `crc` and other than 0 (a 0 checksum is not checked)."""
    wrong = (crc + 1 + 2 ** 31) % 2 ** 32 - 2 ** 31
    return wrong or 1


def okx_instrument(inst: Instrument) -> dict:
    """One entry of OKX's instruments list: spot with its currencies, a contract with its face value
    (ctVal in ctValCcy), its type (linear: valued in the base) and its settlement currency."""
    tick, lot = (f"{10.0 ** -d:.{d}f}" if d else "1" for d in (inst.px_dec, inst.qty_dec))
    entry = {"instType": OKX_INST_TYPES[inst.market], "instId": inst.venue_symbol, "tickSz": tick, "lotSz": lot,
             "minSz": lot, "state": "live", "listTime": "1606468572000", "baseCcy": "", "quoteCcy": "", "ctVal": "",
             "ctValCcy": "", "ctType": "", "ctMult": "", "settleCcy": "", "uly": "", "instFamily": "", "expTime": ""}
    if inst.market == SPOT:
        return {**entry, "baseCcy": inst.base, "quoteCcy": inst.quote}
    linear = inst.contract_ccy == inst.base
    return {**entry, "ctVal": str(inst.contract_size), "ctValCcy": inst.contract_ccy, "ctMult": "1",
            "ctType": "linear" if linear else "inverse", "settleCcy": inst.settle,
            "uly": f"{inst.base}-{inst.quote}", "instFamily": f"{inst.base}-{inst.quote}",
            "expTime": str(inst.expiry_ms) if inst.market == FUTURE else ""}


BYBIT_CATEGORIES = ("spot", "linear", "inverse", "option")  # what instruments-info answers (§3.9)
BYBIT_TOPIC = re.compile(r"(orderbook)\.(\d+)\.(.+)|(publicTrade|tickers|allLiquidation)\.(.+)")
BYBIT_REQ_ID = re.compile(r"[A-Za-z0-9_-]{0,64}")
LIQUIDATION_EVERY_S = 3  # allLiquidation: one every this many seconds ("occasionally"; pushed each 500 ms at most)


@dataclass(frozen=True)
class BybitLimits:
    """Bybit v5 public's documented limits for linear and inverse (derivatives-protocols.md §3.2, §3.9)."""

    args_per_request: int = 0  # args in one request; 0: no cap (none documented for futures)
    args_chars: int = 21_000  # one request's args, in characters
    ping_timeout_s: float = 600.0  # no {"op":"ping"} from the client for this long (about 10 min): closed
    connections_per_window: int = _BYBIT.connections.count  # new connections per IP and domain; more: 429
    connections_window_s: float = _BYBIT.connections.per_s
    instruments_page: int = 500  # instruments-info's default page (linear, inverse)
    instruments_page_max: int = 1000  # its largest `limit`


@dataclass(frozen=True)
class BybitSpotLimits(BybitLimits):
    """Bybit v5 public spot: at most 10 args a subscribe (§3.2)."""

    args_per_request: int = 10


class BybitSession(Session):
    """A Bybit connection: its id (in every ack and pong) and its topics."""

    def __init__(self, venue: BybitSim, path: str):
        super().__init__(venue, path)
        self.conn_id = f"{next(venue.conn_ids):08x}-0000-4000-8000-000000000000"
        self.topics: set[str] = set()


class BybitSim(VenueSim):
    """Bybit v5 public on /v5/public/<category>: `orderbook.{1,50,200,1000}` (a snapshot, then deltas
    numbered by `u`, shared by every connection; level 1 snapshot-only; the `reset` fault sends a
    `u == 1` snapshot), `publicTrade`, and on linear and inverse `tickers` (a snapshot, then each second
    the changed fields) and `allLiquidation` (occasionally); one ack per request, in the category's
    shape; `{"op":"ping"}` answered with the category's pong, and a client that sends none for
    `ping_timeout_s` closed; instruments-info by category, paged by cursor (spot is not paged)."""

    category = ""

    def __init__(self, *args, limits: BybitLimits | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.ws_path = f"/v5/public/{self.category}"
        self.limits = limits = limits or LIMITS[self.name]()
        self.connections = Window(limits.connections_per_window, limits.connections_window_s)
        self.conn_ids = itertools.count(0x3CD84CB1)
        self.books: dict[tuple[str, int], BybitEncoder] = {}  # (symbol, depth): one numbering for all
        self.trade_encoders = {s: BybitEncoder(s, i.px_dec, i.qty_dec) for s, i in self.instruments.items()}
        self.stats = {s: BybitStatsEncoder(s, i.px_dec, i.qty_dec, seed=k + 1)
                      for k, (s, i) in enumerate(self.instruments.items()) if i.market != SPOT}
        self.seconds = 0

    def open(self, path: str) -> Session | WSUpgradeResponseWithListener:
        if path != self.ws_path:
            return self.refuse(HTTPStatus.NOT_FOUND, "path", f"no WebSocket endpoint at {path}")
        return BybitSession(self, path)

    def on_connect(self, session: BybitSession) -> None:
        session.after("ping", self.limits.ping_timeout_s, self.ping_timed_out)

    def ping_timed_out(self, session: BybitSession) -> None:
        session.close("ping_timeout", WSCloseCode.GOING_AWAY, "no ping")

    # ------------------------------------------------------------ requests
    def on_message(self, session: BybitSession, payload: bytes) -> None:
        try:
            request = json.loads(payload)
        except ValueError:
            request = None
        request_id, op = ((request.get("req_id"), request.get("op")) if isinstance(request, dict) else ("", ""))
        request_id, op = (value if isinstance(value, str) else "" for value in (request_id, op))
        try:
            args = self.parse(request)
            if op == "ping":
                session.after("ping", self.limits.ping_timeout_s, self.ping_timed_out)
                pong = {"success": True, "ret_msg": "pong", "conn_id": session.conn_id}
                self.send(session, compact_json({**pong, **({} if self.category == "spot" else {
                    "req_id": request_id}), "op": "ping"}))
                return
            topics = [self.topic(arg) for arg in args]
            if op == "subscribe":
                already = [arg for arg in args if arg in session.topics]
                if already:
                    raise Refusal("already_subscribed", f"error:already subscribed,topic:{already[0]}")
        except Refusal as refusal:
            self.tally.rejected[refusal.reason] += 1
            self.send(session, compact_json({"success": False, "ret_msg": refusal.message, "conn_id": session.conn_id,
                                             "req_id": request_id, "op": op}))
            return
        self.send(session, compact_json({"success": True, "ret_msg": op if self.category == "spot" else "",
                                         "conn_id": session.conn_id, "req_id": request_id, "op": op}))
        for name, (channel, depth, symbol) in zip(args, topics):
            if op == "unsubscribe":
                session.topics.discard(name)
                continue
            session.topics.add(name)
            now = time.time_ns()
            if channel == "orderbook":
                self.send(session, self.book_encoder(symbol, depth).snapshot(self.markets[symbol], now))
            elif channel == "tickers":
                self.send(session, self.stats[symbol].ticker_snapshot(self.markets[symbol], now))

    def parse(self, request) -> list[str]:
        """The args of a request (parsed JSON) in the documented shape (§3.2, §3.3), else a Refusal."""
        if not isinstance(request, dict) or request.keys() - {"req_id", "op", "args"}:
            raise Refusal("bad_request", "error:request not in the form {req_id, op, args}")
        request_id, op, args = request.get("req_id", ""), request.get("op"), request.get("args")
        if not isinstance(request_id, str) or not BYBIT_REQ_ID.fullmatch(request_id):
            raise Refusal("bad_request", "error:req_id must be a string")
        if op == "ping" and args is None:
            return []
        if op not in ("subscribe", "unsubscribe"):
            raise Refusal("bad_request", f"error:handler not found for op {op!r}")
        if not isinstance(args, list) or not args or not all(isinstance(arg, str) for arg in args):
            raise Refusal("bad_request", "error:args must be a non-empty list of topics")
        if 0 < self.limits.args_per_request < len(args):
            raise Refusal("args_per_request", f"error:args size >{self.limits.args_per_request}")
        if len(json.dumps(args)) >= self.limits.args_chars:
            raise Refusal("args_chars", f"error:args length must stay under {self.limits.args_chars}")
        return args

    def topic(self, name: str) -> tuple[str, int, str]:
        """(channel, book depth, symbol) of a topic this category serves, else a Refusal."""
        match = BYBIT_TOPIC.fullmatch(name)
        if match is None:
            raise Refusal("unknown_topic", f"error:handler not found,topic:{name}")
        channel, depth, symbol = match[1] or match[4], int(match[2] or 0), match[3] or match[5]
        if symbol not in self.instruments:
            raise Refusal("unknown_topic", f"Invalid symbol :[{name}]")
        if channel == "orderbook" and depth not in BYBIT_TOPIC_DEPTHS or \
                channel in ("tickers", "allLiquidation") and symbol not in self.stats:  # contracts only
            raise Refusal("unknown_topic", f"error:handler not found,topic:{name}")
        return channel, depth, symbol

    def book_encoder(self, symbol: str, depth: int) -> BybitEncoder:
        key = (symbol, depth)
        if key not in self.books:
            inst = self.instruments[symbol]
            self.books[key] = BybitEncoder(symbol, inst.px_dec, inst.qty_dec, depth)
        return self.books[key]

    def listeners(self, topic: str) -> list[BybitSession]:
        return [s for s in self.sessions if topic in s.topics]

    # ------------------------------------------------------------ market data
    def publish(self, symbol, market, step, ts_ns, fault) -> None:
        for frame in self.trade_encoders[symbol].trades(step, ts_ns):
            for session in self.listeners(f"publicTrade.{symbol}"):
                self.send(session, frame)
        restart = None
        for (book_symbol, depth), encoder in self.books.items():
            listeners = self.listeners(f"orderbook.{depth}.{symbol}") if book_symbol == symbol else []
            if not listeners:
                continue  # its view catches up when it next has a subscriber
            if restart is None:
                restart = self.faults.take("reset", symbol)
            frame = encoder.restart(market, ts_ns) if restart else encoder.delta(market, ts_ns)
            if frame is None:
                continue
            drop, repeat = (False, 1) if restart or depth == 1 else fault.decide()
            for session in [] if drop else listeners:
                self.send(session, frame, repeat)

    def heartbeat(self, ts_ns: int) -> None:
        """Once a second: the tickers' changed fields, and now and then a liquidation."""
        self.seconds += 1
        for symbol, encoder in self.stats.items():
            market = self.markets[symbol]
            frame = encoder.ticker_delta(market, ts_ns)
            for session in self.listeners(f"tickers.{symbol}") if frame is not None else []:
                self.send(session, frame)
            if self.seconds % LIQUIDATION_EVERY_S == 0:
                frame = encoder.liquidation(market, ts_ns)
                for session in self.listeners(f"allLiquidation.{symbol}"):
                    self.send(session, frame)

    # ------------------------------------------------------------ REST
    def metadata(self, category: str = "", limit: int = 0, cursor: int = 0) -> bytes:
        """GET /v5/market/instruments-info?category=...: this category's instruments (§3.9), `limit` a
        page from `cursor` on (spot: all of them), nextPageCursor "" on the last."""
        listed = list(self.instruments.values()) if category == self.category else []
        page = len(listed) if category == "spot" else limit or self.limits.instruments_page
        entries = listed[cursor:cursor + page]
        more = cursor + page < len(listed)
        return compact_json({"retCode": 0, "retMsg": "OK", "result": {
            "category": category, "list": [bybit_instrument(i, category) for i in entries],
            "nextPageCursor": f"next:{cursor + page}" if more else ""}, "retExtInfo": {},
            "time": int(time.time() * 1000)})

    def rest(self, path, query):
        if path != "/v5/market/instruments-info":
            return super().rest(path, query)
        try:
            if query.keys() - {"category", "symbol", "status", "baseCoin", "limit", "cursor"}:
                raise Refusal("rest_param", f"params error: {sorted(query.keys())[0]} is not a parameter", 10001)
            category = query.get("category", "")
            if category not in BYBIT_CATEGORIES:
                raise Refusal("rest_param", "params error: category must be one of spot, linear, inverse, option",
                              10001)
            limit = query.get("limit", "")
            if limit and not (limit.isdigit() and 1 <= int(limit) <= self.limits.instruments_page_max):
                raise Refusal("rest_param", f"params error: limit must be 1 to {self.limits.instruments_page_max}",
                              10001)
            cursor = query.get("cursor", "")
            match = re.fullmatch(r"next:(\d+)", cursor)
            if cursor and match is None:
                raise Refusal("rest_param", "params error: cursor is not one this endpoint gave", 10001)
        except Refusal as refusal:
            self.tally.rejected[refusal.reason] += 1
            return 200, {}, compact_json({"retCode": refusal.code, "retMsg": refusal.message, "result": {},
                                          "retExtInfo": {}, "time": int(time.time() * 1000)})
        return 200, {}, self.metadata(category, int(limit or 0), int(match[1]) if match else 0)


class BybitSpotSim(BybitSim):
    name, category = "bybit", "spot"


class BybitLinearSim(BybitSim):
    name, category = "bybit_linear", "linear"


class BybitInverseSim(BybitSim):
    name, category = "bybit_inverse", "inverse"


def bybit_instrument(inst: Instrument, category: str) -> dict:
    """One entry of instruments-info's list (§3.9): spot with basePrecision, a contract with its type,
    settlement coin, qtyStep and (a future) deliveryTime."""
    tick, lot = (f"{10.0 ** -d:.{d}f}" if d else "1" for d in (inst.px_dec, inst.qty_dec))
    entry = {"symbol": inst.venue_symbol, "status": "Trading", "baseCoin": inst.base, "quoteCoin": inst.quote,
             "priceFilter": {"tickSize": tick}}
    if category == "spot":
        return {**entry, "lotSizeFilter": {"basePrecision": lot, "minOrderQty": lot}}
    kind = "Linear" if category == "linear" else "Inverse"
    return {**entry, "contractType": kind + ("Perpetual" if inst.market == PERPETUAL else "Futures"),
            "settleCoin": inst.settle, "launchTime": "1585526400000", "priceScale": str(inst.px_dec),
            "deliveryTime": str(inst.expiry_ms) if inst.market == FUTURE else "0", "fundingInterval": 480,
            "lotSizeFilter": {"qtyStep": lot, "minOrderQty": lot}}


KRAKEN_BOOK_DEPTHS = VENUES["kraken"].limits.book_depths  # exchange-protocols.md §3.2
KRAKEN_PARAMS = {"book": {"channel", "symbol", "depth", "snapshot"}, "trade": {"channel", "symbol", "snapshot"}}


def _kraken_time(ts_ns: int) -> str:
    """RFC3339 to the microsecond, as Kraken's time_in and time_out."""
    return rfc3339(ts_ns)[:-4] + "Z"


class KrakenSim(VenueSim):
    """Kraken WebSocket v2 on /v2: `book` and `trade` subscriptions, and the application-level ping."""

    name = "kraken"
    ws_path = "/v2"

    def on_message(self, session: Session, payload: bytes) -> None:
        time_in = time.time_ns()
        try:
            request = json.loads(payload)
        except ValueError:
            request = None
        method, req_id = (request.get("method"), request.get("req_id")) if isinstance(request, dict) else (None, None)
        try:
            if not isinstance(request, dict) or method not in ("subscribe", "unsubscribe", "ping"):
                raise Refusal("bad_request", "Malformed request" if method is None else f"Method not found: {method}")
            unsupported = request.keys() - {"method", "req_id", *(("params",) if method != "ping" else ())}
            if unsupported:
                raise Refusal("bad_request", f"Unsupported field: {sorted(unsupported)[0]!r} for the given msg type: "
                                             f"{method}")
            if req_id is not None and type(req_id) is not int:
                raise Refusal("bad_request", "req_id must be an integer")
            if method == "ping":
                self.ack(session, {"method": "pong"}, req_id, time_in)
                return
            channel, symbols, depth, snapshot = self.params(request.get("params"), method)
        except Refusal as refusal:
            self.tally.rejected[refusal.reason] += 1
            self.ack(session, {"error": refusal.message, "method": method, "success": False}, req_id, time_in)
            return
        for symbol in symbols:
            self.subscription(session, method, channel, symbol, depth, snapshot, req_id, time_in)

    @staticmethod
    def params(params, method: str) -> tuple[str, list[str], int, bool]:
        """(channel, symbols, depth, snapshot) of subscribe or unsubscribe params, else a Refusal."""
        if not isinstance(params, dict):
            raise Refusal("bad_request", "Missing field: params")
        channel = params.get("channel")
        if not isinstance(channel, str) or channel not in KRAKEN_PARAMS:
            raise Refusal("unknown_channel", f"Channel not supported: {channel}")
        if params.keys() - KRAKEN_PARAMS[channel]:
            raise Refusal("bad_request", f"Unsupported field: {sorted(params.keys() - KRAKEN_PARAMS[channel])[0]!r} "
                                         f"for the given msg type: {method}")
        symbols, depth, snapshot = params.get("symbol"), params.get("depth", 10), params.get("snapshot", True)
        if not isinstance(symbols, list) or not symbols or not all(isinstance(symbol, str) for symbol in symbols):
            raise Refusal("bad_request", "Missing field: symbol")
        if type(depth) is not int or depth not in KRAKEN_BOOK_DEPTHS:
            raise Refusal("bad_depth", "Subscription depth not supported")
        if not isinstance(snapshot, bool):
            raise Refusal("bad_request", "Invalid value for field: snapshot")
        return channel, symbols, depth, snapshot

    def subscription(self, session: Session, method: str, channel: str, symbol: str, depth: int, snapshot: bool,
                     req_id: int | None, time_in: int) -> None:
        """One symbol of a (un)subscribe: its ack (one per symbol), then for a book its snapshot."""
        subscribed = session.books if channel == "book" else session.trades
        error = "Currency pair not supported" if symbol not in self.instruments else \
            "Subscription Not Found" if method == "unsubscribe" and symbol not in subscribed else None
        if error:
            self.tally.rejected["unknown_symbol" if symbol not in self.instruments else "not_subscribed"] += 1
            self.ack(session, {"error": error, "method": method, "success": False, "symbol": symbol}, req_id, time_in)
            return
        result = {"channel": channel, **({"depth": depth} if channel == "book" else {}),
                  **({"snapshot": snapshot} if method == "subscribe" else {}), "symbol": symbol}
        self.ack(session, {"method": method, "result": result, "success": True}, req_id, time_in)
        if method == "unsubscribe":
            session.books.pop(symbol, None) if channel == "book" else session.trades.discard(symbol)
        elif channel == "trade":
            session.trades.add(symbol)
        else:
            inst = self.instruments[symbol]
            session.books[symbol] = encoder = KrakenV2Encoder(symbol, inst.px_dec, inst.qty_dec, depth)
            frame = encoder.snapshot(self.markets[symbol])  # the encoder's view starts here, sent or not
            if snapshot:
                self.send(session, frame)

    @staticmethod
    def ack(session: Session, answer: dict, req_id: int | None, time_in: int) -> None:
        """A method response as Kraken sends it: fields in alphabetical order, the request's req_id when it
        had one, the times the request came in and the answer went out."""
        answer.update(req_id=req_id, time_in=_kraken_time(time_in), time_out=_kraken_time(time.time_ns()))
        session.send(compact_json(dict(sorted((key, value) for key, value in answer.items() if value is not None))))

    def publish(self, symbol, market, step, ts_ns, fault) -> None:
        for session in list(self.sessions):
            encoder = session.books.get(symbol)
            if encoder is None:
                continue
            for frame in encoder.frames(market, step, ts_ns):
                if frame.startswith(b'{"channel":"trade"'):
                    if symbol in session.trades:
                        self.send(session, frame)
                    continue
                drop, repeat = fault.decide()
                if drop:
                    continue
                if self.faults.take("bad_checksum", symbol):
                    head, _, crc = frame.rpartition(b'"checksum":')
                    frame = head + b'"checksum":' + str((int(crc.rstrip(b"}]")) + 1) % 2**32).encode() + b"}]}"
                self.send(session, frame, repeat)

    def heartbeat(self, ts_ns: int) -> None:
        for session in list(self.sessions):
            if session.books or session.trades:
                self.send(session, b'{"channel":"heartbeat"}')

    def metadata(self) -> bytes:
        legacy = {"BTC": "XBT"}
        return json.dumps({"error": [], "result": {
            f"{i.base}{i.quote}": {"altname": f"{i.base}{i.quote}",
                                   "wsname": f"{legacy.get(i.base, i.base)}/{i.quote}",
                                   "base": i.base, "quote": i.quote, "pair_decimals": i.px_dec,
                                   "lot_decimals": i.qty_dec, "status": "online"}
            for i in self.instruments.values()}}).encode()

    def rest(self, path, query):
        if path == "/0/public/AssetPairs":
            return 200, {}, self.metadata()
        return super().rest(path, query)


COINBASE_CHANNELS = {  # Advanced Trade's public channels: whether a subscribe names products (§2.1)
    "level2": True, "market_trades": True, "ticker": True, "ticker_batch": True, "candles": True,
    "heartbeats": False, "status": False}
COINBASE_FIELDS = {"type", "channel", "product_ids", "jwt"}


class CoinbaseSim(VenueSim):
    """Advanced Trade: `level2` and `market_trades` are served, the other public channels accepted."""

    name = "coinbase"

    def __init__(self, *args, limits: CoinbaseLimits = CoinbaseLimits(), **kwargs):
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.connections = Window(limits.connections_per_s, 1.0)
        self.messages = Window(limits.messages_per_s, 1.0)

    def on_connect(self, session: Session) -> None:
        session.after("subscribe", self.limits.subscribe_deadline_s, self.subscribe_deadline)

    def subscribe_deadline(self, session: Session) -> None:
        if not session.subscribed:
            session.close("subscribe_deadline", WSCloseCode.POLICY_VIOLATION, "no subscribe in time")

    def admit(self, session: Session, kind: WSMsgType) -> bool:
        if kind not in (WSMsgType.TEXT, WSMsgType.BINARY) or self.messages.admit(time.monotonic()):
            return True
        return self.over_rate(session, self.error("rate limit exceeded"))

    @staticmethod
    def error(message: str) -> bytes:
        return compact_json({"type": "error", "message": message})

    def on_message(self, session: Session, payload: bytes) -> None:
        try:
            kind, channel, products = self.parse(payload)
            (self.subscribe if kind == "subscribe" else self.unsubscribe)(session, channel, products)
        except Refusal as refusal:
            self.tally.rejected[refusal.reason] += 1
            session.send(self.error(refusal.message))
            return
        self._subscriptions(session)

    def parse(self, payload: bytes) -> tuple[str, str, list[str]]:
        """(type, channel, product_ids) of a request in the documented shape, else a Refusal."""
        try:
            request = json.loads(payload)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            raise Refusal("bad_message", "Failed to parse message")
        if "channels" in request:
            raise Refusal("bad_message", "`channels` is the Exchange feed's: subscribe to one `channel` per message")
        if request.keys() - COINBASE_FIELDS:
            raise Refusal("bad_message", f"unknown fields {sorted(request.keys() - COINBASE_FIELDS)}")
        kind, channel, products = request.get("type"), request.get("channel"), request.get("product_ids", [])
        if kind not in ("subscribe", "unsubscribe"):
            raise Refusal("bad_message", f"unknown message type {kind!r}")
        if not isinstance(channel, str) or channel not in COINBASE_CHANNELS:
            raise Refusal("bad_message", f"unknown channel {channel!r}")
        if not isinstance(products, list) or not all(isinstance(product, str) for product in products):
            raise Refusal("bad_message", "product_ids must be a list of product ids")
        if COINBASE_CHANNELS[channel] and not products:
            raise Refusal("bad_message", f"the {channel} channel needs product_ids")
        unknown = [product for product in products if product not in self.instruments]
        if unknown:
            raise Refusal("unknown_product", f"Failed to subscribe: unknown products {unknown}")
        return kind, channel, products

    def subscribe(self, session: Session, channel: str, products: list[str]) -> None:
        if channel == "level2":
            if len(session.books.keys() | set(products)) > self.limits.level2_per_connection:
                raise Refusal("too_many_l2", "too many L2 streams requested in a single session")
            ts_ns = time.time_ns()
            for product in products:
                inst = self.instruments[product]
                encoder = CoinbaseAdvancedEncoder(product, inst.px_dec, inst.qty_dec, session.sequence)
                session.books[product] = encoder
                self.send(session, encoder.snapshot(self.markets[product], ts_ns))
        elif channel == "market_trades":
            session.trades.update(products)
        else:
            session.channels.setdefault(channel, set()).update(products)
        session.subscribed = True

    @staticmethod
    def unsubscribe(session: Session, channel: str, products: list[str]) -> None:
        if channel == "level2":
            for product in products:
                session.books.pop(product, None)
        elif channel == "market_trades":
            session.trades.difference_update(products)
        elif channel in session.channels:
            session.channels[channel].difference_update(products)
            if not products or not session.channels[channel]:
                del session.channels[channel]

    def _subscriptions(self, session: Session) -> None:
        current = {"level2": sorted(session.books), "market_trades": sorted(session.trades),
                   **{channel: sorted(products) or [channel] for channel, products in session.channels.items()}}
        session.send(json.dumps({"channel": "subscriptions", "client_id": "", "timestamp": "",
                                 "sequence_num": next(session.sequence),
                                 "events": [{"subscriptions": current}]}).encode())

    def publish(self, symbol, market, step, ts_ns, fault) -> None:
        for session in list(self.sessions):
            encoder = session.books.get(symbol)
            if encoder is None:
                continue
            for frame in encoder.frames(market, step, ts_ns, trades=symbol in session.trades):
                if not frame.startswith(b'{"channel":"l2_data"'):
                    self.send(session, frame)
                    continue
                drop, repeat = fault.decide()
                if not drop:  # a dropped message's sequence_num is spent: the client sees the gap
                    self.send(session, frame, repeat)

    def heartbeat(self, ts_ns: int) -> None:
        for session in list(self.sessions):
            if "heartbeats" in session.channels:
                self.send(session, json.dumps({
                    "channel": "heartbeats", "client_id": "", "timestamp": "", "sequence_num": next(session.sequence),
                    "events": [{"current_time": "", "heartbeat_counter": ts_ns // 1_000_000_000}]}).encode())

    def metadata(self) -> bytes:
        return json.dumps({"products": [
            {"product_id": p, "base_currency_id": i.base, "quote_currency_id": i.quote,
             "quote_increment": f"{10.0 ** -i.px_dec:.{i.px_dec}f}" if i.px_dec else "1",
             "base_increment": f"{10.0 ** -i.qty_dec:.{i.qty_dec}f}" if i.qty_dec else "1", "status": "online"}
            for p, i in self.instruments.items()]}).encode()

    def rest(self, path, query):
        if path == "/api/v3/brokerage/market/products":
            return 200, {}, self.metadata()
        return super().rest(path, query)


LIMITS = {"binance": BinanceLimits, "binance_usdm": BinanceFuturesLimits, "binance_coinm": BinanceFuturesLimits,
          "coinbase": CoinbaseLimits, "okx": OkxLimits, "bybit_linear": BybitLimits, "bybit": BybitSpotLimits,
          "bybit_inverse": BybitLimits}
AnyLimits = BinanceLimits | CoinbaseLimits | OkxLimits | BybitLimits
SIMS = {"binance": BinanceSim, "coinbase": CoinbaseSim, "kraken": KrakenSim, "binance_usdm": BinanceUsdmSim,
        "binance_coinm": BinanceCoinmSim, "okx": OkxSim, "bybit_linear": BybitLinearSim, "bybit": BybitSpotSim,
        "bybit_inverse": BybitInverseSim}
PORT_ORDER = ("binance", "coinbase", "kraken", "binance_usdm", "binance_coinm", "okx", "bybit_linear", "bybit",
              "bybit_inverse")  # venue k: WS base + 2k, REST base + 2k + 1, whatever runs
DEFAULT_VENUES = PORT_ORDER[:7]  # what `fh sim` and `make run` serve: Bybit spot and inverse on request
WS_PATHS = {"kraken": "/v2", "okx": "/ws/v5/public", "bybit_linear": "/v5/public/linear", "bybit": "/v5/public/spot",
            "bybit_inverse": "/v5/public/inverse"}  # the path of a venue's WebSocket URL (the others take several)


class ReplaySim(VenueSim):
    """A capture served as it was received: every WS_RECV frame, in order, to whoever connects
    (at the recorded pace times `speed`, or as fast as possible when speed is 0); REST answered with
    the captured responses of the same path."""

    def __init__(self, path: str, speed: float):
        self.reader = CaptureReader(path)
        self.name = self.reader.header["venue"]
        self.speed = speed
        self.faults = Faults()
        self.tally = Tally()
        self.sessions = set()
        self.responses: dict[str, list[bytes]] = {}
        for frame in self.reader.frames():
            if frame.kind == FrameKind.REST:
                _, url, _, body = split_rest(frame.payload)
                self.responses.setdefault(urlparse(url).path, []).append(body)
        self.frames_sent = 0
        self.steps = 0

    def open(self, path: str) -> Session:
        """A capture is served on whatever path the client asks for."""
        return Session(self, path)

    def on_connect(self, session: Session) -> None:
        asyncio.get_running_loop().create_task(self._play(session))

    async def _play(self, session: Session) -> None:
        started, first = time.monotonic(), None
        for frame in self.reader.frames():
            if frame.kind != FrameKind.WS_RECV:
                continue
            first = frame.ts_ns if first is None else first
            if self.speed > 0:
                delay = started + (frame.ts_ns - first) / 1e9 / self.speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if session.transport is None or session.transport.is_disconnected:
                return
            self.send(session, frame.payload)

    def rest(self, path, query):
        bodies = self.responses.get(path)
        if not bodies:
            return 404, {}, b'{"error":"not in the capture"}'
        return 200, {}, bodies.pop(0) if len(bodies) > 1 else bodies[0]


@dataclass(frozen=True)
class Ports:
    ws: int
    rest: int


class SimulatorError(Exception):
    """The simulator cannot serve (a port it must listen on is taken)."""


class Simulator:
    """All simulated venues of one run, their servers and their shared market clock."""

    def __init__(self, venues: dict[str, VenueSim], host: str = "127.0.0.1", base_port: int = 18700):
        self.venues = venues
        self.host = host
        self.ports = {name: Ports(base_port + 2 * PORT_ORDER.index(name), base_port + 2 * PORT_ORDER.index(name) + 1)
                      for name in venues}
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: list[asyncio.Task] = []
        self.schedule: list[tuple[float, str, dict]] = []  # (at seconds, venue, fault arguments)

    @classmethod
    def synthetic(cls, venues: list[str], rate: float = 20.0, seed: int = 7,
                  limits: dict[str, AnyLimits] | None = None, allow_crosses: bool = False,
                  **kwargs) -> Simulator:
        """The synthetic venues, with the documented limits except where `limits` (per venue) says
        otherwise; `allow_crosses`: the venues' quotes may lock and cross each other (see `Reference`)."""
        unknown = [venue for venue in venues if venue not in SIMS]
        if unknown:
            raise ValueError(f"no simulator for {', '.join(unknown)}; known: {', '.join(PORT_ORDER)}")
        rng = np.random.default_rng(seed)
        references = {}
        for venue in venues:
            for inst in DEFAULT_INSTRUMENTS[venue]:
                references.setdefault(inst.symbol, Reference(REFERENCE_MIDS[inst.base], rng, allow_crosses))
        limits = limits or {}
        return cls({v: SIMS[v](DEFAULT_INSTRUMENTS[v], references, seed + k, rate,
                               **({"limits": limits[v]} if v in limits else {}))
                    for k, v in enumerate(venues)}, **kwargs)

    def urls(self) -> dict[str, dict[str, str]]:
        """The base URLs a venue worker is configured with to use this simulator."""
        return {name: {"ws_url": f"ws://{self.host}:{p.ws}{WS_PATHS.get(name, '')}",
                       "rest_url": f"http://{self.host}:{p.rest}"} for name, p in self.ports.items()}

    async def start(self) -> None:
        """Listens on every venue's ports (SimulatorError, naming the port, when one is taken) and
        starts the market clock."""
        for name, venue in self.venues.items():
            ports = self.ports[name]
            try:
                port = ports.ws
                self._servers.append(await ws_create_server(
                    lambda request, venue=venue: venue.accept(request.path.decode()), self.host, port,
                    max_frame_size=64 << 20, websocket_handshake_timeout=5, enable_auto_pong=False))
                port = ports.rest
                self._servers.append(await asyncio.start_server(
                    lambda r, w, venue=venue: self._http(venue, r, w), self.host, port))
            except OSError as exc:
                await self.stop()
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise SimulatorError(f"{name}: cannot listen on {self.host}:{port} ({reason}); use --port N "
                                     f"(venue k listens on N+2k and N+2k+1)") from None
        self._tasks = [asyncio.create_task(self._heartbeats()), asyncio.create_task(self._faults(time.monotonic())),
                       asyncio.create_task(self._references())]
        self._tasks += [asyncio.create_task(self._market(v)) for v in self.venues.values()
                        if not isinstance(v, ReplaySim)]

    async def run(self, duration: float | None = None) -> None:
        await self.start()
        await self.serve(duration)

    async def serve(self, duration: float | None = None) -> None:
        """Serve (once started) for `duration` seconds, or until cancelled; then stop."""
        try:
            await asyncio.sleep(duration) if duration else await asyncio.Event().wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        for venue in self.venues.values():
            for session in list(venue.sessions):
                session.transport.disconnect(graceful=False)
        for server in self._servers:
            server.close()
        self._servers.clear()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    async def _market(self, venue: VenueSim) -> None:
        """Steps each symbol at the venue's rate (bursts faster); nothing moves while stalled."""
        symbols = list(venue.markets)
        done, started, paced_rate = 0, time.monotonic(), 0.0
        while True:
            await asyncio.sleep(0.001)
            now = time.monotonic()
            rate = venue.current_rate(now) * len(symbols)
            if now < venue.faults.stall_until or rate != paced_rate or done > 1_000_000:
                started, done, paced_rate = now, 0, rate  # pacing starts over at every change of rate
                continue
            due = min(int((now - started) * rate) - done, 5000)
            ts_ns = time.time_ns()
            for k in range(max(0, due)):
                venue.step(symbols[(done + k) % len(symbols)], ts_ns)
            done += max(0, due)

    async def _references(self) -> None:
        """The shared reference prices move on wall time, whatever each venue's rate."""
        references = {id(r): r for v in self.venues.values() for r in getattr(v, "references", {}).values()}
        while True:
            await asyncio.sleep(0.1)
            for reference in references.values():
                reference.advance()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for venue in self.venues.values():
                if now >= venue.faults.stall_until:
                    venue.heartbeat(time.time_ns())

    async def _faults(self, started: float) -> None:
        for at, venue, arguments in sorted(self.schedule, key=lambda item: item[0]):
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            self.venues[venue].inject(**arguments)

    async def _http(self, venue: VenueSim, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            target = request.split(b" ", 2)[1].decode()
            parsed = urlparse(target)
            query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
            status, headers, body = await self._respond(venue, parsed.path, query)
            head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Content-Type: application/json",
                    f"Content-Length: {len(body)}", "Connection: close"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, IndexError, UnicodeDecodeError):
            pass
        finally:
            writer.close()

    async def _respond(self, venue: VenueSim, path: str, query: dict[str, str]) -> tuple[int, dict, bytes]:
        if path == "/_sim/fault":
            try:
                venue.inject(query.get("kind", ""), query.get("symbol", "*"), float(query.get("seconds", 2)),
                             float(query.get("rate", 0)), int(query.get("count", 1)))
            except ValueError as exc:
                return 400, {}, json.dumps({"error": str(exc)}).encode()
            return 200, {}, json.dumps({"injected": venue.faults.injected}).encode()
        if path == "/_sim/book":
            try:
                book = venue.book(query.get("symbol", ""), int(query.get("update_id", "")))
            except ValueError:
                return 400, {}, b'{"error":"update_id must be an integer"}'
            return (200, {}, json.dumps(book).encode()) if book else \
                (404, {}, json.dumps({"error": f"{venue.name}: no book kept at that update id"}).encode())
        if path == "/_sim/stats":
            return 200, {}, json.dumps({"steps": venue.steps, "frames_sent": venue.frames_sent,
                                        "sessions": len(venue.sessions), "injected": venue.faults.injected,
                                        "served": venue.faults.served, **venue.tally.stats()}).encode()
        faults = venue.faults
        if faults.rest_429 > 0:
            faults.rest_429 -= 1
            faults.count_served("rest_429")
            return 429, {"Retry-After": "1"}, b'{"code":-1003,"msg":"Too many requests"}'
        if faults.slow_rest_count > 0:
            faults.slow_rest_count -= 1
            faults.count_served("slow_rest")
            await asyncio.sleep(faults.slow_rest_s)
        return venue.rest(path, query)


def parse_fault(text: str) -> tuple[float, str, dict]:
    """`venue:kind[:key=value,...]@seconds`, e.g. `binance:drop@5`, `kraken:stall:seconds=3@10`."""
    spec, _, at = text.rpartition("@")
    parts = spec.split(":")
    if len(parts) < 2 or not at:
        raise ValueError(f"fault {text!r}: expected venue:kind[:key=value,...]@seconds")
    venue, kind = parts[0], parts[1]
    if kind not in FAULTS:
        raise ValueError(f"fault {text!r}: unknown kind {kind!r}; known: {', '.join(FAULTS)}")
    arguments: dict = {"kind": kind}
    for pair in filter(None, ",".join(parts[2:]).split(",")):
        key, _, value = pair.partition("=")
        if key not in ("symbol", "seconds", "rate", "count"):
            raise ValueError(f"fault {text!r}: unknown argument {key!r}")
        arguments[key] = value if key == "symbol" else (int(value) if key == "count" else float(value))
    return float(at), venue, arguments
