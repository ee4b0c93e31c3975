from setuptools import find_packages, setup

setup(
    name="fh",
    version="0.1.0",
    description="Low-latency market-data feed handler: numba L2 books in shared memory",
    python_requires=">=3.11,<3.14",
    packages=find_packages(include=["feedhandler", "feedhandler.*", "shm", "shm.*", "workers", "workers.*",
                                    "tools", "tools.*"]),
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
    ],
    extras_require={
        "test": ["pytest>=8,<10", "hypothesis>=6.100,<7"],
    },
    entry_points={"console_scripts": ["fh=tools.cli:main"]},
)
