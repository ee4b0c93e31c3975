"""Read-only queries to the chDB store a ClickHouse sink owns, while it writes: chDB admits one process
per data path, so the sink's process answers them, over the part of ClickHouse's HTTP interface that
clients use to read. `fh query` speaks it; so do clickhouse-connect and Grafana's ClickHouse data
source, which is why it is this protocol and not one of fh's own.

Served on:
- a unix socket `<state_dir>/<sink>.query.sock`, always: mode 0600, and a peer of another uid (root
  aside) is refused by its SO_PEERCRED credentials, whatever the file's mode;
- a loopback TCP port when `query_http = "127.0.0.1:PORT"` is configured (off by default: every
  local user can reach it, and read the market data through it).

Read-only twice over: a statement must begin with SELECT, WITH, SHOW, DESCRIBE (DESC) or EXPLAIN
(else HTTP 403), and it runs on a chDB session of its own opened with readonly=1, where ClickHouse
itself refuses writes, DDL, setting changes and table functions such as file() or url(), and
max_execution_time ends a runaway query. That session is not the inserter's: queries run beside
the inserts, which never wait for them.

Requests: GET or POST `/?query=...` (a POST body is appended to it), `default_format` (else
TabSeparated; a FORMAT clause in the query wins), `param_<name>` for `{name:Type}` placeholders,
and `/ping`. Other parameters (session_id, query_id, settings) are ignored: a readonly session
changes no setting. Errors are ClickHouse's text with an X-ClickHouse-Exception-Code header.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from socketserver import ThreadingMixIn, ThreadingTCPServer, UnixStreamServer
from urllib.parse import parse_qs, urlsplit

from feedhandler.config import SinkConfig
from shm.files import remove_stale

QUERY_TIMEOUT_S = 60  # max_execution_time of every query served
IDLE_CONNECTION_S = 10.0  # a kept-alive client connection idle this long is closed
READ_ONLY_STATEMENTS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN")
# whitespace, comments and opening parentheses, then the first word
_FIRST_WORD = re.compile(r"(?:\s+|--[^\n]*|#[^\n]*|/\*.*?\*/|\()*([A-Za-z]*)", re.S)
_ERROR_CODE = re.compile(r"Code: (\d+)")


def refusal(sql: str) -> str | None:
    """Why `sql` is not served: None when it begins with a read-only statement."""
    word = _FIRST_WORD.match(sql).group(1).upper()
    if word in READ_ONLY_STATEMENTS:
        return None
    shown = f"{word} ..." if word else sql.strip()[:20] or "an empty query"
    return f"only SELECT, WITH, SHOW, DESCRIBE and EXPLAIN queries are served (read-only), not {shown}"


def socket_path(config: SinkConfig) -> Path:
    """Where the sink of `config` serves queries."""
    return Path(config.state_dir) / f"{config.name}.query.sock"


def readonly_session(path: str, database: str):
    """A chDB session on the store at `path`, read-only, `database` the default one."""
    from chdb import session  # imported here: a large library only chDB stores need
    return session.Session(f"{path}?readonly=1&database={database}&max_execution_time={QUERY_TIMEOUT_S}")


def run_query(store, sql: str, fmt: str, params: dict[str, str] | None = None) -> bytes:
    """`sql`'s result from the chDB session `store`, in ClickHouse output format `fmt`."""
    result = store.query(sql, fmt, params=params) if params else store.query(sql, fmt)
    return result.bytes() or b""


def _error_code(message: str) -> int:
    """The ClickHouse error code a message starts with (0: none)."""
    found = _ERROR_CODE.search(message)
    return int(found.group(1)) if found else 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clickhouse-connect reuses its connection
    timeout = IDLE_CONNECTION_S
    server: _UnixServer | _TcpServer

    def do_GET(self) -> None:  # noqa: N802 (the name http.server dispatches to)
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
        if url.path == "/ping":
            return self._reply(200, b"Ok.\n")
        if url.path != "/":
            return self._reply(404, f"no {url.path} here: queries go to /\n".encode())
        params = {name: values[-1] for name, values in parse_qs(url.query, keep_blank_values=True).items()}
        sql = "\n".join(part for part in (params.get("query", ""), body) if part)
        if (why := refusal(sql)) is not None:
            return self._reply(403, f"Code: 164. DB::Exception: {why}. (READONLY)\n".encode(), code=164)
        fmt = params.get("default_format", "TabSeparated")
        placeholders = {name[len("param_"):]: value for name, value in params.items() if name.startswith("param_")}
        try:
            data = self.server.queries.query(sql, fmt, placeholders)
        except Exception as exc:  # chDB raises RuntimeError with ClickHouse's message
            message = str(exc).strip()
            return self._reply(500, f"{message}\n".encode(), code=_error_code(message))
        self._reply(200, data, fmt=fmt)

    def _reply(self, status: int, data: bytes, code: int = 0, fmt: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        if code:
            self.send_header("X-ClickHouse-Exception-Code", str(code))
        if fmt:
            self.send_header("X-ClickHouse-Format", fmt)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        self.server.queries.log.debug("query server: " + format, *args)


class _UnixServer(ThreadingMixIn, UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, queries: QueryServer):
        self.queries = queries
        remove_stale(str(path))  # a socket a stopped sink left (one sink per state_dir: the instance lock)
        super().__init__(str(path), _Handler)
        os.chmod(path, 0o600)

    def verify_request(self, request: socket.socket, client_address) -> bool:
        """Only this uid and root: the socket's mode is set after bind, this holds from the start."""
        _, uid, _ = struct.unpack("3i", request.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                           struct.calcsize("3i")))
        return uid in (os.geteuid(), 0)

    def get_request(self):
        request, _ = super().get_request()
        return request, ("local", 0)  # http.server logs client_address[0]; a unix peer has no address


class _TcpServer(ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], queries: QueryServer):
        self.queries = queries
        super().__init__(address, _Handler)


class QueryServer:
    """Serves read-only queries to the chDB store at `path` (see the module docstring) until close()."""

    def __init__(self, path: str, database: str, socket_file: Path, tcp: tuple[str, int] | None = None,
                 log: logging.Logger | None = None):
        self.log = log or logging.getLogger("fh.sink.clickhouse")
        self.socket_file = socket_file
        self.session = readonly_session(path, database)
        self._serving: list[threading.Thread] = []
        self._servers: list[_UnixServer | _TcpServer] = []
        try:
            socket_file.parent.mkdir(parents=True, exist_ok=True)
            self._servers.append(_UnixServer(socket_file, self))
            if tcp is not None:
                self._servers.append(_TcpServer(tcp, self))
        except BaseException:
            self.close()
            raise
        self._serving = [threading.Thread(target=server.serve_forever, name="fh-query-server", daemon=True)
                         for server in self._servers]
        for thread in self._serving:
            thread.start()

    @property
    def http_address(self) -> tuple[str, int] | None:
        """The loopback (host, port) served, when there is one."""
        tcp = [server.server_address for server in self._servers if isinstance(server, _TcpServer)]
        return tcp[0][:2] if tcp else None

    def query(self, sql: str, fmt: str, params: dict[str, str] | None = None) -> bytes:
        return run_query(self.session, sql, fmt, params)

    def close(self) -> None:
        """Stop serving (queries still running end with the session), remove the socket."""
        for server in self._servers:
            if self._serving:
                server.shutdown()  # waits for its serve_forever loop to end
            server.server_close()
        if self._servers:
            remove_stale(str(self.socket_file))
        self._servers.clear()
        self._serving = []
        if self.session is not None:
            self.session.close()
            self.session = None
