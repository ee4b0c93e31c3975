"""cryptofeed recordings from the live venues imported into captures (skip without ../shared/captures)."""
import json
import subprocess
import sys
from collections import Counter

import pytest

from conftest import REPO
from feedhandler.capture import CaptureReader, FrameKind, split_rest
from tools.importers.cryptofeed import RecordingError, import_recordings, seconds_to_ns


def non_empty_lines(*paths):
    return sum(1 for path in paths for line in open(path, encoding="utf-8") if line.strip())


@pytest.mark.parametrize("folder, exchange, venue", [
    ("binance-spot-2021", "BINANCE", "binance"), ("kraken-v1-2021", "KRAKEN", "kraken"),
    ("coinbase-exchange-2021", "COINBASE", "coinbase"), ("binance-usdm-2021", "BINANCE_FUTURES", "binance_usdm")])
def test_text_recording_imports_every_line_merged_by_receive_time(captures, tmp_path, folder, exchange, venue):
    prefix = captures / folder / exchange
    result = import_recordings([str(prefix)], str(tmp_path / "out.fhcap"))
    sources = [p for p in (captures / folder).glob(f"{exchange}.*") if ".http." in p.name or ".ws." in p.name]
    expected = non_empty_lines(*sources) + 1  # + the instrument list in EXCH.0 (its config line goes to the header)
    reader = CaptureReader(tmp_path / "out.fhcap")
    timestamps = [frame.ts_ns for frame in reader.frames()]
    assert result["frames"] == len(timestamps) == expected
    assert timestamps == sorted(timestamps)
    assert reader.header["venue"] == venue
    assert reader.problems == []


def test_receive_times_are_exact_nanoseconds_from_the_text(captures, tmp_path):
    import_recordings([str(captures / "binance-spot-2021" / "BINANCE")], str(tmp_path / "b.fhcap"))
    first = next(CaptureReader(tmp_path / "b.fhcap").frames())
    assert first.ts_ns == 1633998511132921000  # "1633998511.132921"
    assert first.kind == FrameKind.REST
    method, url, status, body = split_rest(first.payload)
    assert url == "https://api.binance.com/api/v3/exchangeInfo" and json.loads(body)["timezone"] == "UTC"


def test_seconds_text_converts_without_float_rounding():
    assert seconds_to_ns("1618678132.3858151") == 1618678132385815100
    assert seconds_to_ns("1633998512.0633569") == 1633998512063356900


def test_v2_recording_imports_with_kinds_and_connections(captures, tmp_path):
    result = import_recordings([str(captures / "coinbase-advanced-2026" / "COINBASE.jsonl.zst")],
                               str(tmp_path / "c.fhcap"))
    reader = CaptureReader(tmp_path / "c.fhcap")
    kinds = Counter(frame.kind for frame in reader.frames())
    assert kinds == {FrameKind.WS_RECV: 1030, FrameKind.WS_SENT: 5, FrameKind.REST: 1, FrameKind.CONNECT: 1}
    assert result["frames"] == 1037
    assert sorted(reader.header["connections"].values()) == ["COINBASE.http.1", "COINBASE.ws.2"]


def test_recordings_of_two_venues_do_not_mix(captures, tmp_path):
    with pytest.raises(RecordingError, match="one venue"):
        import_recordings([str(captures / "binance-spot-2021" / "BINANCE"),
                           str(captures / "kraken-v1-2021" / "KRAKEN")], str(tmp_path / "x.fhcap"))


def test_a_prefix_without_recording_is_a_clear_error(tmp_path):
    with pytest.raises(RecordingError, match="not found"):
        import_recordings([str(tmp_path / "NOPE")], str(tmp_path / "x.fhcap"))


def test_fh_capture_import_then_info(captures, tmp_path):
    out = tmp_path / "k.fhcap"
    run = [sys.executable, "-m", "tools.cli", "capture"]
    imported = subprocess.run([*run, "import", "--format", "cryptofeed", str(captures / "kraken-v1-2021" / "KRAKEN"),
                               "-o", str(out), "--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, imported.stderr
    info = subprocess.run([*run, "info", str(out), "--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    report = json.loads(info.stdout)
    assert report["frames"] == json.loads(imported.stdout)["frames"] == 4437
    assert report["by_kind"]["ws_recv"] == 4430 and report["bad_blocks"] == 0 and report["problems"] == []
    assert report["first_ns"] <= report["last_ns"]
