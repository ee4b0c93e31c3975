"""The worker's network clients bound what a peer can make them buffer: a WebSocket message (its
fragments included) and a REST body over the limit end the connection / the request with a clear
reason, while messages within it arrive whole."""
import asyncio
import http.server
import threading

import pytest
from picows import WSListener, WSMsgType, ws_create_server

from workers.rest import RestClient, RestError
from workers.wsclient import CLIENTS, open_connection

LIMIT = 1000


async def _served(fragments: list[bytes], client: str):
    """Connect `client` to a server that sends one message in `fragments`, then b"after"; returns
    (messages received, why the connection ended or None) once b"after" came or it ended."""
    class Sender(WSListener):
        def on_ws_connected(self, transport):
            for k, part in enumerate(fragments):
                kind = WSMsgType.TEXT if k == 0 else WSMsgType.CONTINUATION
                transport.send(kind, part, fin=k == len(fragments) - 1)
            transport.send(WSMsgType.TEXT, b"after")

        def on_ws_frame(self, transport, frame):
            if frame.msg_type == WSMsgType.CLOSE:  # answered, as a venue does
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    server = await ws_create_server(lambda request: Sender(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    received = []
    after = asyncio.Event()

    def on_message(payload: bytes, ts_recv: int) -> None:
        received.append(payload)
        if payload == b"after":
            after.set()

    connection = await open_connection(client, f"ws://127.0.0.1:{port}/", on_message, max_message=LIMIT)
    await asyncio.wait([asyncio.ensure_future(after.wait()), connection.closed], timeout=30,
                       return_when=asyncio.FIRST_COMPLETED)
    ended = connection.closed.result() if connection.closed.done() else None
    connection.close()
    server.close()
    return received, ended


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_a_fragmented_message_within_the_bound_arrives_whole(client):
    received, ended = asyncio.run(_served([b"a" * 400, b"b" * 400, b"c" * 100], client))
    assert received == [b"a" * 400 + b"b" * 400 + b"c" * 100, b"after"] and ended is None


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_a_fragmented_message_over_the_bound_ends_the_connection_unbuffered(client):
    received, ended = asyncio.run(_served([b"a" * 400] * 3, client))
    assert received == [] and ended is not None
    if client == "picows":
        assert ended == f"message over {LIMIT} bytes (closed 1009)"
    else:
        assert "1009" in ended


class _Body(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        size = int(self.path.rsplit("/", 1)[1])
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self.wfile.write(b"x" * size)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Body)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_rest_body_over_the_bound_is_an_error_naming_the_bound(http_server):
    client = RestClient(max_body=LIMIT)
    assert asyncio.run(client.get(f"{http_server}/{LIMIT}")).body == b"x" * LIMIT
    with pytest.raises(RestError, match=f"body over {LIMIT} bytes"):
        asyncio.run(client.get(f"{http_server}/{LIMIT + 1}"))
