"""OKX v5 public `books`, `trades` and the derivatives market-data channels (bbo-tbt, funding-rate,
mark-price, open-interest, liquidation-orders): the documented examples (../shared/docs/derivatives-protocols.md
§2), sequence and checksum rules, subscriptions, instruments, and replay of the real 2022 recording."""
import json
import subprocess
from decimal import Decimal

import pytest

from feedhandler.instruments import FUTURE, PERPETUAL, SPOT, Instrument
from feedhandler.config import parse_config
from feedhandler.sync import SyncState
from feedhandler.venues import by_cryptofeed
from feedhandler.venues.okx import OkxFeed
from feedhandler.venues.base import PlanOptions
from feedhandler.venues.okx.protocol import SUBSCRIBE_MAX_BYTES, parse_instruments
from readers import in_process_reader
from pipeline import FH, REPO, VENUE_SYMBOLS, free_base_port, wait_for, warm_kernels
from shm.layout import FIELD_FUNDING_TIME, FIELD_INDEX, FIELD_MARK, FIELD_OPEN_INTEREST, FIELD_RATE, Side
from shm.reader import (BboEvent, FundingEvent, LiquidationEvent, OpenInterestEvent, StatusEvent, TradeEvent,
                        VenueReader, funding_rate)
from shm.segment import SegmentError, SegmentWriter
from tools.importers.cryptofeed import import_recordings
from tools.plan import plan
from tools.replay import replay

BTC = Instrument("okx", "BTC-USDT", "BTC", "USDT", 1, 8)
ETH = Instrument("okx", "ETH-USDT", "ETH", "USDT", 2, 6)


def books(action, asks, bids, checksum=0, seq=None, inst="BTC-USDT"):
    """A `books` push; `seq` = (prevSeqId, seqId), left out as in the 2022 format."""
    data = {"asks": [[p, q, "0", "1"] for p, q in asks], "bids": [[p, q, "0", "1"] for p, q in bids],
            "ts": "1597026383085", "checksum": checksum}
    if seq is not None:
        data["prevSeqId"], data["seqId"] = seq
    return json.dumps({"arg": {"channel": "books", "instId": inst}, "action": action, "data": [data]}).encode()


@pytest.fixture
def feed(shm_prefix):
    writer = SegmentWriter.create(shm_prefix, "okx", [BTC.spec(64), ETH.spec(64)], depth=10, ring_slots=1024)
    okx = OkxFeed([BTC, ETH], writer, capacity=64)
    okx.assign(1, ("BTC-USDT", "ETH-USDT"))
    yield okx, in_process_reader("okx", shm_prefix)
    writer.close()


# documented worked examples of §2.6 (recomputed there): the checksum strings and their values
DOC_BIDS, DOC_ASKS = [("3366.1", "7"), ("3366", "6")], [("3366.8", "9"), ("3368", "8")]


def test_documented_checksum_examples_verify(feed):
    okx, reader = feed
    okx.on_frame(books("snapshot", DOC_ASKS, DOC_BIDS, -1881014294), 1)  # "3366.1:7:3366.8:9:3366:6:3368:8"
    assert reader.book("BTC-USDT").valid
    # delete bid 3366, add ask 3372: "3366.1:7:3366.8:9:3368:8:3372:8" (a short side is skipped)
    okx.on_frame(books("update", [("3372", "8")], [("3366", "0")], 831078360), 2)
    book = reader.book("BTC-USDT")
    assert book.valid and book.levels_text("asks")[-1] == ["3372.0", "8.00000000"]
    assert reader.counters("BTC-USDT")["checksum_ok"] == 2 and reader.counters("BTC-USDT")["checksum_fail"] == 0


def test_a_wrong_checksum_invalidates_that_book_only_and_resubscribes_it(feed):
    okx, reader = feed
    for inst in ("BTC-USDT", "ETH-USDT"):
        okx.on_frame(books("snapshot", DOC_ASKS, DOC_BIDS, -1881014294, inst=inst), 1)
    cursor = reader.events()
    okx.on_frame(books("update", [("3372", "8")], [("3366", "0")], 12345), 2)
    assert not reader.book("BTC-USDT").valid and reader.book("ETH-USDT").valid
    assert reader.counters("BTC-USDT")["checksum_fail"] == 1
    statuses = [(e.status.name, e.reason.name) for e in cursor.poll() if isinstance(e, StatusEvent)]
    assert statuses == [("BOOK_INVALID", "CHECKSUM")]
    (request,) = okx.requests(now=0.0)
    assert request.conn == 1 and [json.loads(m)["op"] for m in request.messages] == ["unsubscribe", "subscribe"]
    assert json.loads(request.messages[1])["args"] == [{"channel": "books", "instId": "BTC-USDT"}]
    okx.on_frame(books("snapshot", DOC_ASKS, DOC_BIDS, -1881014294), 3)  # the resubscription's snapshot
    assert reader.book("BTC-USDT").valid and okx.state(0) == SyncState.LIVE


def test_a_zero_checksum_is_not_checked(feed):
    """Since 2026-06-23 OKX sends checksum 0 on every message: it must not fail the book."""
    okx, reader = feed
    okx.on_frame(books("snapshot", DOC_ASKS, DOC_BIDS, 0, (-1, 10)), 1)
    okx.on_frame(books("update", [("3372", "8")], [], 0, (10, 11)), 2)
    counters = reader.counters("BTC-USDT")
    assert reader.book("BTC-USDT").valid and counters["checksum_ok"] == counters["checksum_fail"] == 0


def test_documented_sequence_with_keep_alive_and_reset_stays_valid(feed):
    """§2.5's example chain: (-1,10) snapshot, (10,15), (15,15) keep-alive, (15,3) reset, (3,5)."""
    okx, reader = feed
    okx.on_frame(books("snapshot", DOC_ASKS, DOC_BIDS, seq=(-1, 10)), 1)
    okx.on_frame(books("update", [("3372", "8")], [], seq=(10, 15)), 2)
    okx.on_frame(books("update", [], [], seq=(15, 15)), 3)
    okx.on_frame(books("update", [], [("3365", "1")], seq=(15, 3)), 4)
    okx.on_frame(books("update", [("3372", "0")], [], seq=(3, 5)), 5)
    book = reader.book("BTC-USDT")
    assert book.valid and book.n_asks == 2 and book.n_bids == 3
    counters = reader.counters("BTC-USDT")
    assert counters["gaps"] == 0 and counters["book_updates"] == 3  # the keep-alive publishes nothing


def test_a_sequence_gap_invalidates_the_book_and_is_counted(feed):
    okx, reader = feed
    okx.on_frame(books("snapshot", DOC_ASKS, DOC_BIDS, seq=(-1, 10)), 1)
    cursor = reader.events()
    okx.on_frame(books("update", [("3372", "8")], [], seq=(11, 12)), 2)  # prevSeqId 11 != last seqId 10
    assert not reader.book("BTC-USDT").valid and okx.state(0) == SyncState.RESYNC
    assert reader.counters("BTC-USDT")["gaps"] == 1
    statuses = [(e.status.name, e.reason.name) for e in cursor.poll() if isinstance(e, StatusEvent)]
    assert statuses == [("GAP", "SEQUENCE_GAP"), ("BOOK_INVALID", "SEQUENCE_GAP")]
    okx.on_frame(books("update", [("3373", "8")], [], seq=(12, 13)), 3)  # not applied before a snapshot
    assert not reader.book("BTC-USDT").valid


def test_documented_trade_is_published_with_the_takers_side_id_and_time(feed):
    okx, reader = feed
    cursor = reader.events()
    okx.on_frame(b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT",'
                 b'"tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy","ts":"1630048897897",'
                 b'"count":"3","source":"0","seqId":1234}]}', 1)  # the example of §2.7
    (trade,) = [e for e in cursor.poll() if isinstance(e, TradeEvent)]
    assert (trade.trade_id, trade.price, trade.qty, trade.side) == (130639474, 422199, 12060306, Side.BUY)
    assert trade.ts_exchange == 1630048897897_000_000


@pytest.mark.parametrize("frame", [
    b'pong',
    b'{"id":"1512","event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a4d3ae55"}',
    b'{"id":"1512","event":"error","code":"60012","msg":"Invalid request","connId":"a4d3ae55"}',
    b'{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","last":"1"}]}',
], ids=["pong", "ack", "error", "tickers"])
def test_events_pong_and_other_channels_are_not_errors(feed, frame):
    okx, reader = feed
    okx.on_frame(frame, 1)
    assert reader.counters()["decode_errors"] == 0


@pytest.mark.parametrize("frame", [
    b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[["1e5","1","0","1"]]}]}',
    b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[["3370"]]}]}',
    b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"merge","data":[{"asks":[]}]}',
    b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],"seqId":11}]}',
], ids=["exponent", "no-size", "unknown-action", "seq-without-prev"])
def test_a_malformed_update_of_a_live_book_is_a_counted_loss(feed, frame):
    okx, reader = feed
    okx.on_frame(books("snapshot", DOC_ASKS, DOC_BIDS, seq=(-1, 10)), 1)
    okx.on_frame(frame, 2)
    assert reader.counters()["decode_errors"] == 1 and reader.counters("BTC-USDT")["gaps"] == 1
    assert not reader.book("BTC-USDT").valid


def test_an_unknown_instrument_is_a_decode_error(feed):
    okx, reader = feed
    okx.on_frame(books("snapshot", DOC_ASKS, DOC_BIDS, inst="DOGE-USDT"), 1)
    assert reader.counters()["decode_errors"] == 1


def test_the_service_upgrade_notice_asks_for_a_reconnect():
    protocol = OkxFeed.PROTOCOL
    assert protocol.is_shutdown_notice(b'{"event":"notice","code":"64008","msg":"upgrade","connId":"a"}')
    assert not protocol.is_shutdown_notice(books("update", [], []))


def test_a_connection_pings_with_the_text_ping_before_the_30_s_okx_drops_a_quiet_one():
    okx = by_cryptofeed("OKX")
    assert okx.protocol.keepalive() == b"ping" and 0 < okx.limits.client_ping_s < 30


def test_cryptofeed_okx_recordings_import_as_okx():
    assert by_cryptofeed("OKX").name == "okx"


def test_instruments_spot_inverse_swap_and_dated_future():
    """Fields as §2.9 documents them (values from the 2022 recording's lists)."""
    spot = {"instType": "SPOT", "instId": "BTC-USDT", "baseCcy": "BTC", "quoteCcy": "USDT", "tickSz": "0.1",
            "lotSz": "0.00000001", "ctVal": "", "ctValCcy": "", "ctType": "", "settleCcy": "", "expTime": ""}
    swap = {"instType": "SWAP", "instId": "UNI-USD-SWAP", "baseCcy": "", "quoteCcy": "", "tickSz": "0.001",
            "lotSz": "1", "ctVal": "10", "ctValCcy": "USD", "ctType": "inverse", "settleCcy": "UNI", "expTime": ""}
    future = {"instType": "FUTURES", "instId": "BTC-USD-220527", "baseCcy": "", "quoteCcy": "", "tickSz": "0.1",
              "lotSz": "1", "ctVal": "100", "ctValCcy": "USD", "ctType": "inverse", "settleCcy": "BTC",
              "expTime": "1653638400000"}
    linear = dict(swap, instId="BTC-USDT-SWAP", tickSz="0.1", ctVal="0.01", ctValCcy="BTC", ctType="linear",
                  settleCcy="USDT")
    option = dict(future, instType="OPTION", instId="BTC-USD-220527-30000-C")
    got = parse_instruments("okx", {"code": "0", "data": [spot, swap, future, linear, option]})
    assert [(i.venue_symbol, i.symbol, i.px_dec, i.qty_dec) for i in got] == [
        ("BTC-USDT", "BTC-USDT", 1, 8), ("UNI-USD-SWAP", "UNI-USD-PERP", 3, 0),
        ("BTC-USD-220527", "BTC-USD-20220527", 1, 0), ("BTC-USDT-SWAP", "BTC-USDT-PERP", 1, 0)]
    assert (got[1].contract_size, got[1].contract_ccy, got[1].settle) == (Decimal(10), "USD", "UNI")
    assert (got[3].contract_size, got[3].contract_ccy, got[3].settle) == (Decimal("0.01"), "BTC", "USDT")
    assert [i.market for i in got] == [SPOT, PERPETUAL, FUTURE, PERPETUAL] and got[2].expiry_ms == 1653638400000
    assert got[0].contract_size == 1 and (got[0].tick, got[0].lot) == (Decimal("0.1"), Decimal("0.00000001"))


def test_real_instrument_lists_name_the_recorded_instruments(captures):
    by_venue = {}
    for line in open(captures / "okx-2022" / "OKX.0"):
        url, _, rest = line.partition(" -> ")
        if "instType=" in url and "OPTION" not in url:
            by_venue.update({i.venue_symbol: i for i in parse_instruments("okx", json.loads(rest.partition(": ")[2]))})
    assert {s: by_venue[s].symbol for s in ("BTC-USDT", "UNI-USD-SWAP", "BTC-USD-220527")} == {
        "BTC-USDT": "BTC-USDT", "UNI-USD-SWAP": "UNI-USD-PERP", "BTC-USD-220527": "BTC-USD-20220527"}


def test_real_recording_verifies_all_290_checksums(captures, tmp_path, shm_prefix):
    capture = tmp_path / "okx.fhcap"
    assert import_recordings([str(captures / "okx-2022" / "OKX")], str(capture))["venue"] == "okx"
    summary = replay([str(capture)], shm_prefix=shm_prefix, depth=400)
    assert sorted(summary["books"]) == ["okx:BTC-USD-220527", "okx:BTC-USDT", "okx:UNI-USD-SWAP"]
    assert sum(book["checksum_ok"] for book in summary["books"].values()) == 290
    assert all(book["checksum_fail"] == 0 and book["valid"] and book["crossed"] == 0
               for book in summary["books"].values())
    assert summary["decode_errors"] == 0


def test_a_perpetual_is_listed_by_the_swap_instruments_and_subscribed_by_its_swap_name(tmp_path):
    """OKX lists spot, swaps and futures apart (§2.9): a worker asks for the list of its symbols'
    market, and without metadata a plan names a perpetual as OKX does (BASE-QUOTE-SWAP)."""
    config = parse_config({"run": {"instrument_cache": str(tmp_path)},
                           "venues": {"okx": {"symbols": ["ETH-USDT-PERP"]}}})
    okx = plan(config)["venues"]["okx"]
    assert okx["books"] == {"ETH-USDT-PERP": "ETH-USDT-SWAP"} and okx["connections"][0]["books"] == ["ETH-USDT-SWAP"]
    assert [r["url"] for r in okx["rest"]["startup"]] == ["https://www.okx.com/api/v5/public/instruments?instType=SWAP"]
    assert config.venues["okx"].book_depth == 400  # the books channel's one depth


# ---------------------------------------------------------------- the derivatives market-data channels
# The push examples of OKX's docs (https://www.okx.com/docs-v5/en/ #public-data-websocket-funding-rate-channel,
# -mark-price-channel, -open-interest-channel, -liquidation-orders-channel [OKX-PUB]; their fields in
# derivatives-protocols.md §2.8) and bbo-tbt as §2.4 has it (the books example's levels, one a side, with
# seqId; the shape of nautilus_trader's crates/adapters/okx/test_data/ws_bbo_tbt.json), on instruments with
# their tick and lot.
SWAP = Instrument("okx", "BTC-USD-SWAP", "BTC", "USD", 1, 0, PERPETUAL)
LINEAR = Instrument("okx", "BTC-USDT-SWAP", "BTC", "USDT", 1, 2, PERPETUAL)
FUTURES = Instrument("okx", "LTC-USD-190628", "LTC", "USD", 2, 0, FUTURE)
IOST = Instrument("okx", "IOST-USDT-SWAP", "IOST", "USDT", 6, 0, PERPETUAL)
SPOT_BTC = Instrument("okx", "BTC-USDT", "BTC", "USDT", 2, 8)
DOC_FUNDING = (b'{"arg":{"channel":"funding-rate","instId":"BTC-USD-SWAP"},"data":[{"formulaType":"noRate",'
               b'"fundingRate":"0.0001875391284828","fundingTime":"1700726400000","impactValue":"",'
               b'"instId":"BTC-USD-SWAP","instType":"SWAP","interestRate":"","method":"current_period",'
               b'"maxFundingRate":"0.00375","minFundingRate":"-0.00375","nextFundingRate":"",'
               b'"nextFundingTime":"1700755200000","premium":"0.0001233824646391",'
               b'"settFundingRate":"0.0001699799259033","settState":"settled","ts":"1700724675402"}]}')
DOC_MARK = (b'{"arg":{"channel":"mark-price","instId":"LTC-USD-190628"},"data":[{"instType":"FUTURES",'
            b'"instId":"LTC-USD-190628","markPx":"0.1","ts":"1597026383085"}]}')
DOC_OPEN_INTEREST = (b'{"arg":{"channel":"open-interest","instId":"BTC-USDT-SWAP"},"data":[{"instId":"BTC-USDT-SWAP",'
                     b'"instType":"SWAP","oi":"2216113.01000000309","oiCcy":"22161.1301000000309",'
                     b'"oiUsd":"1939251795.54769270396321","ts":"1743041250440"}]}')
DOC_BBO = (b'{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[["8476.98","415","0","13"]],'
           b'"bids":[["8476.97","256","0","12"]],"ts":"1597026383085","seqId":123456}]}')
DOC_LIQUIDATION = (b'{"arg":{"channel":"liquidation-orders","instType":"SWAP"},"data":[{"details":[{"bkLoss":"0",'
                   b'"bkPx":"0.007831","ccy":"","posSide":"short","side":"buy","sz":"13","ts":"1692266434010"}],'
                   b'"instFamily":"IOST-USDT","instId":"IOST-USDT-SWAP","instType":"SWAP","uly":"IOST-USDT"}]}')

# the index-tickers push in the shape of OKX's docs (derivatives-protocols.md §2.8: keyed by the index)
DOC_INDEX = (b'{"arg":{"channel":"index-tickers","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","idxPx":"64000.125",'
             b'"high24h":"65000.5","low24h":"63000.1","open24h":"64100","sodUtc0":"64200","sodUtc8":"64150",'
             b'"ts":"1597026383085"}]}')


def liquidations(*items: tuple[str, list[tuple[str, str, str]]]) -> bytes:
    """A liquidation-orders push: per instrument, its (side, bkPx, sz) details."""
    return json.dumps({"arg": {"channel": "liquidation-orders", "instType": "SWAP"}, "data": [
        {"details": [{"bkLoss": "0", "bkPx": px, "ccy": "", "posSide": "net", "side": side, "sz": sz,
                      "ts": "1692266434010"} for side, px, sz in details], "instId": inst, "instType": "SWAP"}
        for inst, details in items]}).encode()


@pytest.fixture
def derivatives(shm_prefix):
    instruments = [SWAP, LINEAR, FUTURES, IOST, SPOT_BTC]
    writer = SegmentWriter.create(shm_prefix, "okx", [i.spec(64) for i in instruments], depth=10, ring_slots=1024)
    okx = OkxFeed(instruments, writer, capacity=64)
    okx.assign(1, tuple(i.venue_symbol for i in instruments))
    yield okx, in_process_reader("okx", shm_prefix)
    writer.close()


def records_of(cursor) -> list:
    return [e for e in cursor.poll() if isinstance(e, (BboEvent, FundingEvent, OpenInterestEvent, LiquidationEvent))]


def test_documented_funding_rate_is_a_funding_record_with_the_rate_and_when_it_is_paid(derivatives):
    okx, reader = derivatives
    cursor = reader.events()
    okx.on_frame(DOC_FUNDING, 1)
    (funding,) = records_of(cursor)
    assert isinstance(funding, FundingEvent) and funding.instrument.venue_symbol == "BTC-USD-SWAP"
    assert funding_rate(funding.rate) == Decimal("0.0001875391284828")
    assert funding.next_funding_ns == 1700726400000_000_000 and funding.ts_exchange == 1700724675402_000_000
    assert funding.fields == FIELD_RATE | FIELD_FUNDING_TIME and reader.counters("BTC-USD-SWAP")["fundings"] == 1


def test_a_mark_price_carries_the_mark_and_the_funding_last_sent(derivatives):
    okx, reader = derivatives
    cursor = reader.events()
    okx.on_frame(DOC_FUNDING, 1)
    okx.on_frame(DOC_MARK.replace(b"LTC-USD-190628", b"BTC-USD-SWAP").replace(b'"0.1"', b'"37000.5"'), 2)
    okx.on_frame(DOC_MARK, 3)
    _, mark, futures_mark = records_of(cursor)
    assert mark.fields == FIELD_MARK and mark.instrument.stats_price(mark.mark_px) == Decimal("37000.5")
    assert funding_rate(mark.rate) == Decimal("0.0001875391284828")  # as last sent, merged
    assert (futures_mark.instrument.venue_symbol, futures_mark.rate) == ("LTC-USD-190628", 0)
    assert futures_mark.instrument.stats_price(futures_mark.mark_px) == Decimal("0.1")
    assert reader.stats("BTC-USD-SWAP").mark_px == mark.mark_px


def test_documented_open_interest_is_counted_in_contracts_cut_to_the_lot(derivatives):
    """OKX prints `oi` with binary-float noise past the lot: 2216113.01000000309 contracts of lot 0.01."""
    okx, reader = derivatives
    cursor = reader.events()
    okx.on_frame(DOC_OPEN_INTEREST, 1)
    (oi,) = records_of(cursor)
    assert isinstance(oi, OpenInterestEvent) and reader.instrument(1).qty(oi.open_interest) == Decimal("2216113.01")
    assert oi.ts_exchange == 1743041250440_000_000 and reader.stats("BTC-USDT-SWAP").open_interest == 221611301


def test_documented_bbo_tbt_is_a_bbo_numbered_by_its_seq_id(derivatives):
    okx, reader = derivatives
    cursor = reader.events()
    okx.on_frame(DOC_BBO, 1)
    (bbo,) = records_of(cursor)
    assert isinstance(bbo, BboEvent) and bbo.update_id == 123456 and bbo.ts_exchange == 1597026383085_000_000
    assert (bbo.bid_px, bbo.bid_qty, bbo.ask_px, bbo.ask_qty) == (847697, 256_00000000, 847698, 415_00000000)
    okx.on_frame(DOC_BBO.replace(b'"bids":[["8476.97","256","0","12"]]', b'"bids":[]'), 2)
    (empty_bid,) = records_of(cursor)
    assert (empty_bid.bid_px, empty_bid.bid_qty, empty_bid.ask_qty) == (0, 0, 415_00000000)


def test_an_index_price_reaches_the_swaps_and_futures_of_that_index_not_its_spot_pair(derivatives):
    """index-tickers names the index BTC-USDT: the index price of BTC-USDT-SWAP (not of the spot pair
    BTC-USDT, nor of BTC-USD-SWAP), carried as a funding record's index with the rate as last sent; an
    index of no carried instrument publishes nothing and is no error."""
    okx, reader = derivatives
    okx.on_frame(DOC_FUNDING.replace(b"BTC-USD-SWAP", b"BTC-USDT-SWAP"), 1)
    cursor = reader.events()
    okx.on_frame(DOC_INDEX, 2)
    (index,) = records_of(cursor)
    assert isinstance(index, FundingEvent) and index.instrument.venue_symbol == "BTC-USDT-SWAP"
    assert index.fields == FIELD_INDEX and index.instrument.stats_price(index.index_px) == Decimal("64000.125")
    assert funding_rate(index.rate) == Decimal("0.0001875391284828") and index.ts_exchange == 1597026383085_000_000
    assert reader.stats("BTC-USDT-SWAP").has(FIELD_INDEX) and not reader.stats("BTC-USDT").has(FIELD_INDEX)
    assert not reader.stats("BTC-USD-SWAP").has(FIELD_INDEX) and reader.counters()["decode_errors"] == 0
    okx.on_frame(DOC_INDEX.replace(b"BTC-USDT", b"DOGE-USDT"), 3)  # no carried instrument is priced from it
    assert records_of(cursor) == [] and reader.counters()["decode_errors"] == 0


def test_documented_liquidation_is_the_order_side_with_its_bankruptcy_price_and_contracts(derivatives):
    """`side` buy: the liquidation order buys, closing a short (posSide short); kept as the venue side."""
    okx, reader = derivatives
    cursor = reader.events()
    okx.on_frame(DOC_LIQUIDATION, 1)
    (liquidation,) = records_of(cursor)
    assert isinstance(liquidation, LiquidationEvent) and liquidation.instrument.venue_symbol == "IOST-USDT-SWAP"
    assert (liquidation.side, liquidation.venue_side) == (Side.BUY, Side.BUY)
    assert (liquidation.qty, liquidation.ts_exchange) == (13, 1692266434010_000_000)
    assert liquidation.instrument.stats_price(liquidation.price) == Decimal("0.007831")


def test_liquidations_of_instruments_not_carried_are_skipped_without_an_error(derivatives):
    """liquidation-orders is subscribed per instType: it names every swap, of which a feed carries few."""
    okx, reader = derivatives
    cursor = reader.events()
    okx.on_frame(liquidations(("DOGE-USDT-SWAP", [("sell", "0.1", "5")]),
                              ("BTC-USDT-SWAP", [("sell", "64000.1", "0.5"), ("buy", "64100", "2")]),
                              ("ETH-USDT-SWAP", [("buy", "3000", "1")])), 1)
    got = records_of(cursor)
    assert [(e.instrument.venue_symbol, e.side, e.instrument.stats_price(e.price), e.qty) for e in got] == [
        ("BTC-USDT-SWAP", Side.SELL, Decimal("64000.1"), 50), ("BTC-USDT-SWAP", Side.BUY, Decimal(64100), 200)]
    assert reader.counters()["decode_errors"] == 0 and reader.totals()["liquidations"] == 2


@pytest.mark.parametrize("frame", [
    DOC_FUNDING.replace(b'"fundingTime":"1700726400000",', b''),
    DOC_FUNDING.replace(b'"0.0001875391284828"', b'"abc"'),
    DOC_FUNDING.replace(b'"1700724675402"', b'"17007246754O2"'),
    DOC_MARK.replace(b'"0.1"', b'"1e-1"'),
    DOC_MARK.replace(b'"0.1"', b'"0.1234567891"'),  # finer than the stats decimals (8)
    DOC_OPEN_INTEREST.replace(b'"2216113.01000000309"', b'"2216113.01000x"'),
    DOC_OPEN_INTEREST.replace(b'"2216113.01000000309"', b'-5'),
    DOC_BBO.replace(b'[["8476.98","415","0","13"]]', b'[["8476.98","415","0","13"],["8477","1","0","1"]]'),
    DOC_BBO.replace(b',"seqId":123456', b''),
    DOC_BBO.replace(b'"data":[{', b'"data":{').replace(b'}]}', b'}}'),
    DOC_LIQUIDATION.replace(b'"side":"buy"', b'"side":"long"'),
    DOC_LIQUIDATION.replace(b'"bkPx":"0.007831",', b''),
    DOC_LIQUIDATION.replace(b'"details":[', b'"details":[7,'),
    DOC_FUNDING.replace(b'"instId":"BTC-USD-SWAP"}', b'"instId":"DOGE-USD-SWAP"}'),
    DOC_INDEX.replace(b'"idxPx":"64000.125",', b''),
    DOC_INDEX.replace(b'"64000.125"', b'"64000.1250000001"'),
], ids=["funding-no-time", "funding-word", "funding-bad-ts", "mark-exponent", "mark-past-stats-decimals", "oi-garbage",
        "oi-number", "bbo-two-levels", "bbo-no-seq", "bbo-data-object", "liquidation-side", "liquidation-no-price",
        "liquidation-detail-not-object", "unknown-instrument", "index-no-price", "index-past-stats-decimals"])
def test_a_malformed_market_data_message_is_a_decode_error_that_publishes_nothing_and_costs_no_book(derivatives,
                                                                                                    frame):
    okx, reader = derivatives
    okx.on_frame(books("snapshot", DOC_ASKS, DOC_BIDS, seq=(-1, 10), inst="BTC-USD-SWAP"), 1)
    cursor = reader.events()
    okx.on_frame(frame, 2)
    assert reader.counters()["decode_errors"] == 1 and records_of(cursor) == []
    assert reader.book("BTC-USD-SWAP").valid and reader.counters("BTC-USD-SWAP")["gaps"] == 0


def test_a_plan_subscribes_each_instrument_its_channels_and_liquidations_once_per_inst_type():
    """bbo-tbt for all, funding-rate and mark-price for swaps, open-interest for swaps and futures (by
    instId); index-tickers once per index of the swaps and futures; liquidation-orders by instType on
    the first connection only (§2.8); all in one request a connection, under 64 KB (§2.2), as the 480
    requests an hour are paced 7.5 s apart."""
    okx = by_cryptofeed("OKX")
    symbols = ("BTC-USDT", "BTC-USDT-SWAP", "BTC-USD-250627")
    (connection,) = okx.plan(symbols, PlanOptions("wss://x/ws/v5/public", ""))
    (request,) = [json.loads(message) for message in connection.subscribe]
    by_channel = {}
    for arg in request["args"]:
        by_channel.setdefault(arg["channel"], []).append(arg.get("instId", arg.get("instType")))
    assert request["op"] == "subscribe" and by_channel == {
        "books": list(symbols), "trades": list(symbols), "bbo-tbt": list(symbols), "funding-rate": ["BTC-USDT-SWAP"],
        "mark-price": ["BTC-USDT-SWAP"], "open-interest": ["BTC-USDT-SWAP", "BTC-USD-250627"],
        "index-tickers": ["BTC-USDT", "BTC-USD"], "liquidation-orders": ["SWAP", "FUTURES"]}
    assert okx.protocol.symbols_of_message(request) == set(symbols)  # an index is not a book
    swaps = tuple(f"C{k}-USDT-SWAP" for k in range(40))
    first, second = okx.plan(swaps, PlanOptions("wss://x/ws/v5/public", ""))
    assert len(first.symbols) == 29 and len(first.subscribe) == len(second.subscribe) == 1
    assert b"liquidation-orders" in first.subscribe[0] and b"liquidation-orders" not in second.subscribe[0]
    indices = [[a["instId"] for a in json.loads(plan.subscribe[0])["args"] if a["channel"] == "index-tickers"]
               for plan in okx.plan(swaps + ("C0-USDT-250627",), PlanOptions("wss://x/ws/v5/public", ""))]
    assert sorted(sum(indices, [])) == sorted(f"C{k}-USDT" for k in range(40))  # C0's future shares its swap's
    assert all(len(plan.subscribe[0]) < SUBSCRIBE_MAX_BYTES for plan in (first, second))


def test_an_okx_worker_against_the_simulator_puts_every_market_data_kind_in_its_ring(tmp_path, shm_prefix):
    """`fh sim --venues okx` and `fh worker okx` on its perpetuals: what the worker subscribes by
    default reaches the ring as bbo, funding, open interest and liquidation records (funding also
    carrying the mark and the index), and the books stay valid beside them."""
    warm_kernels()
    sim = subprocess.Popen(FH + ["sim", "--venues", "okx", "--port", str(free_base_port())], cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    worker = None
    try:
        urls = json.loads(sim.stdout.readline())["okx"]
        config = tmp_path / "okx.toml"
        config.write_text(f'[run]\nprefix = "{shm_prefix}"\ncapture_dir = "{tmp_path / "captures"}"\n'
                          f'instrument_cache = "{tmp_path / "instruments"}"\n'
                          f'[venues.okx]\nsymbols = {json.dumps(VENUE_SYMBOLS["okx"])}\n'
                          f'ws_url = "{urls["ws_url"]}"\nrest_url = "{urls["rest_url"]}"\n')
        worker = subprocess.Popen(FH + ["worker", "okx", "-c", str(config)], cwd=REPO, stderr=subprocess.DEVNULL)

        def attached():
            try:
                return VenueReader("okx", prefix=shm_prefix)
            except SegmentError:
                return None
        reader = wait_for(attached, 240, "the worker's segment")
        kinds = ("bbos", "fundings", "open_interests", "liquidations")
        wait_for(lambda: all(reader.totals()[kind] > 0 for kind in kinds), 60, "a record of each kind")
        every_stat = FIELD_RATE | FIELD_MARK | FIELD_INDEX | FIELD_OPEN_INTEREST

        def complete(symbol):
            stats = reader.stats(symbol)
            return stats if stats.fields & every_stat == every_stat else None
        for symbol in VENUE_SYMBOLS["okx"]:
            stats = wait_for(lambda: complete(symbol), 30, f"the rate, mark, index and open interest of {symbol}")
            assert stats.mark_px > 0 and stats.index_px > 0 and reader.book(symbol).valid
        assert reader.totals()["decode_errors"] == 0
        reader.close()
    finally:
        for process in (worker, sim):
            if process is not None:
                process.terminate()
                process.wait(30)
