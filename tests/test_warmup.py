"""`fh warmup` compiles every command's kernels ahead into numba's on-disk cache, kernel groups in
parallel processes, with progress per group; commands that compile say so first; and numba's cache
stays whole when several processes fill it at once."""
from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import textwrap
import time
from functools import partial

import numpy as np
import pytest
from numba import njit

from conftest import REPO
from feedhandler.config import load_config
from feedhandler.venues import VENUES
from shm.jitcache import entry
from tools.warmup import Group, WarmupError, groups, protocols, run

FH = [sys.executable, "-m", "tools.cli"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")

KERNEL = """
from numba import njit


@njit(cache=True)
def ident(x):
    return x
"""

DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
RANKS = range(1, 7)

FILL = """
import sys
import time

import numpy as np

import shm  # what every fh process imports first
import kern

start, dtype = float(sys.argv[1]), sys.argv[2]
time.sleep(max(0.0, start - time.time()))
for rank in {ranks}:
    kern.ident(np.zeros((1,) * rank, dtype))
"""

CHECK = """
import json

import numpy as np

import kern

wrong = []
for dtype in {dtypes}:
    for rank in {ranks}:
        x = np.full((1,) * rank, 7, dtype)
        y = kern.ident(x)
        if y.dtype != x.dtype or y.shape != x.shape or not (y == 7).all():
            wrong.append(f"{{dtype}}/{{rank}}")
print(json.dumps({{"misses": sum(kern.ident.stats.cache_misses.values()), "wrong": wrong}}))
"""


def test_a_cache_filled_by_processes_at_once_holds_every_signature_each_with_its_own_code(tmp_path):
    """numba names a function's data files by an unlocked read-modify-write of its index: without
    shm.jitcache's lock, processes saving at once lose entries or map one signature to another's code."""
    (tmp_path / "kern.py").write_text(KERNEL)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    start = time.time() + 8  # every process imported and waiting, then all compile at once
    fills = [subprocess.Popen([sys.executable, "-c", FILL.format(ranks=list(RANKS)), str(start), dtype], env=env,
                              stderr=subprocess.PIPE, text=True) for dtype in DTYPES]
    for fill in fills:
        assert fill.wait(300) == 0, fill.stderr.read()
    check = subprocess.run([sys.executable, "-c", CHECK.format(dtypes=DTYPES, ranks=list(RANKS))], env=env,
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout) == {"misses": 0, "wrong": []}


def _warmup_through_a_terminal() -> str:
    """`fh warmup` as a terminal shows it: the screen's text, escape sequences removed."""
    parent, child = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100"}
    process = subprocess.Popen([*FH, "warmup"], cwd=REPO, env=env, stdin=child, stdout=child, stderr=child)
    os.close(child)
    output = b""
    while True:
        try:
            chunk = os.read(parent, 1 << 16)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(parent)
    assert process.wait(600) == 0, output.decode(errors="replace")
    return ANSI.sub("", output.decode(errors="replace"))


@njit(cache=False)
def _scaled(values, by):
    values *= by
    return values.sum()


def test_a_kernels_entry_is_its_code_compiled_for_those_argument_types_and_computes_what_the_kernel_does():
    values = np.arange(4, dtype=np.int64)
    call = entry(_scaled, values, 3)
    assert call(values, 3) == 18 and list(values) == [0, 3, 6, 9]  # the same arrays, changed in place
    assert _scaled(values.copy(), 3) == call(values.copy(), 3)
    assert len(_scaled.signatures) == 1  # the dispatcher found the entry's compiled code: one signature
    assert entry(_scaled.py_func, values, 3) is _scaled.py_func  # no JIT: the Python function itself


def test_warmup_shows_each_kernel_group_starting_and_done_on_a_pipe():
    result = subprocess.run([*FH, "warmup"], cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr
    names = [group.name for group in groups()]
    assert {venue.name for venue in protocols()} | {"aggregator", "sinks", "readers", "replay"} <= set(names)
    lines = result.stderr.splitlines()
    for name in names:
        started = lines.index(f"fh warmup: {name}: started")
        done = next(k for k, line in enumerate(lines)
                    if re.fullmatch(rf"fh warmup: {name}: done in \d+\.\d s, (cached|\d+ kernels compiled)", line))
        assert started < done
    assert re.fullmatch(rf"fh warmup: {len(names)} kernel groups ready in \d+\.\d s \(\d+ processes\), \d+ kernels "
                        "compiled, the others loaded from the cache", lines[-1])


def _takes(seconds: float, prefix: str) -> None:
    time.sleep(seconds)


def _breaks(prefix: str) -> None:
    raise ValueError("no such kernel")


def test_a_group_starts_once_the_groups_it_needs_are_done_whichever_finishes_last(capsys):
    # more processes than groups: the moment the slower group it needs is done, nothing else runs
    done = run(4, [Group("quick", partial(_takes, 0.1)), Group("slow", partial(_takes, 0.6)),
                   Group("after", partial(_takes, 0.0), ("quick", "slow"))])
    assert set(done["groups_s"]) == {"quick", "slow", "after"}, capsys.readouterr().err
    lines = capsys.readouterr().err.splitlines()
    assert lines.index("fh warmup: after: started") > next(k for k, line in enumerate(lines)
                                                          if line.startswith("fh warmup: slow: done"))


def test_a_group_that_fails_is_reported_with_its_error_and_the_groups_after_it_are_named_not_started(capsys):
    with pytest.raises(WarmupError, match="kernel groups failed: broken, after-broken, after-that"):
        run(3, [Group("broken", _breaks), Group("fine", partial(_takes, 0.0)),
                Group("after-broken", partial(_takes, 0.0), ("broken", "fine")),
                Group("after-that", partial(_takes, 0.0), ("after-broken",))])
    err = capsys.readouterr().err
    assert "fh warmup: broken failed:" in err and "ValueError: no such kernel" in err, err
    assert "fh warmup: fine: done in" in err, err
    assert "fh warmup: after-broken: not started, needs broken, which failed" in err, err
    assert "fh warmup: after-that: not started, needs after-broken, which failed" in err, err
    assert "after-broken: started" not in err and "after-that: started" not in err, err
    assert "fh warmup: 1 kernel groups ready" in err, err


def test_warmup_for_a_config_compiles_what_fh_run_of_it_needs_and_nothing_else():
    result = subprocess.run([*FH, "warmup", "-c", "configs/sim.toml"], cwd=REPO, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stderr
    started = set(re.findall(r"^fh warmup: (\S+): started$", result.stderr, re.M))
    feeds = {VENUES[name].feed for name in load_config(str(REPO / "configs" / "sim.toml")).venues}
    assert started == {v.name for v in protocols() if v.feed in feeds} | {"aggregator", "readers", "sinks"}


def test_warmup_for_a_broken_config_names_it_and_compiles_nothing(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[venues.nowhere]\nsymbols = [\"BTC-USD\"]\n")
    result = subprocess.run([*FH, "warmup", "-c", str(broken)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "nowhere" in result.stderr and "started" not in result.stderr, result.stderr


def test_warmup_shows_each_kernel_group_done_with_its_time_on_a_terminal():
    screen = _warmup_through_a_terminal()
    for group in groups():
        assert re.search(rf"{re.escape(group.name)}\s+\d+:\d\d:\d\d done, (cached|\d+ kernels compiled)", screen), screen
    assert re.search(rf"fh warmup: {len(groups())} kernel groups ready in \d+\.\d s", screen), screen


def test_replay_and_demo_say_they_load_kernels_before_their_work(captures, tmp_path, shm_prefix):
    from tools.importers.cryptofeed import import_recordings
    capture = tmp_path / "k.fhcap"
    import_recordings([str(captures / "kraken-v1-2021" / "KRAKEN")], str(capture))
    for command in (["replay", str(capture), "--shm-prefix", shm_prefix], ["demo", "--prefix", shm_prefix,
                                                                          "--duration", "0.2"]):
        result = subprocess.run([*FH, *command, "--json"], cwd=REPO, capture_output=True, text=True, timeout=1200)
        assert result.returncode == 0, result.stderr
        lines = result.stderr.splitlines()
        loading = lines.index(f"fh {command[0]}: loading kernels (a cold numba cache compiles them for minutes; "
                              "`fh warmup` does it ahead)")
        assert re.fullmatch(rf"fh {command[0]}: kernels ready in \d+\.\d s", lines[loading + 1])
        assert json.loads(result.stdout)


ENTRY_POINTS = """
import json
import sys

from numba.core import event

compiled = []


class Compiles(event.Listener):
    def on_start(self, ev):
        dispatcher = ev.data["dispatcher"]
        compiled.append(f"{{dispatcher.py_func.__module__}}.{{dispatcher.py_func.__qualname__}}{{ev.data['args']}}")

    def on_end(self, ev):
        pass


event.register("numba:compile", Compiles())  # fired only where numba compiles: a cache miss

from feedhandler.config import load_config
from feedhandler.venues import VENUES
from feedhandler.warm import drive
from shm.reader import VenueReader
from tests.sinks import Reference, at_heads, replayed, run_config, run_sink_until
from tools import cli
from workers import aggregator

prefix, captures, tmp = {prefix!r}, {captures!r}, {tmp!r}
for venue in VENUES.values():  # each venue worker's first step (workers/venue.py)
    drive(venue, prefix, private=True).close()
aggregator.warm(load_config("configs/sim.toml"), prefix)  # the aggregator's, for make run's venues
venue = replayed(__import__("pathlib").Path(captures), __import__("pathlib").Path(tmp), prefix)  # fh replay
assert cli.main(["demo", "--prefix", prefix, "--duration", "0.2"]) == 0
with VenueReader(venue, prefix=prefix) as reader:  # a strategy
    print(reader.book(0).levels_text("bids")[:1], len(reader.events("oldest").poll()), file=sys.stderr)
ref = Reference(prefix, venue)
for name, url in {sinks!r}.items():
    state = {{"state_dir": f"{{tmp}}/state", "snapshot_interval_s": 0}}
    run_sink_until(run_config(prefix, [venue], {{name: {{**state, "url": url}}}}), name, at_heads(ref))
print(json.dumps(compiled))
"""


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.redis
def test_after_warmup_into_a_fresh_cache_the_commands_compile_nothing(captures, service, tmp_path, shm_prefix):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "PYTHONPATH": str(REPO)}
    warmup = subprocess.run([*FH, "warmup"], cwd=REPO, env=env, capture_output=True, text=True, timeout=3000)
    assert warmup.returncode == 0, warmup.stderr
    sinks = {"kafka": service("kafka").url, "redis": service("redis").url}
    script = ENTRY_POINTS.format(prefix=shm_prefix, captures=str(captures), tmp=str(tmp_path), sinks=sinks)
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=1200)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1]) == [], "compiled at first use, not by fh warmup"
