"""What a venue is: endpoints and limits as data the enforcing code reads, and a sans-I/O protocol
that turns symbols into connections, messages and REST requests. Nothing here does I/O: the worker
opens and sends what these describe, `fh plan` prints it, the strict simulator enforces the same
limits from the other side.

A `Venue` is one deployment of a protocol: Binance.US or the market-data-only host of Binance are
the Binance protocol with other endpoints (`Venue.variant`), a few lines of data each.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs, urlparse

if TYPE_CHECKING:
    from ..feed import VenueFeed
    from ..instruments import Instrument


@dataclass(frozen=True)
class Rate:
    """At most `count` events per `per_s` seconds, counted per connection or per client IP."""

    count: int
    per_s: float
    scope: str = "connection"  # "connection" | "ip"

    @property
    def interval_s(self) -> float:
        """The spacing that never exceeds the rate, even at the start of a window."""
        return self.per_s / self.count


@dataclass(frozen=True)
class Limits:
    """The venue's documented limits; every field is read by the code that obeys it (worker,
    planner) and by the simulator that enforces it."""

    messages: Rate  # client -> server messages (subscribe, unsubscribe, ping)
    connections: Rate  # new connections
    streams_per_connection: int  # Binance streams, Coinbase level2 products, Kraken symbols
    lifetime_s: float = 0.0  # the server closes a connection after this long (0: never)
    rotate_margin_s: float = 0.0  # rotate this long before the lifetime ends
    server_ping_s: float = 0.0  # the server pings this often (0: it does not)
    pong_deadline_s: float = 0.0  # ... and closes a connection that does not pong within this
    subscribe_deadline_s: float = 0.0  # the server closes a connection not subscribed within this
    heartbeat_s: float = 0.0  # a subscribed connection hears from the venue this often (0: no such promise)
    client_ping_s: float = 0.0  # the client sends the protocol's `keepalive()` message this often (0: never)
    rest_weight_per_minute: int = 0  # REST request weight budget per IP (0: none published)
    instruments_weight: int = 1  # weight of the instrument metadata request
    book_depths: tuple[int, ...] = ()  # subscribable book depths (empty: full depth only)
    snapshot_limits: tuple[int, ...] = ()  # REST snapshot depths (empty: no REST snapshots)

    @property
    def default_book_depth(self) -> int:
        """The subscribed depth when none is configured: 10, or the shallowest deeper one the venue serves."""
        deeper = [depth for depth in self.book_depths if depth >= 10]
        return 10 if not self.book_depths or 10 in self.book_depths else min(deeper or self.book_depths)


@dataclass(frozen=True)
class ConnectionPlan:
    """One WebSocket connection: where to, which books it carries, what to send once open."""

    url: str
    symbols: tuple[str, ...]  # venue symbols
    subscribe: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class RestRequest:
    method: str
    url: str
    weight: int


@dataclass(frozen=True)
class PlanOptions:
    """What a plan depends on besides the symbols: a venue's configuration."""

    ws_url: str
    rest_url: str
    book_depth: int = 10  # Kraken: the subscribed depth
    snapshot_limit: int = 5000  # Binance: REST snapshot depth


# ---------------------------------------------------------------- requests a feed hands the worker

@dataclass(frozen=True)
class FetchSnapshot:
    """GET a REST book snapshot for `symbol`; its body goes to `feed.on_rest`."""

    symbol: str
    request: RestRequest


@dataclass(frozen=True)
class Resubscribe:
    """Send `messages` on connection `conn`: the venue sends fresh snapshots of `symbols`."""

    conn: int
    symbols: tuple[str, ...]
    messages: tuple[bytes, ...]


@dataclass(frozen=True)
class Poll:
    """GET what the venue streams nothing for (Binance futures: open interest) for `symbol`, now and every
    interval; its body goes to `feed.on_rest`."""

    symbol: str
    request: RestRequest


Request = FetchSnapshot | Resubscribe


def shards(symbols: list[str] | tuple[str, ...], per_connection: int) -> list[tuple[str, ...]]:
    """`symbols` in groups of at most `per_connection`, in order."""
    if per_connection < 1:
        raise ValueError(f"per_connection must be >= 1, got {per_connection}")
    return [tuple(symbols[k:k + per_connection]) for k in range(0, len(symbols), per_connection)]


def compact_json(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


class VenueProtocol:
    """A venue's messages and rules, without I/O. Subclasses override what their venue has."""

    def connections(self, venue: Venue, symbols: tuple[str, ...], options: PlanOptions) -> list[ConnectionPlan]:
        raise NotImplementedError

    def resubscribe(self, symbols: tuple[str, ...], options: PlanOptions, req_id: int) -> tuple[bytes, ...]:
        """Messages that make the venue send fresh snapshots of `symbols` (empty: REST snapshots)."""
        return ()

    def snapshot_request(self, symbol: str, options: PlanOptions) -> RestRequest | None:
        """The REST request for one book's snapshot (None: snapshots come on the socket)."""
        return None

    def poll_request(self, symbol: str, options: PlanOptions) -> RestRequest | None:
        """The REST request polled for one instrument's data the venue does not stream (None: nothing)."""
        return None

    def poll_interval_s(self, instruments: int) -> float:
        """How often each of `instruments` instruments is polled: its own interval, longer where the polls
        would take more than their share of the REST weight budget."""
        return 0.0

    def keepalive(self) -> bytes:
        """The message a client sends every `limits.client_ping_s` to keep a connection open (b"": none)."""
        return b""

    def next_page(self, url: str, body: bytes) -> str | None:
        """The URL of the metadata page after the one `url` answered with `body` (None: it was the last)."""
        return None

    def merge_pages(self, bodies: list[bytes]) -> bytes:
        """Every metadata page's body, in order, as one response body (what the instrument cache keeps);
        ValueError when they do not merge."""
        return bodies[0]

    def is_shutdown_notice(self, payload: bytes) -> bool:
        """The server announces it closes this connection soon: reconnect now."""
        return False

    def wire_instruments(self, instruments: list[Instrument], ws_url: str) -> list[Instrument]:
        """The instruments, one for one and in order, as a WebSocket at `ws_url` names them (names may
        differ from the metadata's, and two instruments may share one)."""
        return instruments

    def subscribed_symbols(self, urls: list[str], sent: list[bytes]) -> set[str]:
        """The venue symbols captured connections asked for: in their URLs and the messages sent."""
        wanted = {symbol for url in urls for symbol in self.symbols_of_url(url)}
        for payload in sent:
            try:
                message = json.loads(payload)
            except ValueError:
                continue
            if isinstance(message, dict):
                wanted |= self.symbols_of_message(message)
        return wanted

    def symbols_of_url(self, url: str) -> set[str]:
        return set()

    def symbols_of_message(self, message: dict) -> set[str]:
        return set()

    def time_unit_ns(self, url: str) -> int:
        """Nanoseconds per unit of the integer timestamps a connection to `url` receives."""
        return 1_000_000


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlparse(url).query)


@dataclass(frozen=True)
class Venue:
    """One venue deployment: endpoints, limits, metadata, the protocol, the feed and its kernels."""

    name: str
    protocol: VenueProtocol
    ws_url: str
    rest_url: str
    limits: Limits
    instruments_path: str
    parse_instruments: Callable[[str, Any], list[Instrument]]  # (venue name, parsed JSON body)
    feed: type[VenueFeed]
    encoder: type  # the simulator's encoder of this protocol
    sample_symbol: tuple[str, str, str]  # (venue symbol, base, quote) warmup and benchmarks drive
    symbol_form: str  # how the venue's metadata names a pair, e.g. "{base}{quote}" (plans without metadata)
    notes: str = ""
    cryptofeed: str = ""  # cryptofeed's exchange id, for importing its recordings ("" for none)
    markets: tuple[tuple[str, str, str], ...] = ()  # (market, metadata path, naming form) where a venue lists
    # and names a market apart from the others (OKX: swaps and futures); else instruments_path and symbol_form

    def variant(self, name: str, ws_url: str, rest_url: str, notes: str = "", cryptofeed: str = "",
                **limits: Any) -> Venue:
        """The same protocol at other endpoints (and, where documented, other limits)."""
        return replace(self, name=name, ws_url=ws_url, rest_url=rest_url, notes=notes, cryptofeed=cryptofeed,
                       limits=replace(self.limits, **limits) if limits else self.limits)

    def instruments_url(self, rest_url: str | None = None, market: str = "") -> str:
        """The metadata URL that lists `market` (spot, perpetual, future): instruments_path unless the
        venue lists that market apart (`markets`)."""
        path = next((path for kind, path, _ in self.markets if kind == market), self.instruments_path)
        return (rest_url or self.rest_url).rstrip("/") + path

    def symbol_form_of(self, market: str) -> str:
        """How the venue names a pair of `market`: symbol_form unless it names that market apart."""
        return next((form for kind, _, form in self.markets if kind == market), self.symbol_form)

    def plan(self, symbols: tuple[str, ...], options: PlanOptions) -> list[ConnectionPlan]:
        return self.protocol.connections(self, symbols, options)
