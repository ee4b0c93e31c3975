# syntax=docker/dockerfile:1
#
# fh: the feed handler image. Two stages on one pinned base:
#   builder  builds fh's wheel and installs it with its dependencies (binary wheels only) into the
#            virtual environment /opt/venv, which has no pip of its own;
#   runtime  the base image, /opt/venv copied from the builder, the configs in /etc/fh, and a numba
#            cache compiled at build time by `fh warmup`. No compilers; runs as user fh (uid 10001).
#
#   docker build -t fh:0.1.0 .
#
# Running it
#   Shared memory. Every segment (/dev/shm/<prefix>.<venue>, /dev/shm/<prefix>.nbbo) lives in /dev/shm,
#   and strategies map them from there; a container's own /dev/shm is private and 64 MB, and the
#   live config's four segments take ~35 MB. Share the host's with --ipc=host (co-located strategies,
#   on the host or in other --ipc=host containers, see the segments), or keep them among containers:
#   --ipc=shareable --shm-size=1g on the first, --ipc=container:<first> on the others. A lone
#   container (`fh run` with its readers inside it) needs only --shm-size=1g. Segments are mode 0644
#   and owned by uid 10001: readers of any uid can map them.
#   CPU pinning. Give each container the cores it may use with --cpuset-cpus and set the same core as
#   `cpu = N` in its [venues.NAME], [aggregator] or [sinks.NAME] section: the process pins itself to
#   that core, which must be in its cpuset (host numbering; the config is checked at start). One core
#   per venue worker and the aggregator, the sinks and the OS on the rest, as with the systemd units.
#   Network. --network host spares every frame the bridge and its NAT (lower, steadier latency); the
#   image listens on nothing.
#   Stopping. `fh run` gives its children 10 s after SIGTERM: --stop-timeout 20, and --init to reap
#   any orphan (fh itself handles SIGTERM as PID 1).
#   State. Captures (live.toml: captures/ in the working directory, /var/lib/fh/captures), sink state and the instrument cache go under
#   /var/lib/fh, the working directory: mount a volume there. Logs are JSON lines on stderr
#   (FH_LOG_FORMAT=json; -e FH_LOG_FORMAT=text for people, -e FH_LOG_LEVEL=debug for more).
#   Health and metrics. `fh metrics` serves Prometheus /metrics and /healthz (200 while every venue
#   writer is alive and every book valid, else 503) from the shared memory: run it as a container of
#   its own next to the pipeline (--ipc=host, `metrics --host 0.0.0.0 --port 9464`) and probe that.
#   The image has no HEALTHCHECK because its default command, `fh run`, serves no HTTP itself.
#
#   The whole pipeline, supervised by `fh run` (the default command, configs/live.toml):
#     docker run -d --name fh --init --ipc=host --network host --stop-timeout 20 \
#         -v fh-state:/var/lib/fh fh:0.1.0
#   One container per process, as the systemd units run them, with your config as /etc/fh/fh.toml:
#     docker run -d --name fh-binance --init --ipc=host --network host --cpuset-cpus 1 \
#         -v /etc/fh/fh.toml:/etc/fh/fh.toml:ro -v fh-state:/var/lib/fh \
#         fh:0.1.0 worker binance -c /etc/fh/fh.toml                      # [venues.binance] cpu = 1
#     docker run -d --name fh-aggregator --init --ipc=host --network host --cpuset-cpus 3 \
#         -v /etc/fh/fh.toml:/etc/fh/fh.toml:ro -v fh-state:/var/lib/fh \
#         fh:0.1.0 aggregator -c /etc/fh/fh.toml                          # [aggregator] cpu = 3
#     docker run -d --name fh-sink-kafka --init --ipc=host --network host --cpuset-cpus 0 \
#         -v /etc/fh/fh.toml:/etc/fh/fh.toml:ro -v fh-state:/var/lib/fh \
#         fh:0.1.0 sink kafka -c /etc/fh/fh.toml                          # [sinks.kafka]
#     docker run -d --name fh-metrics --init --ipc=host --network host --cpuset-cpus 0 \
#         -v /etc/fh/fh.toml:/etc/fh/fh.toml:ro -v fh-state:/var/lib/fh \
#         fh:0.1.0 metrics -c /etc/fh/fh.toml --host 0.0.0.0 --port 9464  # /metrics, /healthz
#   Watching: docker run --rm -it --ipc=host fh:0.1.0 top --prefix fh
#
# The numba cache. `fh warmup` compiles every kernel of the live pipeline into NUMBA_CACHE_DIR
# (/var/cache/fh/numba, owned by fh) at build time, so a container starts hot instead of spending
# minutes compiling. numba compiles for the build host's CPU: on a host with another CPU model the
# kernels are compiled again at the first start (and cached in the container). To build one image
# for a mixed fleet, add `ENV NUMBA_CPU_NAME=generic` before `RUN fh warmup`, at some cost in speed.
#
# The base image is pinned to a Python patch release and a Debian release (the Python the README's
# benchmarks were measured with). To pin it by digest as well, resolve the digest where a registry is
# reachable, e.g. `docker buildx imagetools inspect python:3.11.7-slim-bookworm` (or `docker pull` it
# and `docker inspect --format '{{index .RepoDigests 0}}' python:3.11.7-slim-bookworm`), and write
#     FROM python:3.11.7-slim-bookworm@sha256:<that digest> AS base
# Both stages start from `base`, so that one line pins them both.

FROM python:3.11.7-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1


FROM base AS builder
WORKDIR /src
COPY setup.py ./
COPY shm/ shm/
COPY feedhandler/ feedhandler/
COPY workers/ workers/
COPY tools/ tools/
COPY clickhouse/ clickhouse/
# --only-binary: every dependency must come as a wheel, so no compiler is needed (nor installed);
# pip byte-compiles what it installs, so the runtime never writes .pyc files. The clickhouse/*.sql
# data files go to /opt/venv/share/fh/clickhouse, where the ClickHouse sink looks for them.
RUN python -m venv --without-pip /opt/venv \
 && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && pip --python /opt/venv/bin/python install --no-cache-dir --only-binary=:all: /wheels/fh-*.whl


FROM base AS runtime
LABEL org.opencontainers.image.title="fh" \
      org.opencontainers.image.description="Low-latency market-data feed handler: numba L2 books in shared memory" \
      org.opencontainers.image.version="0.1.0"
RUN groupadd --system --gid 10001 fh \
 && useradd --system --no-log-init --uid 10001 --gid fh --home-dir /var/lib/fh --shell /usr/sbin/nologin fh \
 && install -d -o fh -g fh -m 0750 /var/lib/fh /var/cache/fh /var/cache/fh/numba
COPY --from=builder /opt/venv /opt/venv
COPY configs/ /etc/fh/
ENV PATH=/opt/venv/bin:$PATH \
    NUMBA_CACHE_DIR=/var/cache/fh/numba \
    FH_LOG_FORMAT=json
# Numeric, so that a runtime (Kubernetes' runAsNonRoot) can tell it is not root without /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/fh
# Compile the kernels into the cache, as fh (who owns it), without any service: the venues are driven
# by the simulator's encoders through segments in /dev/shm, which are removed again.
RUN fh warmup --json

ENTRYPOINT ["fh"]
CMD ["run", "-c", "/etc/fh/live.toml"]
