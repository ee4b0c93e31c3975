"""`fh bench wire`: simulator -> venue worker -> book in shared memory, over a real loopback WebSocket.

A blaster process serves Binance (REST exchangeInfo and depth snapshot, the combined stream) from a
pre-generated market and sends its diffs at a fixed rate (or as fast as the socket takes them),
logging each diff's send time (CLOCK_REALTIME) by update id in shared memory. The real worker
(`fh worker binance`, capture file on) decodes them; latency is the book record's `ts_publish`
minus the send time of that update id. Both clients run in one invocation; picows also busy-polling.
The first second of each run (connect, snapshot, bridging) is not measured.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from shm.layout import SLOT_ID, SLOT_KIND, SLOT_TS_PUBLISH, SLOT_WORDS, Kind
from shm.ring import poll
from shm.segment import Segment, SegmentError

from .stats import machine

SYMBOL = "BTCUSDT"
WARMUP_S = 1.0


def _blaster(ws_port: int, rest_port: int, steps: int, rate: float, log_path: str, ready) -> None:
    """Runs in its own process: serve one Binance symbol and send `steps` market steps' frames."""
    from picows import WSListener, WSMsgType, ws_create_server

    from workers.process import new_loop
    from ..sim.market import Market
    from ..sim.protocols import BinanceEncoder

    market, encoder = Market(mid=10_000_000, seed=3, max_levels=60), BinanceEncoder(SYMBOL, 2, 8)
    snapshot = encoder.snapshot(market)
    frames, ids = [], []
    now = time.time_ns()
    while len(frames) < steps:
        for frame in encoder.frames(market.step(), now):
            frames.append(frame)
            ids.append(encoder.update_id if b"@depth" in frame[:40] else -1)
    np.zeros(encoder.update_id + 1, np.int64).tofile(log_path)
    log = np.memmap(log_path, np.int64, "r+", shape=(encoder.update_id + 1,))
    info = (b'{"symbols":[{"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","quoteAsset":"USDT",'
            b'"quoteAssetPrecision":2,"baseAssetPrecision":8}]}')
    sessions = []

    class Listener(WSListener):
        def on_ws_connected(self, transport):
            sessions.append(transport)

        def on_ws_frame(self, transport, frame):
            if frame.msg_type == WSMsgType.CLOSE:
                transport.disconnect()

    async def rest(reader, writer):
        request = await reader.readuntil(b"\r\n\r\n")
        body = snapshot if b"/depth" in request.split(b"\r\n", 1)[0] else info
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    async def main():
        await ws_create_server(lambda request: Listener(), "127.0.0.1", ws_port)
        await asyncio.start_server(rest, "127.0.0.1", rest_port)
        ready.set()
        while not sessions:
            await asyncio.sleep(0.01)
        transport = sessions[0]
        buffered = transport.underlying_transport.get_write_buffer_size
        started = time.perf_counter()
        for k, (frame, update_id) in enumerate(zip(frames, ids)):
            if rate > 0:
                due = started + k / rate
                while time.perf_counter() < due:
                    pass
            elif buffered() > 4 << 20:
                while buffered() > 1 << 20:
                    await asyncio.sleep(0)
            if k % 64 == 0:
                await asyncio.sleep(0)  # let the REST server answer the snapshot request
            if update_id >= 0:
                log[update_id] = time.time_ns()
            transport.send(WSMsgType.TEXT, frame)
        log.flush()
        await asyncio.sleep(1.0)

    new_loop().run_until_complete(main())


def _config(directory: str, prefix: str, ws_port: int, rest_port: int, client: str, idle: str) -> str:
    path = os.path.join(directory, "wire.toml")
    with open(path, "w") as f:
        f.write(f'[run]\nprefix = "{prefix}"\ncapture_dir = "{directory}/captures"\n'
                f'instrument_cache = "{directory}/instruments"\n[aggregator]\nenabled = false\n'
                f'[venues.binance]\nsymbols = ["BTC-USDT"]\nws_url = "ws://127.0.0.1:{ws_port}"\n'
                f'rest_url = "http://127.0.0.1:{rest_port}"\nclient = "{client}"\nidle = "{idle}"\n'
                f'stale_after_s = 30\nsnapshot_limit = 1000\nring_slots = 65536\n')
    return path


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(client: str, idle: str, rate: float, seconds: float) -> dict:
    """One worker against one blaster at `rate` msgs/s (0: as fast as possible)."""
    steps = int((rate or 150_000) * seconds)
    directory = tempfile.mkdtemp(prefix="fhwire")
    prefix = f"fhwire{os.getpid()}"
    ws_port, rest_port = _free_port(), _free_port()
    log_path = os.path.join("/dev/shm", f"{prefix}.sendlog")
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    blaster = context.Process(target=_blaster, args=(ws_port, rest_port, steps, rate, log_path, ready))
    blaster.start()
    ready.wait(120)
    worker = subprocess.Popen([sys.executable, "-m", "tools.cli", "worker", "binance", "-c",
                               _config(directory, prefix, ws_port, rest_port, client, idle)],
                              stderr=subprocess.DEVNULL)
    ids, published = [], []
    try:
        segment = None
        deadline = time.monotonic() + 120
        while segment is None:
            try:
                segment = Segment(prefix, "binance")
            except SegmentError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        cursor = np.zeros(2, np.int64)
        rows = np.zeros((8192, SLOT_WORDS), np.int64)
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < (1.5 if ids else 60):
            filled = poll(segment.ring, segment.ring_control, cursor, rows)
            if filled:
                quiet_since = time.monotonic()
                book = rows[:filled][rows[:filled, SLOT_KIND] == Kind.BOOK]
                ids.append(book[:, SLOT_ID].copy())
                published.append(book[:, SLOT_TS_PUBLISH].copy())
            else:
                time.sleep(0.001)
        missed = int(cursor[1])
        segment.close()
    finally:
        worker.terminate()
        worker.wait(30)
        blaster.join(30)
        if blaster.is_alive():
            blaster.kill()
        sent = np.fromfile(log_path, np.int64) if os.path.exists(log_path) else np.zeros(0, np.int64)
        if os.path.exists(log_path):
            os.unlink(log_path)
        shutil.rmtree(directory, ignore_errors=True)
        for leftover in (f"/dev/shm/{prefix}.binance",):
            if os.path.exists(leftover):
                os.unlink(leftover)
    ids_all, published_all = np.concatenate(ids), np.concatenate(published)
    keep = (ids_all > 0) & (ids_all < len(sent))
    ids_all, published_all = ids_all[keep], published_all[keep]
    send = sent[ids_all]
    measured = (send > 0) & (published_all > 0)
    measured &= send >= send[measured].min() + WARMUP_S * 1e9
    latency = (published_all - send)[measured]
    span = (published_all[measured].max() - published_all[measured].min()) / 1e9 if measured.sum() > 1 else 0.0
    p50, p99 = np.percentile(latency / 1e3, [50, 99]) if len(latency) else (None, None)
    return {"p50_us": p50 and float(p50), "p99_us": p99 and float(p99), "frames": int(measured.sum()),
            "msgs_per_s": measured.sum() / span if span > 0 else 0.0, "lapped": missed}


def run(clients: tuple[str, ...] = ("picows", "websockets"), seconds: float = 3.0) -> dict:
    by_client = {}
    for client in clients:
        at_10k = run_once(client, "block", 10_000, seconds)
        at_50k = run_once(client, "block", 50_000, seconds)
        flat_out = run_once(client, "block", 0, seconds)
        by_client[client] = {"p50_us": at_10k["p50_us"], "p99_us": at_10k["p99_us"],
                             "max_msgs_per_s": flat_out["msgs_per_s"], "p50_us_50k": at_50k["p50_us"],
                             "p99_us_50k": at_50k["p99_us"], "measured_msgs_50k_per_s": at_50k["msgs_per_s"]}
    spin = run_once(clients[0], "spin", 10_000, seconds)
    best = min(by_client, key=lambda c: by_client[c]["p50_us"] or float("inf"))
    return {"client": best, **{k: by_client[best][k] for k in ("p50_us", "p99_us", "max_msgs_per_s")},
            "by_client": by_client, "spin": {"client": clients[0], "p50_us": spin["p50_us"], "p99_us": spin["p99_us"]},
            "machine": machine()}
