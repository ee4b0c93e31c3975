"""REST requests for a venue worker, off the event loop: the socket read loop never waits on HTTP.

Requests run in daemon threads, `threads` at a time (urllib; the GIL is released while waiting on
the network): a worker told to stop while a venue is slow to answer exits at once instead of joining
the request's thread for up to its timeout, as a ThreadPoolExecutor's threads are at exit.
A request-weight budget per minute is kept (Binance: 6000, a 5000-level snapshot weighs 250), the
venue's own count (`X-MBX-USED-WEIGHT-1M`) is believed when it is higher, and 429 / 418 pause every
request for the venue's `Retry-After` (at least 5 s / 60 s). A body is read up to `max_body` bytes:
a larger one is an error, never buffered.
"""
from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

MAX_BODY = 64 << 20  # Coinbase's full-depth REST book is a few MB


@dataclass(frozen=True)
class RestResponse:
    url: str
    status: int
    headers: dict[str, str]
    body: bytes
    ts_recv: int


class RestError(Exception):
    pass


class RestClient:
    def __init__(self, weight_per_minute: int = 6000, timeout_s: float = 15.0, threads: int = 2,
                 max_body: int = MAX_BODY):
        self.weight_per_minute = weight_per_minute
        self.timeout_s = timeout_s
        self.max_body = max_body
        self._slots = asyncio.Semaphore(threads)
        self._window = (0, 0)  # (minute, weight used in it)
        self.paused_until = 0.0  # monotonic
        self.requests = 0
        self.throttled = 0  # 429 and 418 answers

    def _fetch(self, url: str) -> RestResponse:
        request = urllib.request.Request(url, headers={"User-Agent": "fh/0.1", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body, status, headers = response.read(self.max_body + 1), response.status, dict(response.headers)
        except urllib.error.HTTPError as exc:
            body, status, headers = exc.read(self.max_body + 1), exc.code, dict(exc.headers or {})
        if len(body) > self.max_body:
            raise RestError(f"GET {url}: HTTP {status}, body over {self.max_body} bytes, not read")
        return RestResponse(url, status, headers, body, time.time_ns())

    def _used(self) -> int:
        minute = int(time.time() // 60)
        return self._window[1] if self._window[0] == minute else 0

    async def get(self, url: str, weight: int = 1) -> RestResponse:
        """GET `url` once the budget allows; raises RestError for anything but a 2xx answer."""
        while True:
            wait = self.paused_until - time.monotonic()
            if wait <= 0 and self._used() + weight > self.weight_per_minute:
                wait = 60.0 - time.time() % 60 + 0.05
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        self._window = (int(time.time() // 60), self._used() + weight)
        self.requests += 1
        try:
            async with self._slots:
                response = await _in_daemon_thread(self._fetch, url)
        except (OSError, ValueError) as exc:
            raise RestError(f"GET {url}: {exc}") from None
        reported = response.headers.get("X-MBX-USED-WEIGHT-1M") or response.headers.get("x-mbx-used-weight-1m")
        if reported and reported.isdigit() and int(reported) > self._used():
            self._window = (int(time.time() // 60), int(reported))
        if response.status in (418, 429):
            self.throttled += 1
            retry = response.headers.get("Retry-After") or response.headers.get("retry-after") or ""
            floor = 60.0 if response.status == 418 else 5.0
            self.paused_until = time.monotonic() + max(float(retry) if retry.isdigit() else floor, 1.0)
            raise RestError(f"GET {url}: {response.status}, paused {self.paused_until - time.monotonic():.0f} s")
        if not 200 <= response.status < 300:
            raise RestError(f"GET {url}: HTTP {response.status}: {response.body[:200]!r}")
        return response


async def _in_daemon_thread(fetch, url: str) -> RestResponse:
    """`fetch(url)` in a daemon thread; cancelling the wait abandons the thread (it ends with its
    request's timeout, or with the process)."""
    loop = asyncio.get_running_loop()
    outcome = loop.create_future()

    def settle(result: RestResponse | None, error: Exception | None) -> None:
        if outcome.done():  # cancelled
            return
        if error is None:
            outcome.set_result(result)
        else:
            outcome.set_exception(error)

    def run() -> None:
        try:
            result, error = fetch(url), None
        except Exception as exc:
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop is closed: nobody waits for this answer any more
            pass
    threading.Thread(target=run, name="rest", daemon=True).start()
    return await outcome
