import json
import zlib

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from feedhandler.book import BookStore
from feedhandler.book_kernels import BID
from feedhandler.checksum import crc32
from shm.fixedpoint import parse

# Kraken's documented BTC/USD example (price precision 1, qty precision 8).
BTC_USD_ASKS = [("45285.2", "0.00100000"), ("45286.4", "1.54571953"), ("45286.6", "1.54571109"),
                ("45289.6", "1.54560911"), ("45290.2", "0.15890660"), ("45291.8", "1.54553491"),
                ("45294.7", "0.04454749"), ("45296.1", "0.35380000"), ("45297.5", "0.09945542"),
                ("45299.5", "0.18772827")]
BTC_USD_BIDS = [("45283.5", "0.10000000"), ("45283.4", "1.54582015"), ("45282.1", "0.10000000"),
                ("45281.0", "0.10000000"), ("45280.3", "1.54592586"), ("45279.0", "0.07990000"),
                ("45277.6", "0.03310103"), ("45277.5", "0.30000000"), ("45277.3", "1.54602737"),
                ("45276.6", "0.15445238")]
# Kraken's documented MATIC/USD example: JSON numbers that only verify at precisions 4 and 8.
MATIC_BIDS = [(0.5666, 4831.75496356), (0.5665, 6658.22734739), (0.5664, 18724.91513344),
              (0.5663, 11563.92544914), (0.5662, 14006.65365711), (0.5661, 17454.85679807),
              (0.566, 18097.1547), (0.5659, 33644.89175666), (0.5658, 148.3464), (0.5657, 606.70854372)]
MATIC_ASKS = [(0.5668, 4410.79769741), (0.5669, 4655.40412487), (0.567, 49844.89424998),
              (0.5671, 24306.41678), (0.5672, 29783.25223475), (0.5673, 57234.71239278),
              (0.5674, 45065.04744), (0.5675, 5912.76380354), (0.5676, 42514.92434778),
              (0.5677, 36304.0847022)]


def rows(levels, px_dec, qty_dec):
    return np.array([[parse(repr(p) if isinstance(p, float) else p, px_dec),
                      parse(repr(q) if isinstance(q, float) else q, qty_dec)] for p, q in levels], np.int64)


@given(st.binary(max_size=300))
def test_crc32_matches_zlib(data):
    assert int(crc32(np.frombuffer(data, np.uint8))) == zlib.crc32(data)


def test_kraken_btc_usd_worked_example():
    books = BookStore([10])
    books.load(0, rows(BTC_USD_BIDS, 1, 8), rows(BTC_USD_ASKS, 1, 8))
    assert books.kraken_checksum(0) == 3310070434


def test_kraken_matic_usd_snapshot_and_update():
    books = BookStore([10])
    books.load(0, rows(MATIC_BIDS, 4, 8), rows(MATIC_ASKS, 4, 8))
    assert books.kraken_checksum(0) == 2439117997
    books.set(0, BID, parse("0.5657", 4), parse("1098.3947558", 8))
    books.truncate(0, 10)
    assert books.kraken_checksum(0) == 2114181697


def test_kraken_checksum_covers_only_the_top_ten_levels():
    books = BookStore([20])
    books.load(0, rows(BTC_USD_BIDS, 1, 8), rows(BTC_USD_ASKS, 1, 8))
    books.set(0, BID, parse("100.0", 1), parse("5", 8))  # an 11th bid, far below
    assert books.kraken_checksum(0) == 3310070434


def test_kraken_checksum_of_a_thin_book_uses_what_is_there():
    books = BookStore([10])
    books.load(0, rows([("0.05000", "0.00000304")], 5, 8), np.empty((0, 2), np.int64))
    assert books.kraken_checksum(0) == zlib.crc32(b"5000304")


def test_kraken_v2_recorded_snapshot_verifies(captures):
    message = json.loads((captures / "kraken-v2-samples" / "ws_book_snapshot.json").read_text())
    book = message["data"][0]
    books = BookStore([10])
    to_rows = lambda levels: rows([(f"{lvl['price']:.1f}", f"{lvl['qty']:.8f}") for lvl in levels], 1, 8)
    books.load(0, to_rows(book["bids"]), to_rows(book["asks"]))
    assert books.kraken_checksum(0) == book["checksum"]
