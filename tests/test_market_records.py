"""The derivatives market-data records (bbo, funding, open interest, liquidation): what a venue step
publishes through feed_kernels.publish_stats reaches readers as events, and funding / open interest as
the instrument's latest stats, partial venue updates merged with what was sent before."""
from decimal import Decimal

import numpy as np
import pytest

from feedhandler.feed_kernels import KIND_BBO, KIND_FUNDING, KIND_LIQUIDATION, KIND_OPEN_INTEREST, publish_stats
from feedhandler.publish import output_of
from readers import in_process_reader
from shm.histogram import HIST_WORDS
from shm.layout import FIELD_INDEX, FIELD_MARK, FIELD_OPEN_INTEREST, FIELD_RATE, FIELD_FUNDING_TIME, Side
from shm.reader import BboEvent, FundingEvent, LiquidationEvent, OpenInterestEvent, funding_rate
from shm.segment import InstrumentSpec, SegmentWriter

SPEC = [InstrumentSpec("BTCUSDT", "BTC-USDT-PERP", 1, 3, 100), InstrumentSpec("ETHUSDT", "ETH-USDT-PERP", 2, 3, 100)]
I64 = np.int64


def values(*words: int) -> tuple:
    return tuple(I64(w) for w in words + (0,) * (5 - len(words)))


@pytest.fixture
def venue(shm_prefix):
    writer = SegmentWriter.create(shm_prefix, "binance_usdm", SPEC, 5, 64)
    out = output_of(writer, np.zeros((3, HIST_WORDS), np.int64))
    yield out, in_process_reader("binance_usdm", shm_prefix)
    writer.close()


def test_each_kind_reaches_a_reader_as_its_event_with_exact_fields_and_is_counted(venue):
    out, reader = venue
    cursor = reader.events()
    publish_stats(KIND_BBO, I64(0), I64(77), I64(1_000), I64(2_000), values(650001, 1500, 650002, 2500), out)
    publish_stats(KIND_OPEN_INTEREST, I64(1), I64(0), I64(1_100), I64(2_100), values(123456789), out)
    publish_stats(KIND_LIQUIDATION, I64(0), I64(0), I64(1_200), I64(2_200),
                  values(649990, 14, int(Side.SELL), int(Side.BUY)), out)
    bbo, oi, liquidation = cursor.poll()
    assert isinstance(bbo, BboEvent) and (bbo.update_id, bbo.bid_px, bbo.bid_qty, bbo.ask_px, bbo.ask_qty) == (
        77, 650001, 1500, 650002, 2500)
    assert bbo.instrument.symbol == "BTC-USDT-PERP" and (bbo.ts_exchange, bbo.ts_recv) == (1_000, 2_000)
    assert isinstance(oi, OpenInterestEvent) and oi.instrument.symbol == "ETH-USDT-PERP"
    assert reader.instrument(1).qty(oi.open_interest) == Decimal("123456.789")
    assert isinstance(liquidation, LiquidationEvent) and (liquidation.side, liquidation.venue_side) == (
        Side.SELL, Side.BUY)
    assert reader.instrument(0).price(liquidation.price) == Decimal("64999.0") and liquidation.qty == 14
    assert reader.counters("BTC-USDT-PERP")["bbos"] == 1 and reader.counters("BTC-USDT-PERP")["liquidations"] == 1
    assert reader.totals()["open_interests"] == 1 and reader.totals()["fundings"] == 0


def test_a_partial_funding_update_carries_the_fields_it_named_and_the_rest_as_last_sent(venue):
    out, reader = venue
    cursor = reader.events()
    rate = 100_000_000_000_000  # 0.0001 at 18 decimals
    publish_stats(KIND_FUNDING, I64(0), I64(0), I64(5_000), I64(6_000),
                  values(rate, 1_700_000_000_000_000_000, 650000, 649990, FIELD_RATE | FIELD_FUNDING_TIME | FIELD_MARK
                         | FIELD_INDEX), out)
    publish_stats(KIND_FUNDING, I64(0), I64(0), I64(5_500), I64(6_500), values(0, 0, 650100, 0, FIELD_MARK), out)
    full, mark_only = cursor.poll()
    assert isinstance(full, FundingEvent) and funding_rate(full.rate) == Decimal("0.0001")
    assert isinstance(mark_only, FundingEvent) and mark_only.fields == FIELD_MARK
    assert (mark_only.rate, mark_only.next_funding_ns, mark_only.mark_px, mark_only.index_px) == (
        rate, 1_700_000_000_000_000_000, 650100, 649990)
    stats = reader.stats("BTC-USDT-PERP")
    assert (stats.funding_rate, stats.mark_px, stats.index_px, stats.ts_exchange) == (rate, 650100, 649990, 5_500)
    assert stats.has(FIELD_RATE) and not stats.has(FIELD_OPEN_INTEREST) and stats.fresh  # its writer is alive


def test_open_interest_is_kept_beside_funding_and_an_instrument_never_sent_any_reads_all_zero(venue):
    out, reader = venue
    publish_stats(KIND_FUNDING, I64(1), I64(0), I64(1), I64(2), values(-5, 0, 0, 0, FIELD_RATE), out)
    publish_stats(KIND_OPEN_INTEREST, I64(1), I64(0), I64(3), I64(4), values(42), out)
    stats = reader.stats("ETH-USDT-PERP")
    assert (stats.funding_rate, stats.open_interest, stats.fields) == (-5, 42, FIELD_RATE | FIELD_OPEN_INTEREST)
    assert funding_rate(stats.funding_rate) == Decimal("-0.000000000000000005")
    untouched = reader.stats("BTC-USDT-PERP")
    assert (untouched.fields, untouched.funding_rate, untouched.open_interest) == (0, 0, 0)
