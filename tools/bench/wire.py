"""`fh bench wire`: simulator -> venue worker -> book in shared memory, over a real loopback WebSocket.

A blaster process serves Binance (REST exchangeInfo and depth snapshot, the combined stream) from a
pre-generated market and sends its diffs at a fixed rate (or as fast as the socket takes them),
logging each diff's send time (CLOCK_REALTIME) by update id in shared memory. The real worker
(`fh worker binance`, capture file on) decodes them; latency is the book record's `ts_publish`
minus the send time of that update id. Both clients run in one invocation; picows also busy-polling.
Latency is measured over the second half of each run (connect, snapshot, bridging and the backlog
they leave are not); throughput is the worker's decoded messages/s when sent flat out.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

from shm.layout import SLOT_ID, SLOT_KIND, SLOT_TS_PUBLISH, SLOT_WORDS, Counter, Kind
from shm.ring import poll
from shm.segment import Segment, SegmentError

from .stats import machine

SYMBOL = "BTCUSDT"
# The sender spins to pace its frames; on a 2-core box it must not share the worker's core, or the
# worker's wake-ups wait for the scheduler to preempt it (milliseconds).
WORKER_CPU, SENDER_CPU = 0, 1
LEAD_FRAMES = 200  # sent slowly first, then a pause: the worker's book is live before the run starts


def _blaster(ws_port: int, rest_port: int, steps: int, rate: float, log_path: str, ready) -> None:
    """Runs in its own process: serve one Binance symbol and send `steps` market steps' frames."""
    os.sched_setaffinity(0, {SENDER_CPU})
    from picows import WSListener, WSMsgType, ws_create_server

    from feedhandler.sim_market import Market
    from feedhandler.venues.binance import BinanceEncoder

    market, encoder = Market(mid=10_000_000, seed=3, max_levels=60), BinanceEncoder(SYMBOL, 2, 8)
    snapshot = None  # as of a few diffs into the stream: newer than the first diff the worker buffers
    frames, ids = [], []
    now = time.time_ns()
    while len(frames) < steps:
        if snapshot is None and len(frames) >= LEAD_FRAMES // 2:
            snapshot = encoder.snapshot(market)
        for frame in encoder.frames(market, market.step(), now):
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
        for frame, update_id in zip(frames[:LEAD_FRAMES], ids[:LEAD_FRAMES]):  # the worker bridges on these
            transport.send(WSMsgType.TEXT, frame)
            await asyncio.sleep(0.002)
        await asyncio.sleep(1.0)
        started = time.perf_counter()
        for k, (frame, update_id) in enumerate(zip(frames, ids)):
            if k < LEAD_FRAMES:
                continue
            if rate > 0:
                due = started + (k - LEAD_FRAMES) / rate
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

    # asyncio's own loop: its transports write to the socket at once, where uvloop queues writes
    # until the loop turns (this sender spins between frames instead of turning the loop)
    asyncio.new_event_loop().run_until_complete(main())


def _config(directory: str, prefix: str, ws_port: int, rest_port: int, client: str, idle: str) -> str:
    path = os.path.join(directory, "wire.toml")
    with open(path, "w") as f:
        f.write(f'[run]\nprefix = "{prefix}"\ncapture_dir = "{directory}/captures"\n'
                f'instrument_cache = "{directory}/instruments"\n[aggregator]\nenabled = false\n'
                f'[venues.binance]\nsymbols = ["BTC-USDT"]\nws_url = "ws://127.0.0.1:{ws_port}"\n'
                f'rest_url = "http://127.0.0.1:{rest_port}"\nclient = "{client}"\nidle = "{idle}"\n'
                f'stale_after_s = 30\nsnapshot_limit = 1000\nring_slots = 65536\ncpu = {WORKER_CPU}\n')
    return path


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(client: str, idle: str, rate: float, seconds: float) -> dict:
    """One worker against one blaster at `rate` msgs/s (0: as fast as possible)."""
    steps = int((rate or 60_000) * seconds)  # flat out: about twice what one worker takes
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
                              stderr=open(os.path.join(directory, "worker.log"), "w"))
    ids, published = [], []
    progress: list[tuple[float, int]] = []  # (time, frames the worker has decoded)
    try:
        segment = None
        deadline = time.monotonic() + 120
        while segment is None:
            try:
                segment = Segment(prefix, "binance")
            except SegmentError:
                if worker.poll() is not None or time.monotonic() > deadline:
                    with open(os.path.join(directory, "worker.log")) as log:
                        raise RuntimeError(f"the worker did not start: {log.read()[-2000:]}") from None
                time.sleep(0.05)
        cursor = np.zeros(2, np.int64)
        rows = np.zeros((8192, SLOT_WORDS), np.int64)
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < (1.5 if ids else 60):
            filled = poll(segment.ring, segment.ring_control, cursor, rows)
            progress.append((time.monotonic(), int(segment.counters[:, Counter.FRAMES].sum())))
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
        if os.environ.get("FH_KEEP_WIRE"):
            print(f"fh bench wire: kept {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
        for leftover in (f"/dev/shm/{prefix}.binance",):
            if os.path.exists(leftover):
                os.unlink(leftover)
    if not ids or not (sent > 0).any():
        raise RuntimeError(f"wire run ({client}, {rate:g} msgs/s) measured nothing: {len(ids)} ring batches, "
                           f"{int((sent > 0).sum())} sends logged")
    ids_all, published_all = np.concatenate(ids), np.concatenate(published)
    keep = (ids_all > 0) & (ids_all < len(sent))
    ids_all, published_all = ids_all[keep], published_all[keep]
    send = sent[ids_all]
    paired = (send > 0) & (published_all > 0)
    if not paired.any():
        raise RuntimeError(f"wire run ({client}, {rate:g} msgs/s): no published book matched a send")
    send, published_all = send[paired], published_all[paired]
    steady = send >= send.min() + (send.max() - send.min()) / 2  # the second half: connect, snapshot, bridging and their backlog excluded
    latency = (published_all - send)[steady] / 1e3
    p50, p99 = np.percentile(latency, [50, 99]) if len(latency) else (float("nan"),) * 2
    return {"p50_us": float(p50), "p99_us": float(p99), "frames": int(steady.sum()),
            "msgs_per_s": _decode_rate(progress), "lapped": missed}


def _attempt(client: str, idle: str, rate: float, seconds: float) -> dict:
    """run_once, with a run that measured nothing reported as such instead of ending the benchmark."""
    try:
        return run_once(client, idle, rate, seconds)
    except RuntimeError as exc:
        nothing = float("nan")
        return {"p50_us": nothing, "p99_us": nothing, "frames": 0, "msgs_per_s": 0.0, "lapped": 0, "error": str(exc)}


def _decode_rate(progress: list[tuple[float, int]]) -> float:
    """Messages/s the worker decoded over the middle of its busy period (all messages, trades too)."""
    times, frames = np.array([p[0] for p in progress]), np.array([p[1] for p in progress])
    busy = np.flatnonzero(np.diff(frames) > 0)
    if len(busy) < 10:
        return 0.0
    first, last = busy[len(busy) // 10], busy[len(busy) * 9 // 10]
    return float((frames[last] - frames[first]) / (times[last] - times[first]))


def _floor_receiver(port: int, count: int, spin: bool, path: str) -> None:
    """The least a receiver can do: a raw socket, 16-byte messages, a timestamp per message."""
    os.sched_setaffinity(0, {WORKER_CPU})
    with socket.create_server(("127.0.0.1", port)) as server:
        connection, _ = server.accept()
    connection.setblocking(not spin)
    stamps, pending, seen = np.zeros(count, np.int64), b"", 0
    while seen < count:
        try:
            data = connection.recv(1 << 16)
        except BlockingIOError:
            continue
        if not data:
            break
        now = time.time_ns()
        pending += data
        while len(pending) >= 16:
            stamps[int.from_bytes(pending[:8], "little")] = now
            pending, seen = pending[16:], seen + 1
    stamps.tofile(path)


def tcp_floor(rate: float, spin: bool, seconds: float = 2.0) -> dict:
    """Loopback TCP with the same pinned, paced sender and a do-nothing receiver: what this machine
    allows before any WebSocket or decoding (its blocking figure is the VM's vCPU wake-up)."""
    count, port = int(rate * seconds), _free_port()
    path = f"/dev/shm/fhfloor{os.getpid()}"
    receiver = multiprocessing.get_context("spawn").Process(target=_floor_receiver, args=(port, count, spin, path))
    receiver.start()
    sent = np.zeros(count, np.int64)
    for _ in range(500):
        try:
            sender = socket.create_connection(("127.0.0.1", port))
            break
        except ConnectionRefusedError:
            time.sleep(0.01)
    sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    started = time.perf_counter()
    for k in range(count):
        due = started + k / rate
        while time.perf_counter() < due:
            pass
        sent[k] = time.time_ns()
        sender.sendall(k.to_bytes(8, "little") + bytes(8))
    receiver.join(60)
    sender.close()
    received = np.fromfile(path, np.int64)
    os.unlink(path)
    latency = (received - sent)[count // 3:] / 1e3
    p50, p99 = np.percentile(latency, [50, 99])
    return {"p50_us": float(p50), "p99_us": float(p99)}


def run(clients: tuple[str, ...] = ("picows", "websockets"), seconds: float = 3.0) -> dict:
    if len(os.sched_getaffinity(0)) < 2:
        raise ValueError("fh bench wire needs 2 CPUs: the sender and the worker each get one")
    ring = np.zeros((2, SLOT_WORDS), np.int64)
    ring.setflags(write=False)
    control = np.zeros(8, np.int64)
    control.setflags(write=False)
    poll(ring, control, np.zeros(2, np.int64), np.zeros((1, SLOT_WORDS), np.int64))  # compiled before any run
    by_client = {}
    for client in clients:
        at_10k, at_50k, flat_out = (_attempt(client, "block", rate, seconds) for rate in (10_000, 50_000, 0))
        by_client[client] = {"p50_us": at_10k["p50_us"], "p99_us": at_10k["p99_us"],
                             "max_msgs_per_s": flat_out["msgs_per_s"], "p50_us_50k": at_50k["p50_us"],
                             "p99_us_50k": at_50k["p99_us"], "measured_msgs_50k_per_s": at_50k["msgs_per_s"]}
        errors = [run["error"] for run in (at_10k, at_50k, flat_out) if "error" in run]
        if errors:
            by_client[client]["errors"] = errors
    spin = _attempt(clients[0], "spin", 10_000, seconds)
    floor = {"blocking": tcp_floor(10_000, spin=False), "busy_polling": tcp_floor(10_000, spin=True)}
    best = min(by_client, key=lambda c: by_client[c]["p50_us"] if by_client[c]["p50_us"] == by_client[c]["p50_us"]
               else float("inf"))
    return {"client": best, **{k: by_client[best][k] for k in ("p50_us", "p99_us", "max_msgs_per_s")},
            "by_client": by_client, "spin": {"client": clients[0], "p50_us": spin["p50_us"], "p99_us": spin["p99_us"]},
            "tcp_floor_10k": floor,
            "machine": machine()}
