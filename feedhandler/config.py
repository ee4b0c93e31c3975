"""The run configuration (TOML): what `fh run` starts and how. Every key is checked when the file is
loaded, and a bad one fails fast with a message naming it; defaults make a minimal file short.

    [run]                       prefix, capture_dir, capture_on_error, capture_max_bytes, capture_max_age_s,
                                instrument_cache, log_level, log_format, shm_group, writer_uid
    [aggregator]                cpu, stale_ms, idle, symbols, quote_aliases
    [venues.<name>]             a venue of feedhandler.venues.VENUES (`fh plan` lists what they open):
                                symbols, ws_url, rest_url, cpu, depth, book_depth, client, idle,
                                stale_after_s, ring_slots, snapshot_limit, rotate_after_s
    [sinks.<kafka|redis|clickhouse>]
                                url, in_aggregator, cpu, batch_max, linger_s, depth, snapshot_interval_s,
                                state_dir, retry_max_s, prefix, mode and transactional_id (kafka),
                                max_commands_per_s and trades_maxlen (redis), query_http (clickhouse)
"""
from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from shm.files import group_id

from .venues import VENUES
from .venues.base import PlanOptions

CLIENTS = ("picows", "websockets")
WORKER_IDLE = ("block", "spin")
AGGREGATOR_IDLE = ("block", "backoff", "spin")
KAFKA_MODES = ("at_least_once", "exactly_once")
LOG_LEVELS = ("debug", "info", "warning", "error")
PREFIX = re.compile(r"[A-Za-z0-9_-]{1,64}")
LOG_FORMATS = ("text", "json")
CAPTURE_ON_ERROR = ("drop", "fail")
LOOPBACK_ADDRESS = re.compile(r"^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost):(\d{1,5})$")
# ClickHouse wants few large inserts (each makes a part per table and day): at most one a second
SINK_DEFAULTS = {"clickhouse": {"batch_max": 262144, "linger_s": 1.0}}
SINK_URLS = {  # what each sink's url must look like
    "kafka": (re.compile(r"^[\w.-]+:\d+(,[\w.-]+:\d+)*$"), "host:port[,host:port...]"),
    "redis": (re.compile(r"^rediss?://[^/\s]+(/\d+)?$"), "redis://host:port[/db]"),
    "clickhouse": (re.compile(r"^(clickhouse://[^/\s]+(/\w+)?|chdb://\S+)$"),
                   "clickhouse://[user[:password]@]host:port[/database] or chdb://PATH"),
}


def shown_url(url: str) -> str:
    """`url` with its password masked, for errors, logs and stats files."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return url if not password else url.replace(f":{password}@", ":***@", 1)


class ConfigError(ValueError):
    """A configuration that cannot run, naming the file and key."""


@dataclass(frozen=True)
class VenueConfig:
    name: str
    symbols: tuple[str, ...]  # normalized BASE-QUOTE
    ws_url: str
    rest_url: str
    cpu: int | None = None
    depth: int = 20  # levels per side published in shared memory
    book_depth: int = 10  # the subscribed book depth, where the venue has one (limits.book_depths)
    client: str = "picows"
    idle: str = "block"  # block in epoll, or spin (a host with an isolated core)
    stale_after_s: float = 10.0  # nothing received (data, ping or pong) for this long: ping; again: reconnect
    ring_slots: int = 1 << 16
    snapshot_limit: int = 5000  # REST snapshot depth, where snapshots come by REST (limits.snapshot_limits)
    rotate_after_s: float = 0.0  # open a connection's successor after this long (0: the venue's lifetime rule)

    def plan_options(self) -> PlanOptions:
        return PlanOptions(self.ws_url, self.rest_url, self.book_depth, self.snapshot_limit)


@dataclass(frozen=True)
class AggregatorConfig:
    enabled: bool = True
    cpu: int | None = None
    stale_ms: float = 5000.0  # a venue quote older than this is excluded from the NBBO (0: never)
    idle: str = "backoff"
    symbols: tuple[str, ...] = ()  # empty: every symbol some venue carries
    quote_aliases: dict[str, str] = field(default_factory=dict)  # e.g. {"USDT": "USD"}; off by default
    ring_slots: int = 1 << 16


@dataclass(frozen=True)
class SinkConfig:
    name: str  # kafka | redis | clickhouse
    url: str
    in_aggregator: bool = False  # a thread of the aggregator process instead of a process of its own
    cpu: int | None = None
    batch_max: int = 4096  # records read from the rings per delivery
    linger_s: float = 0.0  # after a delivery, wait up to this long for batch_max records to gather
    depth: int = 10  # levels per side in book snapshots
    snapshot_interval_s: float = 5.0  # also snapshot every valid book this often (0: on change only)
    state_dir: str = ".fh/sinks"  # acknowledged ring positions (sinks that keep them locally)
    retry_max_s: float = 5.0  # cap of the reconnect backoff while the service is down
    prefix: str = "fh"  # topic prefix (kafka), key prefix (redis)
    mode: str = "at_least_once"  # kafka: at_least_once | exactly_once
    transactional_id: str = ""  # kafka exactly_once: empty: <prefix>-sink-kafka-<host name>
    max_commands_per_s: int = 50_000  # redis: conflate to stay within this
    trades_maxlen: int = 100_000  # redis: the trades stream keeps about this many
    query_http: str = ""  # clickhouse on chdb://: also serve read-only queries over HTTP on this loopback host:port


@dataclass(frozen=True)
class RunConfig:
    prefix: str = "fh"
    capture_dir: str = ""  # empty: no capture files
    capture_on_error: str = "drop"  # a failed capture write: drop (keep the feed, retry a new file) | fail (exit)
    capture_max_bytes: int = 0  # retention: a venue's capture files in capture_dir beyond this total (0: no limit)
    capture_max_age_s: float = 0.0  # retention: capture files older than this (0: no limit)
    instrument_cache: str = ""  # empty: ~/.cache/fh/instruments
    log_level: str = "info"  # FH_LOG_LEVEL wins
    log_format: str = "text"  # text | json (one JSON object per line); FH_LOG_FORMAT wins
    shm_group: str = ""  # segments, latency and stats files readable by this group (0640); empty: 0600
    writer_uid: int | None = None  # readers trust segments of this uid; None: their own
    venues: dict[str, VenueConfig] = field(default_factory=dict)
    aggregator: AggregatorConfig = field(default_factory=AggregatorConfig)
    sinks: dict[str, SinkConfig] = field(default_factory=dict)
    source: str = "<defaults>"


def _section(where: str, table: Any, known: set[str]) -> dict:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    return table


def _typed(where: str, key: str, value: Any, kind: type, choices: tuple = ()) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
    if kind is float and not math.isfinite(value):  # TOML has nan and inf
        raise ConfigError(f"{where}.{key}: must be a finite number, got {value!r}")
    if choices and value not in choices:
        raise ConfigError(f"{where}.{key}: must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def _group(where: str, key: str, value: Any) -> str:
    group = _typed(where, key, value, str)
    if group:
        try:
            group_id(group)
        except ValueError as exc:
            raise ConfigError(f"{where}.{key}: {exc}") from None
    return group


def _uid(where: str, key: str, value: Any) -> int | None:
    if value is None:
        return None
    uid = _typed(where, key, value, int)
    if uid < 0:
        raise ConfigError(f"{where}.{key}: a uid is >= 0, got {uid}")
    return uid


def _not_negative(where: str, key: str, value: Any, kind: type) -> Any:
    value = _typed(where, key, value, kind)
    if not value >= 0:  # NaN too
        raise ConfigError(f"{where}.{key}: must be >= 0 (0: no limit), got {value!r}")
    return value


def _cpu(where: str, value: Any) -> int | None:
    if value is None:
        return None
    cpu = _typed(where, "cpu", value, int)
    available = sorted(os.sched_getaffinity(0))
    if cpu not in available:
        raise ConfigError(f"{where}.cpu: CPU {cpu} is not available to this process (have {available})")
    return cpu


def _prefix(value: Any) -> str:
    """The shared-memory name prefix: files are /dev/shm/<prefix>.<name>, so no '/' and no '.'."""
    prefix = _typed("run", "prefix", value, str)
    if not PREFIX.fullmatch(prefix):
        raise ConfigError(f"run.prefix: {prefix!r} must be 1-64 of A-Z a-z 0-9 _ - (it names files in /dev/shm)")
    return prefix


def _symbols(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ConfigError(f"{where}.symbols: expected a list of BASE-QUOTE strings, got {value!r}")
    for symbol in value:
        base, dash, quote = symbol.partition("-")
        if not (dash and base and quote and symbol == symbol.upper()):
            raise ConfigError(f"{where}.symbols: {symbol!r} is not a normalized BASE-QUOTE symbol (e.g. BTC-USDT)")
    return tuple(value)


def _venue(name: str, table: Any) -> VenueConfig:
    where = f"venues.{name}"
    if name not in VENUES:
        raise ConfigError(f"{where}: unknown venue (known: {', '.join(VENUES)})")
    known = {f.name for f in fields(VenueConfig)} - {"name"}
    table = _section(where, table, known)
    if "symbols" not in table or not table["symbols"]:
        raise ConfigError(f"{where}.symbols: required, at least one symbol")
    venue = VENUES[name]
    depth = _typed(where, "depth", table.get("depth", 20), int)
    ring_slots = _typed(where, "ring_slots", table.get("ring_slots", 1 << 16), int)
    if not 1 <= depth <= 5000:
        raise ConfigError(f"{where}.depth: must be 1..5000, got {depth}")
    if ring_slots < 1024 or ring_slots & (ring_slots - 1):
        raise ConfigError(f"{where}.ring_slots: must be a power of two >= 1024, got {ring_slots}")
    depths = venue.limits.book_depths  # default: 10, or the first depth a venue serves where 10 is not one
    book_depth = _typed(where, "book_depth", table.get("book_depth", 10 if 10 in depths or not depths else depths[0]),
                        int, depths)
    stale = _typed(where, "stale_after_s", table.get("stale_after_s", 10.0), float)
    if stale <= 0:
        raise ConfigError(f"{where}.stale_after_s: must be > 0, got {stale}")
    rotate = _typed(where, "rotate_after_s", table.get("rotate_after_s", 0.0), float)
    if rotate < 0 or venue.limits.lifetime_s and rotate >= venue.limits.lifetime_s:
        raise ConfigError(f"{where}.rotate_after_s: must be 0 (the venue's rule) or between 0 and the "
                          f"{venue.limits.lifetime_s:.0f} s connection lifetime, got {rotate}")
    return VenueConfig(
        name=name, symbols=_symbols(where, table["symbols"]),
        ws_url=_typed(where, "ws_url", table.get("ws_url", venue.ws_url), str),
        rest_url=_typed(where, "rest_url", table.get("rest_url", venue.rest_url), str),
        cpu=_cpu(where, table.get("cpu")), depth=depth, book_depth=book_depth,
        client=_typed(where, "client", table.get("client", "picows"), str, CLIENTS),
        idle=_typed(where, "idle", table.get("idle", "block"), str, WORKER_IDLE),
        stale_after_s=stale, ring_slots=ring_slots,
        snapshot_limit=_typed(where, "snapshot_limit",  # default: the deepest the venue serves
                              table.get("snapshot_limit", max(venue.limits.snapshot_limits, default=5000)), int,
                              venue.limits.snapshot_limits),
        rotate_after_s=rotate,
    )


def _aggregator(table: Any) -> AggregatorConfig:
    where = "aggregator"
    table = _section(where, table, {f.name for f in fields(AggregatorConfig)})
    aliases = table.get("quote_aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()):
        raise ConfigError(f"{where}.quote_aliases: expected a table of QUOTE = \"QUOTE\" strings")
    stale = _typed(where, "stale_ms", table.get("stale_ms", 5000.0), float)
    if stale < 0:
        raise ConfigError(f"{where}.stale_ms: must be >= 0 (0 disables), got {stale}")
    ring_slots = _typed(where, "ring_slots", table.get("ring_slots", 1 << 16), int)
    if ring_slots < 1024 or ring_slots & (ring_slots - 1):
        raise ConfigError(f"{where}.ring_slots: must be a power of two >= 1024, got {ring_slots}")
    return AggregatorConfig(
        enabled=_typed(where, "enabled", table.get("enabled", True), bool), cpu=_cpu(where, table.get("cpu")),
        stale_ms=stale, idle=_typed(where, "idle", table.get("idle", "backoff"), str, AGGREGATOR_IDLE),
        symbols=_symbols(where, table.get("symbols", [])), quote_aliases=dict(aliases), ring_slots=ring_slots)


def _sink(name: str, table: Any) -> SinkConfig:
    where = f"sinks.{name}"
    if name not in SINK_URLS:
        raise ConfigError(f"{where}: unknown sink (known: {', '.join(SINK_URLS)})")
    table = _section(where, table, {f.name for f in fields(SinkConfig)} - {"name"})
    if "url" not in table:
        raise ConfigError(f"{where}.url: required ({SINK_URLS[name][1]})")
    url = _typed(where, "url", table["url"], str)
    pattern, shape = SINK_URLS[name]
    if not pattern.match(url):
        raise ConfigError(f"{where}.url: {shown_url(url)!r} is not {shape}")
    defaults = SinkConfig(name, url)
    values = dict(SINK_DEFAULTS.get(name, {}))
    for f in fields(SinkConfig):
        if f.name in ("name", "url", "cpu") or f.name not in table:
            continue
        default = getattr(defaults, f.name)
        values[f.name] = _typed(where, f.name, table[f.name], type(default), KAFKA_MODES if f.name == "mode" else ())
        if isinstance(default, (int, float)) and not isinstance(default, bool) and values[f.name] < 0:
            raise ConfigError(f"{where}.{f.name}: must be >= 0, got {values[f.name]}")
    for key in ("batch_max", "depth", "max_commands_per_s", "trades_maxlen", "retry_max_s"):
        if values.get(key) == 0:
            raise ConfigError(f"{where}.{key}: must be > 0")
    if values.get("query_http"):
        _query_http(where, url, values["query_http"])
    return SinkConfig(name, url, cpu=_cpu(where, table.get("cpu")), **values)


def _query_http(where: str, url: str, address: str) -> None:
    """query_http: a loopback host:port, for an embedded (chdb://) store only."""
    if not url.startswith("chdb://"):
        raise ConfigError(f"{where}.query_http: only for a chdb:// store (a ClickHouse server has its own HTTP port)")
    match = LOOPBACK_ADDRESS.match(address)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ConfigError(f"{where}.query_http: {address!r} is not a loopback host:port such as 127.0.0.1:8123 "
                          "(the queries are not authenticated)")


def parse_config(data: dict, source: str = "<memory>") -> RunConfig:
    """A RunConfig from parsed TOML; raises ConfigError naming the first bad key."""
    try:
        data = _section("config", data, {"run", "aggregator", "venues", "sinks"})
        run = _section("run", data.get("run", {}), {"prefix", "capture_dir", "capture_on_error", "capture_max_bytes",
                                                     "capture_max_age_s", "instrument_cache", "log_level",
                                                     "log_format", "shm_group", "writer_uid"})
        venues_table = _section("venues", data.get("venues", {}), set(VENUES))
        if not venues_table:
            raise ConfigError(f"venues: configure at least one venue ([venues.<name>], one of {', '.join(VENUES)})")
        return RunConfig(
            prefix=_prefix(run.get("prefix", "fh")),
            capture_dir=_typed("run", "capture_dir", run.get("capture_dir", ""), str),
            capture_on_error=_typed("run", "capture_on_error", run.get("capture_on_error", "drop"), str,
                                    CAPTURE_ON_ERROR),
            capture_max_bytes=_not_negative("run", "capture_max_bytes", run.get("capture_max_bytes", 0), int),
            capture_max_age_s=_not_negative("run", "capture_max_age_s", run.get("capture_max_age_s", 0.0), float),
            instrument_cache=_typed("run", "instrument_cache", run.get("instrument_cache", ""), str),
            log_level=_typed("run", "log_level", run.get("log_level", "info"), str, LOG_LEVELS),
            log_format=_typed("run", "log_format", run.get("log_format", "text"), str, LOG_FORMATS),
            shm_group=_group("run", "shm_group", run.get("shm_group", "")),
            writer_uid=_uid("run", "writer_uid", run.get("writer_uid")),
            venues={name: _venue(name, table) for name, table in venues_table.items()},
            aggregator=_aggregator(data.get("aggregator", {})),
            sinks={name: _sink(name, table) for name, table in _section("sinks", data.get("sinks", {}),
                                                                         set(SINK_URLS)).items()},
            source=source)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: str) -> RunConfig:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, path)
