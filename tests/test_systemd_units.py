"""The units in systemd/ pass `systemd-analyze verify` (with their shared drop-in) and start real
`fh` subcommands."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "systemd"
INSTALLED_FH = "/opt/fh/venv/bin/fh"
FH = str(Path(sys.executable).parent / "fh")
INSTANCES = ["fh-venue@binance.service", "fh-venue@coinbase.service", "fh-venue@kraken.service",
             "fh-aggregator.service", "fh-sink@kafka.service", "fh-sink@redis.service",
             "fh-sink@clickhouse.service", "fh-metrics.service"]


@pytest.fixture
def unit_dir(tmp_path) -> Path:
    """The units as installed, with this checkout's `fh` where the install puts it."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: `make services` installs Debian's systemd")
    target = tmp_path / "units"
    shutil.copytree(UNITS, target)
    for unit in target.rglob("*"):
        if unit.is_file():
            unit.write_text(unit.read_text().replace(INSTALLED_FH, FH))
    return target


@pytest.mark.parametrize("unit", INSTANCES + ["fh.target"])
def test_systemd_analyze_verify_passes(unit, unit_dir):
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit_dir / unit)], capture_output=True,
                            text=True, env={"SYSTEMD_UNIT_PATH": f"{unit_dir}:", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_every_service_shares_the_drop_in_with_the_watchdog_and_hardening():
    common = (UNITS / "fh-.service.d" / "10-common.conf").read_text()
    for setting in ("Type=notify", "WatchdogSec=", "Restart=always", "StartLimitBurst=", "NoNewPrivileges=yes",
                    "ProtectSystem=strict", "PrivateTmp=yes"):
        assert setting in common
    assert "PrivateDevices=yes" not in common and "RemoveIPC=yes" not in common  # /dev/shm stays the host's
    assert all(unit.name.startswith("fh-") for unit in UNITS.glob("*.service"))


@pytest.mark.parametrize("unit", INSTANCES)
def test_the_command_of_each_unit_is_a_real_fh_subcommand(unit, tmp_path):
    template = UNITS / re.sub(r"@[^.]+", "@", unit)
    instance = unit.split("@")[1].split(".")[0] if "@" in unit else ""
    command = re.search(r"^ExecStart=(.+)$", template.read_text(), re.M).group(1).replace("%i", instance).split()
    assert command[0] == INSTALLED_FH
    result = subprocess.run([FH, *command[1:], "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
