"""Hostile local files: another user's segment, latency file or symlink planted under the prefix, a
non-UTF-8 symbol table, a symlink at a temporary file's name, a predictable code cache. fh must
neither read them as its writers' data nor write through them, and the monitoring tools must skip
and report them. Run as root, other users' files are made with chown to uid 65534 (nobody)."""
from __future__ import annotations

import json
import logging
import os
import stat
import threading
import urllib.request
from pathlib import Path

import numba
import pytest

from feedhandler.config import ConfigError, parse_config
from shm import jitcache
from shm.files import replace_file
from shm.latency import LatencyWriter, latency_path, read_latency
from shm.nbbo_reader import NbboReader
from shm.reader import VenueReader
from shm.segment import InstrumentSpec, Segment, SegmentError, SegmentWriter, segment_path
from tools.metrics import Collector, make_server
from tools.top import Top
from workers.process import apply_shm_access
from workers.sinks.runner import LocalPositions

SPEC = [InstrumentSpec("BTCUSDT", "BTC-USDT", 2, 5, 64)]
NOBODY = 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="making another user's file needs root (chown)")


def make_writer(prefix: str, name: str = "binance", **options) -> SegmentWriter:
    return SegmentWriter.create(prefix, name, SPEC, depth=5, ring_slots=64, **options)


def mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def a_group() -> tuple[str, int]:
    """A group of this host other than our own primary one (so a chgrp shows)."""
    import grp
    group = next(g for g in grp.getgrall() if g.gr_gid != os.getegid())
    return group.gr_name, group.gr_gid


# --- modes and groups -----------------------------------------------------------------------------

def test_segments_and_latency_files_are_private_to_their_writer_by_default(shm_prefix):
    with make_writer(shm_prefix) as writer:
        latency = LatencyWriter(shm_prefix, "binance", [("publish", "binance")])
        try:
            assert mode(writer.path) == 0o600 and mode(latency.path) == 0o600
        finally:
            latency.close(unlink=True)


@root_only
def test_shm_group_makes_them_readable_by_that_group_only(shm_prefix):
    name, gid = a_group()
    with make_writer(shm_prefix, group=name) as writer:
        latency = LatencyWriter(shm_prefix, "binance", [("publish", "binance")], group=name)
        try:
            for path in (writer.path, latency.path):
                assert (mode(path), os.stat(path).st_gid) == (0o640, gid)
        finally:
            latency.close(unlink=True)


def test_an_unknown_shm_group_is_refused_naming_it(shm_prefix):
    with pytest.raises(SegmentError, match="no group 'no-such-group-fh'"):
        make_writer(shm_prefix, group="no-such-group-fh")
    assert not os.path.exists(segment_path(shm_prefix, "binance"))


# --- readers refuse what their writer did not make --------------------------------------------------

@root_only
@pytest.mark.parametrize("attach", [lambda prefix: Segment(prefix, "binance"),
                                    lambda prefix: VenueReader("binance", prefix=prefix)])
def test_a_reader_refuses_a_segment_owned_by_another_user(shm_prefix, attach):
    with make_writer(shm_prefix) as writer:
        os.chown(writer.path, NOBODY, -1)
        with pytest.raises(SegmentError, match=f"{writer.path} is owned by uid {NOBODY}.*expected.*uid 0"):
            attach(shm_prefix)


@root_only
def test_an_nbbo_reader_refuses_an_nbbo_segment_owned_by_another_user(shm_prefix):
    with make_writer(shm_prefix, "nbbo", labels=("binance",)) as writer:
        os.chown(writer.path, NOBODY, -1)
        with pytest.raises(SegmentError, match=f"owned by uid {NOBODY}"):
            NbboReader(shm_prefix)


@root_only
def test_a_reader_told_the_writer_uid_accepts_that_owner_by_argument_or_environment(shm_prefix, monkeypatch):
    with make_writer(shm_prefix) as writer:
        os.chown(writer.path, NOBODY, -1)
        with VenueReader("binance", prefix=shm_prefix, writer_uid=NOBODY) as reader:
            assert reader.instruments[0].symbol == "BTC-USDT"
        monkeypatch.setenv("FH_SHM_WRITER_UID", str(NOBODY))
        Segment(shm_prefix, "binance").close()


def test_a_bad_writer_uid_in_the_environment_is_named(shm_prefix, monkeypatch):
    monkeypatch.setenv("FH_SHM_WRITER_UID", "-3")
    with make_writer(shm_prefix), pytest.raises(SegmentError, match="FH_SHM_WRITER_UID"):
        Segment(shm_prefix, "binance")


def test_a_reader_refuses_a_segment_others_may_write(shm_prefix):
    with make_writer(shm_prefix) as writer:
        os.chmod(writer.path, 0o666)
        with pytest.raises(SegmentError, match="writable by others"):
            Segment(shm_prefix, "binance")


def test_a_reader_does_not_follow_a_symlink_to_another_segment(shm_prefix):
    with make_writer(shm_prefix, "kraken"):
        os.symlink(segment_path(shm_prefix, "kraken"), segment_path(shm_prefix, "binance"))
        with pytest.raises(SegmentError, match="symbolic link"):
            Segment(shm_prefix, "binance")


def test_a_reader_refuses_a_fifo_at_once_instead_of_blocking_on_it(shm_prefix):
    os.mkfifo(segment_path(shm_prefix, "binance"), 0o600)
    with pytest.raises(SegmentError, match="not a regular file"):
        Segment(shm_prefix, "binance")


def test_a_non_utf8_symbol_table_is_a_segment_error_naming_the_file(shm_prefix):
    with make_writer(shm_prefix) as writer:
        writer.instruments["symbol"][0] = b"\xff\xfeBTC"
        with pytest.raises(SegmentError, match=f"{writer.path}: instrument 0 has a symbol that is not UTF-8"):
            VenueReader("binance", prefix=shm_prefix)


# --- writers neither follow nor take over what others planted ---------------------------------------

@root_only
def test_the_writer_refuses_a_file_another_user_planted_at_its_name(shm_prefix):
    path = segment_path(shm_prefix, "binance")
    with open(path, "wb") as f:
        f.write(b"planted")
    os.chown(path, NOBODY, -1)
    with pytest.raises(SegmentError, match=f"{path}.*owned by uid {NOBODY}"):
        make_writer(shm_prefix)
    assert Path(path).read_bytes() == b"planted"


def test_the_writer_does_not_follow_a_symlink_planted_at_its_name(shm_prefix, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.symlink(victim, segment_path(shm_prefix, "binance"))
    with pytest.raises(SegmentError, match="symbolic link"):
        make_writer(shm_prefix)
    assert victim.read_bytes() == b"precious"


def test_a_latency_writer_does_not_write_through_a_symlink_at_its_temporary_name(shm_prefix, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.symlink(victim, f"{latency_path(shm_prefix, 'binance')}.{os.getpid()}.new")
    latency = LatencyWriter(shm_prefix, "binance", [("publish", "binance")])
    try:
        assert victim.read_bytes() == b"precious"
        assert not os.path.islink(latency.path) and mode(latency.path) == 0o600
    finally:
        latency.close(unlink=True)


@root_only
def test_a_latency_writer_refuses_a_file_another_user_planted_at_its_name(shm_prefix):
    path = latency_path(shm_prefix, "binance")
    Path(path).write_bytes(b"planted")
    os.chown(path, NOBODY, -1)
    with pytest.raises(SegmentError, match=f"{path}.*owned by uid {NOBODY}"):
        LatencyWriter(shm_prefix, "binance", [("publish", "binance")])
    assert Path(path).read_bytes() == b"planted"


@root_only
def test_latency_readers_skip_and_report_another_users_latency_file(shm_prefix):
    latency = LatencyWriter(shm_prefix, "binance", [("publish", "binance")])
    try:
        os.chown(latency.path, NOBODY, -1)
        refused: dict[str, str] = {}
        assert read_latency(shm_prefix, refused=refused) == []
        assert f"owned by uid {NOBODY}" in refused[latency.path]
    finally:
        latency.close(unlink=True)


def test_replacing_a_file_removes_a_planted_symlink_at_the_temporary_name_instead_of_following_it(tmp_path):
    victim, target = tmp_path / "victim", tmp_path / "positions.json"
    victim.write_bytes(b"precious")
    os.symlink(victim, f"{target}.new")
    replace_file(target, b"{}")
    assert victim.read_bytes() == b"precious"
    assert target.read_bytes() == b"{}" and mode(str(target)) == 0o600 and not os.path.lexists(f"{target}.new")


def test_sink_positions_are_saved_private_without_following_a_planted_symlink(tmp_path):
    victim, path = tmp_path / "victim", tmp_path / "kafka.positions.json"
    victim.write_bytes(b"precious")
    os.symlink(victim, f"{path}.new")
    LocalPositions(path).save({}, force=True)
    assert victim.read_bytes() == b"precious" and json.loads(path.read_text()) == {} and mode(str(path)) == 0o600


# --- the numba cache is never a directory someone else prepared --------------------------------------

@pytest.fixture
def fallback_cache(tmp_path, monkeypatch):
    """No usable home cache: jitcache falls back to the temporary directory, here tmp_path."""
    home_file = tmp_path / "not-a-directory"
    home_file.write_text("")
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(home_file))
    monkeypatch.setattr(jitcache.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)
    return tmp_path / f"fh-numba-{os.geteuid()}"


def test_the_fallback_numba_cache_is_a_directory_only_its_user_can_write(fallback_cache):
    assert Path(jitcache.configure()).parent == fallback_cache
    assert mode(str(fallback_cache)) == 0o700 and os.stat(fallback_cache).st_uid == os.geteuid()


@root_only
def test_a_fallback_numba_cache_prepared_by_another_user_is_not_used(fallback_cache, caplog):
    caplog.set_level(logging.WARNING)  # whatever level an earlier in-process setup_logging left
    fallback_cache.mkdir(mode=0o777)
    os.chown(fallback_cache, NOBODY, -1)
    base = Path(jitcache.configure()).parent
    assert base != fallback_cache
    assert stat.S_IMODE(os.stat(base).st_mode) == 0o700 and os.stat(base).st_uid == os.geteuid()
    assert f"{fallback_cache} is a directory of uid {NOBODY}" in caplog.text and "not used" in caplog.text


def test_a_fallback_numba_cache_that_is_a_symlink_is_not_used(fallback_cache, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    fallback_cache.symlink_to(elsewhere)
    assert Path(jitcache.configure()).parent not in (fallback_cache, elsewhere)


# --- fh metrics and fh top skip and report a hostile file ------------------------------------------

@pytest.fixture
def hostile(shm_prefix):
    """A good venue (kraken) beside a segment with a non-UTF-8 symbol (binance) and a latency file
    with a non-UTF-8 label."""
    good, bad = make_writer(shm_prefix, "kraken"), make_writer(shm_prefix, "binance")
    bad.instruments["symbol"][0] = b"\xff\xfeBTC"
    good.heartbeat()
    latency = LatencyWriter(shm_prefix, "coinbase", [("publish", "coinbase")])
    Path(latency.path).write_bytes(Path(latency.path).read_bytes().replace(b"coinbase", b"\xffoinbase", 1))
    yield
    latency.close(unlink=True)
    good.close()
    bad.close()


def test_metrics_skip_a_hostile_segment_and_latency_file_and_report_them(shm_prefix, hostile, caplog):
    caplog.set_level(logging.WARNING)
    text = Collector(shm_prefix).metrics()
    assert 'fh_venue_up{venue="kraken"} 1' in text
    assert f'fh_file_refused{{file="{shm_prefix}.binance"}} 1' in text
    assert f'fh_file_refused{{file="{shm_prefix}.latency.coinbase"}} 1' in text
    assert "not UTF-8" in caplog.text


def test_the_metrics_endpoint_answers_with_a_hostile_file_under_the_prefix(shm_prefix, hostile):
    collector = Collector(shm_prefix)
    server = make_server(collector, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for _ in range(2):  # every scrape, not only the first
            with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/metrics", timeout=30) as answer:
                assert answer.status == 200 and 'fh_venue_up{venue="kraken"} 1' in answer.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        collector.close()


def test_top_shows_a_hostile_segment_as_refused_and_the_others_as_usual(shm_prefix, hostile):
    rows = {row[0]: row for row in Top(shm_prefix).venue_rows()}
    assert rows["kraken"][1] == "open" and rows["binance"][1] == "REFUSED"


# --- configuration ---------------------------------------------------------------------------------

def _run(**run) -> dict:
    return {"run": run, "venues": {"binance": {"symbols": ["BTC-USDT"]}}}


def test_shm_group_and_writer_uid_are_configured_under_run():
    name, _ = a_group()
    config = parse_config(_run(shm_group=name, writer_uid=NOBODY))
    assert (config.shm_group, config.writer_uid) == (name, NOBODY)
    assert (parse_config(_run()).shm_group, parse_config(_run()).writer_uid) == ("", None)


@pytest.mark.parametrize("run, key", [({"shm_group": "no-such-group-fh"}, "run.shm_group"),
                                      ({"writer_uid": -1}, "run.writer_uid"),
                                      ({"writer_uid": "nobody"}, "run.writer_uid")])
def test_a_bad_shm_access_setting_is_refused_naming_the_key(run, key):
    with pytest.raises(ConfigError, match=key):
        parse_config(_run(**run))


@root_only
def test_a_process_takes_shm_group_and_writer_uid_from_its_run_config(shm_prefix, monkeypatch):
    for variable in ("FH_SHM_GROUP", "FH_SHM_WRITER_UID"):
        monkeypatch.setenv(variable, "")
        monkeypatch.delenv(variable)  # unset now, and again after the test
    name, gid = a_group()
    apply_shm_access(parse_config(_run(shm_group=name, writer_uid=NOBODY)))
    with make_writer(shm_prefix) as writer:
        assert (mode(writer.path), os.stat(writer.path).st_gid) == (0o640, gid)
        os.chown(writer.path, NOBODY, -1)
        Segment(shm_prefix, "binance").close()
