"""ClickHouse sink: batched columnar inserts into the tables of clickhouse/schema.sql, through one of
two transports behind one writer:

    chdb://PATH                           embedded chDB (modern engine; the sink process owns PATH)
    clickhouse://HOST:PORT[/DATABASE]     a server over the native protocol (clickhouse-driver)

Guarantee: at-least-once, and a retried batch cannot duplicate: the same batch is retried with the
same insert_deduplication_token per table (servers >= 22.2, chDB), and every table is a
ReplacingMergeTree keyed by the record identity, so duplicates (a sink restarted mid-retry, or an old
server) collapse on merge and never show under FINAL. Servers older than 20.1 (no DateTime64) get the
tables of clickhouse/schema_legacy.sql (Int64 ns timestamps, no materialized views).

Batches are inserted in ring order, one at a time, and none after one that failed (until the runner
sends them all again); within a batch the trades go last, in one insert, after the depth, status,
bbo, funding, open interest and liquidation rows: a stored trade stands for its whole batch. So the
store holds, of each writer, every trade up to its latest one and none after: a sink restarted from
saved positions older than what the store took (a batch stored whose acknowledgement was lost with
the sink) asks the store where its trades end before it counts a gone writer's unread tail as missed
(`stored_after`). Records of that writer stored after its last stored trade (books, statuses,
derivatives records) are counted missed all the same: an overcount, never a record lost uncounted.

A chDB store is read through the sink while it runs (chDB admits one process per path): the sink
serves read-only queries on a socket in its state_dir, and on loopback HTTP where configured
(clickhouse_http.py). A path another process holds (`fh query` reading it while no sink ran) is
retried like a store that is down.
"""
from __future__ import annotations

import json
import logging
import re
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pyarrow as pa

from feedhandler.config import SinkConfig, shown_url

from .clickhouse_http import QueryServer, socket_path
from .records import BBO, BOOK, FUNDING, GAP, LIQUIDATION, NBBO, OPEN_INTEREST, STATUS, with_nulls
from .runner import Sink, SinkConfigError, SinkDown
from .source import Batch, Position

def _schema_dir() -> Path:
    """clickhouse/ of the source tree, else where setup.py installed its files."""
    here = Path(__file__).resolve().parents[2] / "clickhouse"
    return here if here.is_dir() else Path(sys.prefix) / "share" / "fh" / "clickhouse"


SCHEMA_DIR = _schema_dir()
CHDB_DATABASE = "fh"
# A batch never holds two rows of one key (each ring record goes once), so the replacing pass over each
# inserted block finds nothing to do; skipping it made a 105k-row trades insert ~1.5x faster in chDB.
# Repeats from a retried batch are in other parts and collapse on merge, and under FINAL, as before.
# A block the dedup token drops still reaches the materialized views unless they deduplicate too: those
# whose table keeps a deduplication window (funding_8h, liquidations_1m) then aggregate it once.
MODERN_INSERT_SETTINGS = {"optimize_on_insert": 0, "deduplicate_blocks_in_dependent_materialized_views": 1}

# table -> record types, columns as (name, kind); kinds: str, i64, i32, u8, ts, ?i64 / ?u8 (nullable),
# [i64] / [str] (arrays)
TABLES = {
    "trades": ((), (  # trades come as numpy columns (Batch.trades), not records
        ("venue", "str"), ("symbol", "str"), ("epoch", "i64"), ("seq", "i64"), ("trade_id", "i64"),
        ("ts_exchange", "ts"), ("ts_recv", "ts"), ("ts_publish", "ts"), ("price", "i64"), ("qty", "i64"),
        ("px_dec", "u8"), ("qty_dec", "u8"), ("side", "str"), ("book_valid", "u8"), ("book_update_id", "i64"),
        ("bid_px", "i64"), ("bid_qty", "i64"), ("ask_px", "i64"), ("ask_qty", "i64"), ("mid_px", "?i64"),
        ("spread", "?i64"), ("touch_qty", "?i64"), ("levels_swept", "i32"), ("nbbo_bid_px", "?i64"),
        ("nbbo_ask_px", "?i64"), ("nbbo_px_dec", "?u8"), ("through_nbbo", "?u8"))),
    "depth": ((BOOK,), (
        ("venue", "str"), ("symbol", "str"), ("epoch", "i64"), ("seq", "i64"), ("update_id", "i64"),
        ("valid", "u8"), ("changes", "i32"), ("periodic", "u8"), ("ts_exchange", "ts"), ("ts_recv", "ts"),
        ("ts_publish", "ts"), ("px_dec", "u8"), ("qty_dec", "u8"), ("bid_px", "[i64]"), ("bid_qty", "[i64]"),
        ("ask_px", "[i64]"), ("ask_qty", "[i64]"))),
    "nbbo": ((NBBO,), (
        ("symbol", "str"), ("epoch", "i64"), ("seq", "i64"), ("changes", "i64"), ("ts_recv", "ts"),
        ("ts_publish", "ts"), ("source_ts_publish", "ts"), ("source_venue", "str"), ("px_dec", "u8"),
        ("qty_dec", "u8"), ("bid_px", "i64"), ("bid_qty", "i64"), ("ask_px", "i64"), ("ask_qty", "i64"),
        ("bid_venues", "[str]"), ("ask_venues", "[str]"), ("flags", "u8"))),
    "status": ((STATUS, GAP), (
        ("venue", "str"), ("symbol", "str"), ("ring", "str"), ("epoch", "i64"), ("seq", "i64"), ("kind", "str"),
        ("status", "str"), ("reason", "str"), ("missed", "i64"), ("ts_recv", "ts"), ("ts_publish", "ts"))),
    "bbo": ((BBO,), (
        ("venue", "str"), ("symbol", "str"), ("epoch", "i64"), ("seq", "i64"), ("update_id", "i64"),
        ("ts_exchange", "ts"), ("ts_recv", "ts"), ("ts_publish", "ts"), ("px_dec", "u8"), ("qty_dec", "u8"),
        ("bid_px", "i64"), ("bid_qty", "i64"), ("ask_px", "i64"), ("ask_qty", "i64"))),
    "funding": ((FUNDING,), (
        ("venue", "str"), ("symbol", "str"), ("epoch", "i64"), ("seq", "i64"), ("ts_exchange", "ts"),
        ("ts_recv", "ts"), ("ts_publish", "ts"), ("px_dec", "u8"), ("rate", "i64"), ("rate_dec", "u8"),
        ("next_funding_time", "ts"), ("mark_px", "i64"), ("index_px", "i64"), ("fields", "u8"))),
    "open_interest": ((OPEN_INTEREST,), (
        ("venue", "str"), ("symbol", "str"), ("epoch", "i64"), ("seq", "i64"), ("ts_exchange", "ts"),
        ("ts_recv", "ts"), ("ts_publish", "ts"), ("qty_dec", "u8"), ("open_interest", "i64"))),
    "liquidations": ((LIQUIDATION,), (
        ("venue", "str"), ("symbol", "str"), ("epoch", "i64"), ("seq", "i64"), ("ts_exchange", "ts"),
        ("ts_recv", "ts"), ("ts_publish", "ts"), ("px_dec", "u8"), ("qty_dec", "u8"), ("price", "i64"),
        ("qty", "i64"), ("side", "str"), ("venue_side", "str"))),
}
BOOL_COLUMNS = {"valid", "periodic", "book_valid", "through_nbbo"}  # UInt8 in the tables
TABLE_OF = {kind: table for table, (kinds, _) in TABLES.items() for kind in kinds}
_ARROW = {"str": pa.string(), "i64": pa.int64(), "i32": pa.int32(), "u8": pa.uint8(),
          "ts": pa.timestamp("ns", tz="UTC"), "?i64": pa.int64(), "?u8": pa.uint8(),
          "[i64]": pa.list_(pa.int64()), "[str]": pa.list_(pa.string())}


def _row_values(record: dict) -> dict:
    """The columns a record does not carry under its column names (added to it before an insert)."""
    kind = record["type"]
    if kind == BOOK:
        bids, asks = record["bids"], record["asks"]
        return {"bid_px": [p for p, _ in bids], "bid_qty": [q for _, q in bids], "ask_px": [p for p, _ in asks],
                "ask_qty": [q for _, q in asks]}
    if kind in (STATUS, GAP):
        return {"kind": kind, "symbol": record["symbol"] or "", "status": record.get("status", ""),
                "missed": record.get("missed", 0)}
    if kind == NBBO:
        return {"source_venue": record["source_venue"] or ""}
    return {}


def _token(table: str, ring: str, epoch: int, first_seq: int, last_seq: int, count: int) -> str:
    """The insert_deduplication_token of a batch's rows for one table: the same batch retried gets the
    same token, so the server drops the repeat."""
    return f"{table}:{ring}:{epoch}:{first_seq}:{last_seq}:{count}"


def split_schema(text: str, database: str) -> list[str]:
    """The statements of a schema file, comments dropped, {db} filled in."""
    text = re.sub(r"--[^\n]*", "", text).replace("{db}", database)
    return [statement.strip() for statement in text.split(";") if statement.strip()]


class _Chdb:
    """Embedded chDB: one process per data path, which this sink owns."""

    modern = True

    def __init__(self, path: str):
        from chdb import session  # imported here: chDB is a large library only this transport needs
        Path(path).mkdir(parents=True, exist_ok=True)
        try:
            self.session = session.Session(path)
        except Exception as exc:  # chDB raises plain exceptions, e.g. when another process holds PATH
            if "EmbeddedServer" in str(exc):  # held: for a while by `fh query`, or by a misconfigured twin
                raise SinkDown(f"chdb://{path}: another process has it open; retrying") from None
            raise SinkConfigError(f"chdb://{path}: cannot open ({exc})") from None
        self.path = path
        self.database = CHDB_DATABASE

    def execute(self, sql: str) -> None:
        self.session.query(sql)

    @staticmethod
    def prepare(columns: dict[str, list | np.ndarray], nulls: dict[str, np.ndarray], kinds: dict[str, str]) -> pa.Table:
        return pa.table({name: pa.array(values, _ARROW[kinds[name]], mask=nulls.get(name))
                         for name, values in columns.items()})

    def insert(self, table: str, arrow: pa.Table, token: str) -> None:
        names = ", ".join(arrow.column_names)
        # chDB's Python() table function finds `arrow` among this frame's locals by name
        settings = "".join(f", {name} = {value}" for name, value in MODERN_INSERT_SETTINGS.items())
        self.session.query(f"INSERT INTO {self.database}.{table} ({names}) SELECT {names} FROM Python(arrow) "
                           f"SETTINGS insert_deduplication_token = '{token}'{settings}")

    def query(self, sql: str) -> list[tuple]:
        result = self.session.query(sql, "JSONCompact")
        return [tuple(row) for row in json.loads(result.bytes() or b'{"data": []}')["data"]]

    def close(self) -> None:
        self.session.close()


def native_target(url: str) -> tuple[str, int, str, str, str]:
    """(host, port, database, user, password) of `clickhouse://[user[:password]@]host[:port][/database]`;
    SinkConfigError (the password masked) for anything else."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or 9000
    except ValueError as exc:  # a port that is not a number or out of range
        raise SinkConfigError(f"clickhouse {shown_url(url)}: {exc}") from None
    database = parts.path.lstrip("/") or "default"
    if parts.scheme != "clickhouse" or not host or not re.fullmatch(r"\w+", database) or parts.query:
        raise SinkConfigError(f"clickhouse {shown_url(url)}: not clickhouse://[user[:password]@]host[:port][/database]")
    return host, port, database, unquote(parts.username or "default"), unquote(parts.password or "")


class _Native:
    """A ClickHouse server over the native protocol."""

    def __init__(self, url: str):
        from clickhouse_driver import Client
        from clickhouse_driver.errors import NetworkError, ServerException
        self.network_errors = (NetworkError, OSError, EOFError)
        host, port, database, user, password = native_target(url)
        self.client = Client(host=host, port=port, user=user, password=password, connect_timeout=2,
                             send_receive_timeout=10, settings={"use_numpy": False})
        self.database = database
        try:
            version = self.client.execute("SELECT version()")[0][0]
        except self.network_errors as exc:
            raise SinkDown(f"clickhouse {host}:{port}: unreachable ({exc})") from None
        except ServerException as exc:  # e.g. authentication: retrying does not fix it
            self.client.disconnect()
            message = str(exc).replace(password, "***") if password else str(exc)
            raise SinkConfigError(f"clickhouse {shown_url(url)}: {message.splitlines()[0]}") from None
        major, minor = (int(part) for part in version.split(".")[:2])
        self.modern = (major, minor) >= (22, 2)  # DateTime64, codecs, insert_deduplication_token
        self.version = version

    def execute(self, sql: str) -> None:
        self.client.execute(sql)

    def prepare(self, columns: dict[str, list | np.ndarray], nulls: dict[str, np.ndarray],
                kinds: dict[str, str]) -> tuple[list[str], list[list]]:
        data = [values.tolist() if isinstance(values, np.ndarray) else values for values in columns.values()]
        data = [with_nulls(values, nulls[name]) if name in nulls else values for name, values in zip(columns, data)]
        if self.modern:  # DateTime64 columns take datetimes, not ns integers
            data = [[np.datetime64(v, "ns") for v in values] if kinds[name] == "ts" else values
                    for name, values in zip(columns, data)]
        return list(columns), data

    def insert(self, table: str, prepared: tuple[list[str], list[list]], token: str) -> None:
        names, data = prepared
        settings = {"insert_deduplication_token": token, **MODERN_INSERT_SETTINGS} if self.modern else {}
        self.client.execute(f"INSERT INTO {self.database}.{table} ({', '.join(names)}) VALUES", data,
                            columnar=True, settings=settings)

    def query(self, sql: str) -> list[tuple]:
        return self.client.execute(sql)

    def close(self) -> None:
        self.client.disconnect()


class ClickHouseSink(Sink):
    name = "clickhouse"
    keeps_positions = False
    in_flight = 2  # the next batch is read and prepared while this one is inserted

    def __init__(self, config: SinkConfig):
        self.config = config
        self.log = logging.getLogger(f"fh.sink.{config.name}")
        self.store: _Chdb | _Native | None = None
        self.queries: QueryServer | None = None  # chDB: read-only queries served to local clients
        self._inserter: ThreadPoolExecutor | None = None  # one thread: inserts stay in batch order
        self._submitted: list[Future] = []
        self._last: Future | None = None  # the latest batch submitted: the next one runs only if it succeeded

    def open(self) -> None:
        url = self.config.url
        store = _Chdb(url[len("chdb://"):]) if url.startswith("chdb://") else _Native(url)
        schema = SCHEMA_DIR / ("schema.sql" if store.modern else "schema_legacy.sql")
        for statement in split_schema(schema.read_text(), store.database):
            try:
                store.execute(statement)
            except Exception as exc:
                store.close()
                raise SinkConfigError(f"clickhouse {shown_url(url)}: applying {schema.name} failed: {exc}\n"
                                      f"{statement}") from None
        self.store = store
        if isinstance(store, _Chdb):
            self._serve_queries(store)

    def _serve_queries(self, store: _Chdb) -> None:
        """Serve read-only queries to the store; a socket or port that cannot be had is logged, and
        the sink delivers all the same."""
        where = socket_path(self.config)
        host, _, port = self.config.query_http.rpartition(":")
        try:
            self.queries = QueryServer(store.path, store.database, where, (host, int(port)) if host else None, self.log)
        except OSError as exc:  # e.g. a socket path over the 107 bytes AF_UNIX allows, a port in use
            self.log.warning("clickhouse sink: not serving queries (%s at %s %s)", exc.strerror or exc, where,
                             self.config.query_http)
            return
        self.log.info("clickhouse sink: serving read-only queries on %s%s", where,
                      f" and http://{self.config.query_http}" if host else "")

    def send(self, batch: Batch, positions) -> Future:
        if self.store is None:
            self.open()
        inserts = [(table, self.store.prepare(columns, nulls, dict(TABLES[table][1])), token)
                   for table, columns, nulls, token in self._inserts(batch)]
        future = self._serial().submit(self._insert, self.store, inserts, self._last)
        self._submitted = [f for f in self._submitted if not f.done()] + [future]
        self._last = future
        return future

    def _serial(self) -> ThreadPoolExecutor:
        """The one thread that talks to the store (inserts, and queries between them)."""
        if self._inserter is None:
            self._inserter = ThreadPoolExecutor(1, thread_name_prefix=f"fh-sink-{self.name}")
        return self._inserter

    def stored_after(self, ring: str, position: Position) -> int | None:
        """The ring position after the last trade of `position`'s writer in `ring` (for the NBBO ring:
        NBBO change) that the store holds at or past `position.next`; `position.next` when none. None
        when the store cannot answer now. It reads the table's venue, epoch and seq columns whole (no
        key orders by epoch; a replay's receive times predate its writer): once per gone writer, at a
        restart."""
        if not re.fullmatch(r"\w+", ring):
            return None
        if self.store is None:  # dropped after a failure: no batch may come to reopen it first
            try:
                self.open()
            except SinkDown:
                return None
        table, venue = ("nbbo", "") if ring == "nbbo" else ("trades", f"venue = '{ring}' AND ")
        sql = (f"SELECT count(), max(seq) FROM {self.store.database}.{table} WHERE {venue}epoch = {position.epoch} "
               f"AND seq >= {position.next}")
        try:
            count, last = self._serial().submit(self.store.query, sql).result()[0]
        except Exception:  # down: the runner's next send finds out and backs off; asked again later
            return None
        return int(last) + 1 if int(count) else position.next

    def acknowledged(self, ticket: Future, wait: bool) -> int | None:
        if not wait and not ticket.done():
            return None
        try:
            return ticket.result()
        except Exception as exc:
            for queued in self._submitted:  # the store is not dropped under an insert still running
                queued.exception()
            self._submitted.clear()
            self._last = None  # the runner sends every batch in flight again, the failed one first
            self._failed(exc)

    @staticmethod
    def _inserts(batch: Batch) -> list[tuple[str, dict, dict, str]]:
        """(table, columns, their null masks, dedup token) per table the batch has rows for; a ring's
        key table (`stored_after`) last: NBBO changes after the other records, trades after everything."""
        by_table: dict[str, list[dict]] = {}
        for record in batch.records:
            by_table.setdefault(TABLE_OF[record["type"]], []).append(record)
        inserts = []
        for table, rows in sorted(by_table.items(), key=lambda item: item[0] == "nbbo"):
            kinds = dict(TABLES[table][1])
            for record in rows:
                record.update(_row_values(record))
            columns = {name: [record[name] for record in rows] for name in kinds}
            for name in BOOL_COLUMNS.intersection(columns):
                columns[name] = [None if value is None else int(value) for value in columns[name]]
            inserts.append((table, columns, {}, _token(table, rows[0]["ring"], rows[0]["epoch"], rows[0]["seq"],
                                                       rows[-1]["seq"], len(rows))))
        if (trades := batch.trades) is not None:
            names = [name for name, _ in TABLES["trades"][1]]
            inserts.append(("trades", {name: trades[name].astype(np.uint8) if name in BOOL_COLUMNS else trades[name]
                                       for name in names}, trades.nulls,
                            _token("trades", trades["ring"][0], trades["epoch"][0], trades["seq"][0], trades["seq"][-1],
                                   batch.size)))
        return inserts

    @staticmethod
    def _insert(store: _Chdb | _Native, inserts: list[tuple[str, object, str]], previous: Future | None) -> int:
        """On the inserter thread, which holds the GIL as little as it can (chDB and the socket release
        it): the transport's payload was prepared on the reading thread. Nothing is inserted after a
        batch that failed (`previous`, done by now: one thread runs them in order)."""
        if previous is not None and previous.exception() is not None:
            raise SinkDown("an earlier batch failed; this one goes again after it")
        for table, prepared, token in inserts:
            store.insert(table, prepared, token)
        return len(inserts)

    def _failed(self, exc: Exception) -> None:
        if isinstance(self.store, _Native) and isinstance(exc, self.store.network_errors):
            self.store.close()
            self.store = None
        raise SinkDown(f"clickhouse insert: {exc}") from None

    def query(self, sql: str) -> list[tuple]:
        """For tests and tools that share this sink's (chDB: exclusive) store."""
        return self.store.query(sql.replace("{db}", self.store.database))

    def close(self) -> None:
        if self.queries is not None:
            self.queries.close()
            self.queries = None
        if self._inserter is not None:
            self._inserter.shutdown(wait=True)
            self._inserter = None
        self._submitted.clear()
        if self.store is not None:
            self.store.close()
            self.store = None
