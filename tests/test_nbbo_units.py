"""The NBBO adds sizes across venues only in a common unit: a perpetual counted in contracts on one
venue and in base units on another is summed in base units, exactly; a venue whose sizes are in
another unit is left out of the symbol, not summed."""
from __future__ import annotations

import contextlib
import logging
import time
from decimal import Decimal

from feedhandler.config import RunConfig, VenueConfig
from feedhandler.instruments import PERPETUAL, Instrument
from shm.layout import Reason, Status
from shm.nbbo_reader import NbboReader
from shm.ring import publish_book, publish_status
from shm.segment import InstrumentSpec, SegmentWriter
from tests.pipeline import wait_for
from workers.aggregator import Aggregator

# BTC-USDT-PERP on three venues: base units (Binance USD-M), contracts of 0.01 BTC (OKX), and one
# that claims its contracts are worth USD (an inverse contract cannot be this symbol: left out)
BINANCE = Instrument("binance_usdm", "BTCUSDT", "BTC", "USDT", 1, 3, market=PERPETUAL)
OKX = Instrument("okx", "BTC-USDT-SWAP", "BTC", "USDT", 1, 2, market=PERPETUAL, contract_size=Decimal("0.01"),
                 contract_ccy="BTC")
ODD = InstrumentSpec("BTCUSDT", "BTC-USDT-PERP", 1, 0, 8, "USD", 100, 0)


@contextlib.contextmanager
def nbbo_of(prefix: str, specs: dict[str, InstrumentSpec]):
    """An in-process aggregator over one venue writer per spec: (aggregator, writers, NBBO reader)."""
    writers = {venue: SegmentWriter.create(prefix, venue, [spec], 4, 16) for venue, spec in specs.items()}
    config = RunConfig(prefix=prefix, venues={venue: VenueConfig(venue, ("BTC-USDT-PERP",), "", "") for venue in specs})
    aggregator = Aggregator(config)
    aggregator.start(wait_s=0)
    try:
        with NbboReader(prefix) as nbbo:
            yield aggregator, writers, nbbo
    finally:
        aggregator.close()
        for writer in writers.values():
            writer.close()


def quote(writer: SegmentWriter, bid_px: int, bid_qty: int, ask_px: int, ask_qty: int) -> None:
    now = time.time_ns()
    writer.heartbeat(now)
    publish_status(writer.ring, writer.ring_control, 0, int(Status.BOOK_VALID), int(Reason.SNAPSHOT), 0, now, now)
    publish_book(writer.ring, writer.ring_control, 0, 1, 0, now, now, bid_px, bid_qty, ask_px, ask_qty, 1, 1)


def unit(spec: InstrumentSpec) -> tuple[str, int, int]:
    return spec.size_ccy, spec.size_mant, spec.size_dec


def test_the_instrument_table_says_what_a_quantity_unit_is_worth():
    assert unit(BINANCE.spec(8)) == ("BTC", 1, 0)
    assert unit(OKX.spec(8)) == ("BTC", 1, 2)
    coinm = Instrument("binance_coinm", "BTCUSD_PERP", "BTC", "USD", 1, 0, market=PERPETUAL,
                       contract_size=Decimal("100"), contract_ccy="USD")
    assert unit(coinm.spec(8)) == ("USD", 100, 0)


def test_contracts_and_base_units_are_summed_in_base_units_exactly(shm_prefix):
    specs = {"binance_usdm": BINANCE.spec(8), "okx": OKX.spec(8)}
    with nbbo_of(shm_prefix, specs) as (aggregator, writers, nbbo):
        quote(writers["binance_usdm"], 650000, 1_500, 650010, 250)  # 1.500 BTC bid, 0.250 BTC offered
        quote(writers["okx"], 650000, 3_700, 650010, 100)  # 37 contracts of 0.01 = 0.37 BTC, 1 contract = 0.01

        def both_in():
            aggregator.housekeeping()
            aggregator.poll()
            return nbbo.included("BTC-USDT-PERP") == ("binance_usdm", "okx")
        wait_for(both_in, 30, "both venues in the NBBO")
        best = nbbo.quote("BTC-USDT-PERP")
        symbol = nbbo.instrument("BTC-USDT-PERP")
        assert symbol.size_ccy == "BTC"
        assert symbol.qty(best.bid_qty) == Decimal("1.87") and symbol.qty(best.ask_qty) == Decimal("0.26")


def test_a_venue_quoting_the_symbol_in_another_size_unit_is_left_out_and_logged(shm_prefix, caplog):
    specs = {"binance_usdm": BINANCE.spec(8), "odd": ODD}
    with caplog.at_level(logging.ERROR), nbbo_of(shm_prefix, specs) as (aggregator, writers, nbbo):
        quote(writers["binance_usdm"], 650000, 1_500, 650010, 250)
        quote(writers["odd"], 650000, 5, 650010, 5)

        def binance_in():
            aggregator.housekeeping()
            aggregator.poll()
            return nbbo.included("BTC-USDT-PERP") == ("binance_usdm",)
        wait_for(binance_in, 30, "Binance in the NBBO")
        assert nbbo.instrument("BTC-USDT-PERP").qty(nbbo.quote("BTC-USDT-PERP").bid_qty) == Decimal("1.5")
        assert "odd BTC-USDT-PERP: sizes in 'USD', the NBBO's in 'BTC'" in caplog.text
