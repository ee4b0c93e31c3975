"""`fh query "SQL" [-c CONFIG] [--format table|json|csv]`: a read-only query against the store the
config's [sinks.clickhouse] writes, printed as an aligned table, a JSON list of row objects, or CSV.

Where it runs:
- chdb://PATH while its sink runs: through the sink (workers/sinks/clickhouse_http.py, the socket in
  the sink's state_dir), since chDB admits one process per path; the socket must be this user's;
- chdb://PATH with no sink running: PATH opened here, read-only, for as long as the query takes (a
  sink starting meanwhile retries until it is free);
- clickhouse://...: the server, with readonly=1.

The default database is the sink's, so `SELECT * FROM trades_readable` needs no prefix. Values are
kept exact: ClickHouse's text of each value, decimals without trailing zeros; JSON gives decimals as
strings (a JSON number would be read as a float) and 64-bit integers as numbers.
"""
from __future__ import annotations

import csv
import http.client
import io
import json
import os
import socket
import stat
import sys
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from feedhandler.config import SinkConfig, load_config, shown_url
from workers.sinks.clickhouse import CHDB_DATABASE, native_target
from workers.sinks.clickhouse_http import QUERY_TIMEOUT_S, readonly_session, refusal, run_query, socket_path


class QueryError(Exception):
    """The query did not run: the store's one-line reason."""


@dataclass
class Result:
    names: list[str]
    types: list[str]
    rows: list[list[Any]]


def main(sql: str, config_path: str, fmt: str) -> int:
    if (why := refusal(sql)) is not None:
        print(f"fh query: {why}", file=sys.stderr)
        return 2
    sink = load_config(config_path).sinks.get("clickhouse")
    if sink is None:
        print(f"fh query: {config_path} has no [sinks.clickhouse]: nothing stores the data it runs "
              f"(see docs/design.md, \"Sinks\")", file=sys.stderr)
        return 2
    try:
        result = fetch(sink, sql)
    except QueryError as exc:
        print(f"fh query: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(RENDER[fmt](result))
    return 0


def fetch(sink: SinkConfig, sql: str) -> Result:
    """`sql`'s result from the store of `sink`: through the running sink, else from the store itself."""
    if not sink.url.startswith("chdb://"):
        return _from_server(sink.url, sql)
    path = sink.url[len("chdb://"):]
    served = socket_path(sink)
    try:
        return _parse(_through_sink(served, sql))
    except (FileNotFoundError, ConnectionRefusedError):  # no sink serves (a socket left by one killed)
        return _parse(_from_path(path, served, sql))


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over the unix socket at `path`."""

    def __init__(self, path: Path):
        super().__init__("localhost", timeout=QUERY_TIMEOUT_S + 5)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self.path))


def _through_sink(path: Path, sql: str) -> bytes:
    """The result (JSONCompact) from the sink serving at `path`, which must be this user's socket."""
    st = os.lstat(path)
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid not in (os.geteuid(), 0):
        raise QueryError(f"{path} is not a socket of this user (uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}): "
                         f"refusing to read from it (fh makes its own, 0600)")
    connection = _UnixConnection(path)
    try:
        connection.request("POST", "/?default_format=JSONCompact", body=sql.encode())
        response = connection.getresponse()
        data = response.read()
    except TimeoutError:
        raise QueryError(f"the sink serving {path} did not answer in {QUERY_TIMEOUT_S + 5} s") from None
    finally:
        connection.close()
    if response.status != 200:
        raise QueryError(_first_line(data.decode("utf-8", "replace")))
    return data


def _from_path(path: str, served: Path, sql: str) -> bytes:
    """The result (JSONCompact) from the chDB store at `path`, opened here read-only."""
    if not os.path.isdir(path):
        raise QueryError(f"chdb://{path}: no store there yet; the ClickHouse sink makes it on its first run "
                         f"(make run)")
    try:
        store = readonly_session(path, CHDB_DATABASE)
    except Exception as exc:  # chDB raises plain exceptions
        if "EmbeddedServer" in str(exc):
            raise QueryError(f"chdb://{path} is open in another process that serves no queries on {served} "
                             f"(another fh query, or a sink that could not make its socket: see its log); "
                             f"try again when it is done") from None
        raise QueryError(f"chdb://{path}: cannot open ({_first_line(str(exc))})") from None
    try:
        return run_query(store, sql, "JSONCompact")
    except Exception as exc:
        raise QueryError(_first_line(str(exc))) from None
    finally:
        store.close()


def _from_server(url: str, sql: str) -> Result:
    """`sql`'s result from a ClickHouse server, read-only."""
    from clickhouse_driver import Client
    from clickhouse_driver.errors import Error, ServerException
    host, port, database, user, password = native_target(url)
    client = Client(host=host, port=port, user=user, password=password, database=database, connect_timeout=2,
                    send_receive_timeout=QUERY_TIMEOUT_S, settings={"readonly": 1})
    try:
        rows, columns = client.execute(sql, with_column_types=True)
    except ServerException as exc:  # its text starts with a line of its own: "Code: N."
        message = f"Code: {exc.code}. {_first_line(exc.message)}"
        raise QueryError(message.replace(password, "***") if password else message) from None
    except (Error, OSError, EOFError) as exc:
        raise QueryError(f"clickhouse {shown_url(url)}: unreachable ({exc})") from None
    finally:
        client.disconnect()
    return Result([name for name, _ in columns], [kind for _, kind in columns], [list(row) for row in rows])


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else "failed, without a message"


# ---------------------------------------------------------------------------------------------- values

def _parse(data: bytes) -> Result:
    """A JSONCompact result: 64-bit integers come quoted, decimals as JSON numbers (read exactly)."""
    try:
        document = json.loads(data or b'{"meta": [], "data": []}', parse_float=Decimal)
    except ValueError:
        raise QueryError("the result is not JSONCompact: leave FORMAT out of the query and choose --format") from None
    names = [column["name"] for column in document["meta"]]
    types = [column["type"] for column in document["meta"]]
    return Result(names, types, [[_typed(kind, value) for kind, value in zip(types, row)] for row in document["data"]])


def _typed(kind: str, value: Any) -> Any:
    """A JSONCompact value as the Python value of ClickHouse type `kind`."""
    while kind.startswith(("Nullable(", "LowCardinality(")):
        kind = kind[kind.index("(") + 1:-1]
    if value is None:
        return None
    if kind.startswith("Array("):
        return [_typed(kind[len("Array("):-1], item) for item in value]
    if kind.startswith("Decimal"):
        return Decimal(value)
    if kind.startswith(("Int", "UInt")):
        return int(value)
    if kind.startswith("Float"):
        return float(value)
    return value


def _numeric(kind: str) -> bool:
    kind = kind.replace("Nullable(", "").replace("LowCardinality(", "")
    return kind.startswith(("Int", "UInt", "Float", "Decimal"))


def _text(value: Any) -> str:
    """A value as text: decimals without trailing zeros, times as ClickHouse prints them."""
    if value is None:
        return "NULL"
    if isinstance(value, Decimal):
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, datetime):
        return value.isoformat(" ")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(item) for item in value) + "]"
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, (Decimal, datetime, date)):
        return _text(value)
    return value


# ---------------------------------------------------------------------------------------------- output

def table(result: Result) -> str:
    """Aligned columns, numbers to the right, and the row count."""
    cells = [[_text(value) for value in row] for row in result.rows]
    widths = [max([len(name)] + [len(row[k]) for row in cells]) for k, name in enumerate(result.names)]
    right = [_numeric(kind) for kind in result.types]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()
    lines = [line(result.names), line(["-" * w for w in widths])] + [line(row) for row in cells]
    return "\n".join(lines + [f"({len(cells)} row{'' if len(cells) == 1 else 's'})"]) + "\n"


def as_json(result: Result) -> str:
    """A JSON list of one object per row."""
    rows = [json.dumps({name: _json_value(value) for name, value in zip(result.names, row)}) for row in result.rows]
    return "[" + ",\n ".join(rows) + "]\n"


def as_csv(result: Result) -> str:
    """CSV with a header line; arrays as JSON text, NULL as an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.names)
    for row in result.rows:
        writer.writerow(["" if v is None else json.dumps(_json_value(v)) if isinstance(v, list) else _text(v)
                         for v in row])
    return out.getvalue()


RENDER = {"table": table, "json": as_json, "csv": as_csv}
