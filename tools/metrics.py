"""`fh metrics --port P`: Prometheus metrics and health checks, read from shared memory on each scrape
(the venue and NBBO segments' counters and books, the processes' latency histograms) plus the sinks'
stats files. Nothing here touches the hot path: a scrape maps segments read-only and copies words.

    /metrics                       Prometheus text format 0.0.4
    /healthz                       200 when every venue writer is alive and every book valid, else 503
    /healthz/<venue>[/<symbol>]    the same for one venue, or one book; JSON body either way
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from shm.histogram import summary
from shm.latency import read_latency
from shm.layout import Counter
from shm.segment import SegmentError

from .attached import AttachedReaders, Refusals, nothing_under, venue_names

STALE_AFTER_S = 5.0  # a writer whose heartbeat is older is not alive
QUANTILES = (0.5, 0.9, 0.99, 0.999)
SINK_COUNTERS = ("sent", "acked", "retried", "dropped_with_gap", "gaps", "conflated", "batches", "commands")
_COUNTER_HELP = {
    Counter.FRAMES: "WebSocket frames received", Counter.BYTES: "bytes of frames received",
    Counter.DECODE_ERRORS: "frames or snapshots that did not decode", Counter.BOOK_UPDATES: "book updates applied",
    Counter.TRADES: "trades published", Counter.GAPS: "sequence gaps detected",
    Counter.RESYNCS: "books invalidated and resynchronised", Counter.CHECKSUM_OK: "venue checksums verified",
    Counter.CHECKSUM_FAIL: "venue checksums that did not match", Counter.CROSSED: "crossed books refused",
    Counter.ABSENT_DELETES: "deletes of levels the book did not have", Counter.BOOK_OVERFLOW: "levels beyond capacity",
    Counter.CAPTURE_ERRORS: "capture file writes that failed (capture_on_error drops or stops)",
    Counter.BBOS: "venue best bid/offer records published", Counter.FUNDINGS: "funding records published",
    Counter.OPEN_INTERESTS: "open interest records published", Counter.LIQUIDATIONS: "liquidations published",
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Exposition:
    """Prometheus text: one HELP/TYPE header per family, then its samples."""

    def __init__(self):
        self.lines: list[str] = []
        self._families: set[str] = set()

    def add(self, name: str, kind: str, help_text: str, value: float, **labels: str) -> None:
        self.family(name, kind, help_text)
        self.sample(name, value, **labels)

    def family(self, name: str, kind: str, help_text: str) -> None:
        if name not in self._families:
            self._families.add(name)
            self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, value: float, **labels: str) -> None:
        text = ",".join(f'{key}="{_label(str(v))}"' for key, v in labels.items())
        self.lines.append(f"{name}{{{text}}} {value!r}" if text else f"{name} {value!r}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class PublishAges:
    """How long ago each book or NBBO was last published, aged on CLOCK_MONOTONIC: when its stamp
    (CLOCK_REALTIME) changes, it was published its wall-clock age ago (never less than zero), and from
    there it ages on the monotonic clock, so a wall-clock step neither jumps nor reverses it."""

    def __init__(self):
        self._seen: dict[tuple, tuple[int, int]] = {}  # key -> (ts_publish, when on CLOCK_MONOTONIC)

    def age_s(self, key: tuple, ts_publish: int, wall_ns: int, mono_ns: int) -> float:
        stamp, at = self._seen.get(key, (None, 0))
        if stamp != ts_publish:
            at = mono_ns - max(0, wall_ns - ts_publish)
            self._seen[key] = (ts_publish, at)
        return (mono_ns - at) / 1e9


class Collector:
    """Reads everything a scrape reports; keeps readers attached between scrapes."""

    def __init__(self, prefix: str, sink_stats: Iterable[Path] = ()):
        self.prefix = prefix
        self.sink_stats = list(sink_stats)
        self._readers = AttachedReaders(prefix)
        self._latency_refusals = Refusals()
        self._ages = PublishAges()
        self._lock = threading.Lock()  # the HTTP server is threaded; readers are not shared across scrapes

    def health(self) -> dict:
        """Per venue: writer alive, heartbeat age, and per book valid and age since its last publish."""
        venues = {}
        with self._lock:
            now, mono = time.time_ns(), time.monotonic_ns()
            for venue in venue_names(self.prefix):
                reader = self._readers.get(venue)
                if reader is None:
                    continue
                status = reader.status()
                alive = status["state"] == "open" and status["heartbeat_age_s"] < STALE_AFTER_S
                books = {}
                for inst in reader.instruments:
                    book = reader.book(inst.index, depth=1)
                    books[inst.symbol] = {"venue_symbol": inst.venue_symbol, "valid": book.valid,
                                          "age_s": self._ages.age_s((venue, inst.index), book.ts_publish, now, mono)
                                          if book.ts_publish else None}
                venues[venue] = {"ok": alive and all(b["valid"] for b in books.values()), "alive": alive,
                                 "state": status["state"], "heartbeat_age_s": round(status["heartbeat_age_s"], 3),
                                 "books": books}
        if not venues:
            return {"ok": False, "venues": venues, "error": nothing_under(self.prefix, "no venue segments")}
        return {"ok": all(v["ok"] for v in venues.values()), "venues": venues}

    def metrics(self) -> str:
        out = Exposition()
        health = self.health()
        with self._lock:
            for venue, state in health["venues"].items():
                reader = self._readers.get(venue)
                out.add("fh_venue_up", "gauge", "1 while the venue writer is alive (heartbeat fresh)",
                        int(state["alive"]), venue=venue)
                out.add("fh_venue_heartbeat_age_seconds", "gauge", "since the venue writer's last heartbeat",
                        state["heartbeat_age_s"], venue=venue)
                counters = reader.segment.counters
                for counter, help_text in _COUNTER_HELP.items():
                    out.add(f"fh_{counter.name.lower()}_total", "counter", help_text,
                            int(counters[:, counter].sum()), venue=venue)
                for inst in reader.instruments:
                    book = state["books"][inst.symbol]
                    labels = {"venue": venue, "symbol": inst.symbol}
                    out.add("fh_book_valid", "gauge", "1 while the published book is valid", int(book["valid"]),
                            **labels)
                    if book["age_s"] is not None:
                        out.add("fh_book_age_seconds", "gauge", "since the book was last published", book["age_s"],
                                **labels)
                    for counter in (Counter.GAPS, Counter.RESYNCS, Counter.CHECKSUM_FAIL, Counter.CROSSED):
                        out.add(f"fh_book_{counter.name.lower()}_total", "counter", _COUNTER_HELP[counter],
                                int(counters[inst.index, counter]), **labels)
            self._nbbo(out)
            self._latency(out)
            self._refused(out)
        self._sinks(out)
        return out.text()

    def _nbbo(self, out: Exposition) -> None:
        reader = self._readers.get("nbbo")
        if reader is None:
            return
        now, mono = time.time_ns(), time.monotonic_ns()
        for inst in reader.instruments:
            try:
                quote = reader.quote(inst.index)
            except SegmentError:  # its block left torn by an aggregator killed inside a publish
                quote = None
            out.add("fh_nbbo_valid", "gauge", "1 while both sides of the NBBO are quoted and the aggregator is alive "
                    "(writer lock held, heartbeat fresh)", int(quote is not None and quote.valid), symbol=inst.symbol)
            if quote is None:
                continue
            out.add("fh_nbbo_crossed", "gauge", "1 while the NBBO is crossed (best bid above best ask)",
                    int(quote.crossed), symbol=inst.symbol)
            out.add("fh_nbbo_locked", "gauge", "1 while the NBBO is locked (best bid equals best ask)",
                    int(quote.locked), symbol=inst.symbol)
            out.add("fh_nbbo_venues_included", "gauge", "venues in the symbol's NBBO",
                    len(reader.included(inst.index)), symbol=inst.symbol)
            if quote.ts_publish:
                out.add("fh_nbbo_age_seconds", "gauge", "since the NBBO was last published",
                        self._ages.age_s(("nbbo", inst.index), quote.ts_publish, now, mono), symbol=inst.symbol)
            out.add("fh_nbbo_changes_total", "counter", "NBBO changes published", quote.changes, symbol=inst.symbol)

    def _latency(self, out: Exposition) -> None:
        name = "fh_latency_seconds"
        refused: dict[str, str] = {}
        histograms = read_latency(self.prefix, refused=refused)
        self._latency_refusals.replace(refused)
        for hist in histograms:
            figures = summary(hist.counts, tuple(q * 100 for q in QUANTILES))
            labels = {"hop": hist.hop, "label": hist.label}
            out.family(name, "summary", "per-hop latency (shm histograms, 0.1% resolution) since the process started")
            for q in QUANTILES:
                value = figures[f"p{q * 100:g}_ns"]
                if value is not None:
                    out.sample(name, value / 1e9, quantile=f"{q:g}", **labels)
            out.sample(f"{name}_sum", (figures["mean_ns"] or 0) * figures["count"] / 1e9, **labels)
            out.sample(f"{name}_count", figures["count"], **labels)
            out.add("fh_latency_negative_total", "counter", "latency samples below zero (clocks apart)",
                    figures["negative"], **labels)

    def _sinks(self, out: Exposition) -> None:
        for path in self.sink_stats:
            try:
                age = time.time() - path.stat().st_mtime
                stats = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            sink = str(stats.get("sink", path.stem))
            out.add("fh_sink_up", "gauge", "1 while the sink's service takes its batches", int(stats.get("up", 0)),
                    sink=sink)
            out.add("fh_sink_lag_records", "gauge", "ring records not yet delivered", int(stats.get("lag", 0)),
                    sink=sink)
            out.add("fh_sink_stats_age_seconds", "gauge", "since the sink last wrote its stats (1 s when running)",
                    age, sink=sink)
            for counter in SINK_COUNTERS:
                out.add(f"fh_sink_{counter}_total", "counter", f"sink {counter.replace('_', ' ')}",
                        int(stats.get(counter, 0)), sink=sink)

    def _refused(self, out: Exposition) -> None:
        for path in sorted({**self._readers.refusals.now, **self._latency_refusals.now}):
            out.add("fh_file_refused", "gauge", "1 for a file under the prefix skipped as untrusted or invalid "
                    "(the log says why)", 1, file=os.path.basename(path))

    def close(self) -> None:
        with self._lock:
            self._readers.close()


def _handler(collector: Collector):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?")[0].rstrip("/")
            if path == "/metrics":
                self._send(200, collector.metrics(), "text/plain; version=0.0.4; charset=utf-8")
            elif path == "/healthz" or path.startswith("/healthz/"):
                code, body = _health(collector.health(), path.split("/")[2:])
                self._send(code, json.dumps(body), "application/json")
            else:
                self._send(404, "not found: try /metrics or /healthz\n", "text/plain")

        def _send(self, code: int, body: str, content_type: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass  # a scrape every few seconds is not news

    return Handler


def _health(health: dict, parts: list[str]) -> tuple[int, dict]:
    """The status code and body for /healthz, /healthz/<venue> or /healthz/<venue>/<symbol>."""
    if not parts:
        return (200 if health["ok"] else 503), health
    venue = health["venues"].get(parts[0])
    if venue is None:
        return 404, {"ok": False, "error": f"no venue {parts[0]!r} under this prefix"}
    if len(parts) == 1:
        return (200 if venue["ok"] else 503), venue
    book = venue["books"].get("/".join(parts[1:]))
    if book is None:
        return 404, {"ok": False, "error": f"no book {'/'.join(parts[1:])!r} on {parts[0]}"}
    ok = venue["alive"] and book["valid"]
    return (200 if ok else 503), {"ok": ok, "alive": venue["alive"], **book}


def make_server(collector: Collector, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An HTTP server for `collector` on host:port (0: a free port); the caller runs serve_forever."""
    server = ThreadingHTTPServer((host, port), _handler(collector))
    server.daemon_threads = True
    return server


def sink_stats_paths(config) -> list[Path]:
    """The stats file of every sink a run config names."""
    return [Path(sink.state_dir) / f"{name}.stats.json" for name, sink in config.sinks.items()]


def main(args) -> int:
    """`fh metrics`: serve until SIGTERM / SIGINT, feeding systemd's watchdog meanwhile."""
    from feedhandler.config import load_config
    from workers.notify import Notifier
    from workers.lifecycle import Stop
    from workers.process import apply_shm_access, setup_logging
    config = load_config(args.config) if args.config else None
    prefix = args.prefix or (config.prefix if config else "fh")
    log = setup_logging("fh.metrics", config, process="metrics")
    apply_shm_access(config)
    stop = Stop().on_signals()
    collector = Collector(prefix, sink_stats_paths(config) if config else ())
    try:
        server = make_server(collector, args.port, args.host)
    except OSError as exc:
        print(f"fh metrics: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); use --port N "
              f"(0: any free port)", file=sys.stderr)
        return 2
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, name="fh-metrics-http", daemon=True).start()
    log.info("metrics on http://%s:%d/metrics, health on /healthz (prefix %s)", args.host, port, prefix)
    if not venue_names(prefix) and not read_latency(prefix):
        log.warning("%s; serving anyway (/healthz: 503 until a venue appears)", nothing_under(prefix))
    print(json.dumps({"url": f"http://{args.host}:{port}"}), flush=True)
    notifier = Notifier()
    notifier.ready(f"serving on port {port}")
    try:
        while not stop():
            notifier.watchdog(time.monotonic())
            time.sleep(0.2)
    finally:
        notifier.stopping()
        server.shutdown()
        server.server_close()
        collector.close()
    return 0
