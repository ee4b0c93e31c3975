"""Redis sink (redis-py): latest values for strategies that poll, notifications for those that listen.

    <p>:top:<venue>:<symbol>          hash: best bid/ask of the venue book, its update id, seq, stamps
    <p>:depth:<venue>:<symbol>:bids   sorted set of "price:qty" members scored by price (asks: :asks)
    <p>:nbbo:<symbol>                 hash: the NBBO and the venues at each best
    <p>:trades:<symbol>               stream of trades (all venues), trimmed to about trades_maxlen
    <p>:status                        stream of status and gap records, trimmed likewise
    <p>:bbo:<venue>:<symbol>          hash: the venue's own best bid/offer (bookTicker, bbo-tbt, orderbook.1)
    <p>:funding:<venue>:<symbol>      hash: funding rate (rate_dec decimals), next_funding_time, mark_px, index_px
    <p>:open_interest:<venue>:<symbol>  hash: open interest (qty_dec decimals)
    <p>:liquidations:<symbol>         stream of liquidations (all venues), trimmed to about trades_maxlen
    <p>:updates:<symbol>              pub/sub: one message per book, NBBO, trade, bbo, funding, open interest
                                      or liquidation change (msgpack)
    <p>:sink:positions                hash: the sink's ring positions

Guarantee: latest-value conflation. Each batch is one MULTI/EXEC together with the sink's ring
positions, so a reader never sees half a change and a restarted sink resumes exactly where the last
transaction left off. Conflation: the runner paces batches to `max_commands_per_s` (pace()); books
changed many times in between are written once, and so are an instrument's bbo, funding and open
interest (the batch's last record of each: a funding record carries every field as last sent).
"""
from __future__ import annotations

import time

import msgpack
import redis
from redis.exceptions import AuthenticationError, ConnectionError, RedisError, ResponseError, TimeoutError

from feedhandler.config import SinkConfig, shown_url

from .records import BBO, BOOK, FUNDING, GAP, LIQUIDATION, NBBO, OPEN_INTEREST, STATUS, TRADE
from .runner import Sink, SinkConfigError, SinkDown
from .source import Batch, Position

PACE_BURST_S = 0.01  # the budget of this many seconds may go at once: a change after a quiet spell is not held
_TOP_FIELDS = ("epoch", "seq", "update_id", "valid", "px_dec", "qty_dec", "ts_exchange", "ts_recv", "ts_publish")
_NBBO_FIELDS = ("epoch", "seq", "changes", "px_dec", "qty_dec", "bid_px", "bid_qty", "ask_px", "ask_qty", "flags",
                "ts_recv", "ts_publish", "source_ts_publish")
LATEST_VALUES = (BBO, FUNDING, OPEN_INTEREST)  # a hash per venue instrument: only a batch's last record is written
_IDENTITY = ("v", "type", "ring", "venue", "symbol")  # in the key, not in the hash


def _flat(record: dict, names: tuple[str, ...]) -> dict:
    return {name: int(record[name]) for name in names}


class RedisSink(Sink):
    name = "redis"
    keeps_positions = True

    def __init__(self, config: SinkConfig):
        self.config = config
        self.p = config.prefix
        self.positions_key = f"{self.p}:sink:positions"
        self._client: redis.Redis | None = None
        self._pack = msgpack.Packer().pack
        self._budget_spent_until = 0.0

    def open(self) -> None:
        client = redis.Redis.from_url(self.config.url, socket_timeout=5, socket_connect_timeout=2)
        try:
            client.ping()
        except AuthenticationError as exc:
            raise SinkConfigError(f"redis {shown_url(self.config.url)}: {exc}") from None
        except (ConnectionError, TimeoutError) as exc:
            raise SinkDown(f"redis {shown_url(self.config.url)}: {exc}") from None
        except ResponseError as exc:  # NOAUTH and friends: retrying will not help
            raise SinkConfigError(f"redis {shown_url(self.config.url)}: {exc}") from None
        self._client = client

    def load_positions(self) -> dict[str, Position] | None:
        try:
            saved = self._client.hgetall(self.positions_key)
        except RedisError as exc:
            raise SinkDown(f"redis: reading positions: {exc}") from None
        return {ring.decode(): Position.from_json(value.split(b":")) for ring, value in saved.items()}

    def send(self, batch: Batch, positions: dict[str, Position]) -> int:
        records = batch.records
        if (trades := batch.trades) is not None:
            records = trades.records() + records
        if self._client is None:
            self.open()
        pipe = self._client.pipeline(transaction=True)
        latest: dict[tuple[str, str, str], dict] = {}
        for record in records:
            kind = record["type"]
            if kind == BOOK:
                self._book(pipe, record)
            elif kind == TRADE:
                pipe.xadd(f"{self.p}:trades:{record['symbol']}", self._fields(record),
                          maxlen=self.config.trades_maxlen, approximate=True)
                pipe.publish(f"{self.p}:updates:{record['symbol']}", self._pack(record))
            elif kind == NBBO:
                fields = _flat(record, _NBBO_FIELDS)
                fields.update(bid_venues=",".join(record["bid_venues"]), ask_venues=",".join(record["ask_venues"]),
                              source_venue=record["source_venue"] or "")
                pipe.hset(f"{self.p}:nbbo:{record['symbol']}", mapping=fields)
                pipe.publish(f"{self.p}:updates:{record['symbol']}", self._pack(record))
            elif kind in LATEST_VALUES:
                latest[kind, record["venue"], record["symbol"]] = record
            elif kind == LIQUIDATION:
                pipe.xadd(f"{self.p}:liquidations:{record['symbol']}", self._fields(record),
                          maxlen=self.config.trades_maxlen, approximate=True)
                pipe.publish(f"{self.p}:updates:{record['symbol']}", self._pack(record))
            elif kind in (STATUS, GAP):
                pipe.xadd(f"{self.p}:status", self._fields(record), maxlen=self.config.trades_maxlen,
                          approximate=True)
        for (kind, venue, symbol), record in latest.items():
            pipe.hset(f"{self.p}:{kind}:{venue}:{symbol}",
                      mapping={name: value for name, value in record.items() if name not in _IDENTITY})
            pipe.publish(f"{self.p}:updates:{symbol}", self._pack(record))
        pipe.hset(self.positions_key, mapping={ring: ":".join(map(str, p.to_json())) for ring, p in positions.items()})
        commands = len(pipe)
        try:
            pipe.execute()
        except (ConnectionError, TimeoutError) as exc:
            self._client = None
            raise SinkDown(f"redis: {exc}") from None
        except RedisError as exc:
            raise SinkDown(f"redis: {exc}") from None
        return commands

    def _book(self, pipe, record: dict) -> None:
        key = f"{record['venue']}:{record['symbol']}"
        bids, asks = record["bids"], record["asks"]
        top = _flat(record, _TOP_FIELDS)
        top.update(bid_px=bids[0][0] if bids else 0, bid_qty=bids[0][1] if bids else 0,
                   ask_px=asks[0][0] if asks else 0, ask_qty=asks[0][1] if asks else 0)
        pipe.hset(f"{self.p}:top:{key}", mapping=top)
        for side, levels in (("bids", bids), ("asks", asks)):
            depth_key = f"{self.p}:depth:{key}:{side}"
            pipe.delete(depth_key)
            if levels:
                pipe.zadd(depth_key, {f"{px}:{qty}": px for px, qty in levels})
        pipe.publish(f"{self.p}:updates:{record['symbol']}", self._pack(
            {"type": BOOK, "venue": record["venue"], "symbol": record["symbol"], "seq": record["seq"],
             "update_id": record["update_id"], "ts_publish": record["ts_publish"], "valid": record["valid"]}))

    @staticmethod
    def _fields(record: dict) -> dict:
        """Stream entries hold flat strings: None as empty, lists comma-joined, booleans 0/1."""
        fields = {}
        for name, value in record.items():
            if value is None:
                value = ""
            elif isinstance(value, bool):
                value = int(value)
            elif isinstance(value, list):
                value = ",".join(map(str, value))
            fields[name] = value
        return fields

    def pace(self, commands: int, now: float | None = None) -> float:
        """Seconds to wait after a batch of `commands` so that the rate stays within max_commands_per_s
        (a token bucket holding PACE_BURST_S of budget); the books that change meanwhile are conflated."""
        now = time.monotonic() if now is None else now
        spent_until = max(self._budget_spent_until, now - PACE_BURST_S) + commands / self.config.max_commands_per_s
        self._budget_spent_until = spent_until
        return max(0.0, spent_until - now)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
