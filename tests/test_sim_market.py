"""The simulator's market and venue encoders, checked through the real feeds: a client that follows
each venue's rules must end with the market's book, valid, with every checksum and sequence intact."""
import pytest

from feedhandler.venues.binance import BinanceFeed
from feedhandler.venues.coinbase import CoinbaseFeed
from feedhandler.venues.kraken import KrakenFeed
from feedhandler.instruments import Instrument
from shm.fixedpoint import format_decimal
from readers import in_process_reader
from shm.segment import SegmentWriter
from feedhandler.sim_market import ASK, BID, Market
from feedhandler.venues.binance import BinanceEncoder
from feedhandler.venues.coinbase import CoinbaseAdvancedEncoder
from feedhandler.venues.kraken import KrakenV2Encoder
from tools.sim.server import Simulator

STEPS = 1500
T0 = 1_790_000_000_000_000_000


def text(rows, px_dec, qty_dec):
    return [[format_decimal(p, px_dec), format_decimal(q, qty_dec)] for p, q in rows]


def test_the_market_is_never_crossed_and_keeps_its_depth_bounded():
    market = Market(mid=6_500_000, seed=3, max_levels=100)
    for _ in range(5000):
        step = market.step()
        assert market.best(BID) < market.best(ASK)
        assert 0 < len(market.sides[BID]) <= 100 and 0 < len(market.sides[ASK]) <= 100
        assert all(qty > 0 for side in market.sides for qty in side.values())
        assert all(trade.qty > 0 for trade in step.trades)


def test_the_same_seed_gives_the_same_market():
    one, two = Market(mid=6_500_000, seed=9), Market(mid=6_500_000, seed=9)
    assert [one.step().changes for _ in range(300)] == [two.step().changes for _ in range(300)]


def replay(feed, frames_of_step, market):
    trades = 0
    for k in range(STEPS):
        step = market.step()
        trades += len(step.trades)
        for frame in frames_of_step(market, step, T0 + k * 1_000_000):
            feed.on_frame(frame, T0 + k * 1_000_000)
    return trades


@pytest.fixture
def segment(shm_prefix):
    def create(venue, instrument, capacity=512):
        writer = SegmentWriter.create(shm_prefix, venue, [instrument.spec(capacity)], depth=10, ring_slots=1 << 14)
        return writer, in_process_reader(venue, shm_prefix)
    return create


def test_binance_frames_bridge_and_track_the_market(segment):
    instrument = Instrument("binance", "BTCUSDT", "BTC", "USDT", 2, 8)
    writer, reader = segment("binance", instrument)
    market, encoder = Market(mid=6_500_000, seed=4), BinanceEncoder("BTCUSDT", 2, 8)
    feed = BinanceFeed([instrument], writer, capacity=512)
    first = market.step()
    for frame in encoder.frames(market, first, T0):  # diffs buffer until the snapshot bridges them
        feed.on_frame(frame, T0)
    feed.on_snapshot("BTCUSDT", encoder.snapshot(market), T0)
    trades = replay(feed, encoder.frames, market)
    book = reader.book("BTC-USDT", depth=10)
    assert book.valid and book.update_id == encoder.update_id
    assert book.levels_text("bids") == text(market.top(BID, 10), 2, 8)
    assert book.levels_text("asks") == text(market.top(ASK, 10), 2, 8)
    counters = reader.counters("BTC-USDT")
    assert (counters["gaps"], counters["crossed"], reader.counters()["decode_errors"]) == (0, 0, 0)
    assert counters["trades"] == trades + len(first.trades) and trades > 0
    writer.close()


def test_kraken_v2_frames_keep_every_checksum(segment):
    instrument = Instrument("kraken", "BTC/USD", "BTC", "USD", 1, 8)
    writer, reader = segment("kraken", instrument)
    market, encoder = Market(mid=650_000, seed=5), KrakenV2Encoder("BTC/USD", 1, 8, depth=10)
    feed = KrakenFeed([instrument], writer, capacity=512)
    feed.on_frame(encoder.snapshot(market), T0)
    trades = replay(feed, encoder.frames, market)
    book = reader.book("BTC-USD", depth=10)
    counters = reader.counters("BTC-USD")
    assert book.valid and counters["checksum_fail"] == 0 and counters["checksum_ok"] > STEPS // 2
    assert book.levels_text("bids") == text(market.top(BID, 10), 1, 8)
    assert book.levels_text("asks") == text(market.top(ASK, 10), 1, 8)
    assert reader.counters()["decode_errors"] == 0 and counters["trades"] == trades > 0
    writer.close()


def test_coinbase_frames_keep_the_sequence_and_the_full_book(segment):
    instrument = Instrument("coinbase", "BTC-USD", "BTC", "USD", 2, 8)
    writer, reader = segment("coinbase", instrument)
    market, encoder = Market(mid=6_500_000, seed=6), CoinbaseAdvancedEncoder("BTC-USD", 2, 8)
    feed = CoinbaseFeed([instrument], writer, capacity=512)
    feed.on_frame(encoder.snapshot(market, T0), T0)
    trades = replay(feed, encoder.frames, market)
    book = reader.book("BTC-USD", depth=10)
    counters = reader.counters("BTC-USD")
    assert book.valid and (counters["gaps"], counters["crossed"]) == (0, 0)
    assert book.levels_text("bids") == text(market.top(BID, 10), 2, 8)
    assert book.levels_text("asks") == text(market.top(ASK, 10), 2, 8)
    assert (book.n_bids, book.n_asks) == (len(market.sides[BID]), len(market.sides[ASK]))
    assert reader.counters()["decode_errors"] == 0 and counters["trades"] == trades > 0
    writer.close()


def venue_touches(simulator, symbol):
    """Each venue's (best bid, best ask) of `symbol`, in 1e-8 quote units."""
    touches = {}
    for name, venue in simulator.venues.items():
        for venue_symbol, inst in venue.instruments.items():
            if inst.symbol == symbol:
                tick = 10 ** (8 - inst.px_dec)
                market = venue.markets[venue_symbol]
                touches[name] = (market.best(BID) * tick, market.best(ASK) * tick)
    return touches


def cross_venue_nbbos(allow_crosses, steps=3000):
    """The best bid and ask of BTC-USDT over its three venues after each market step of any venue (the
    references move every 6 steps, as at 20 steps/s they do every 0.1 s)."""
    simulator = Simulator.synthetic(["binance", "coinbase", "kraken"], allow_crosses=allow_crosses)
    references = {id(r): r for venue in simulator.venues.values() for r in venue.references.values()}.values()
    order = [(venue, symbol) for venue in simulator.venues.values() for symbol in venue.markets]
    nbbos = []
    for k in range(steps):
        if k % 6 == 0:
            for reference in references:
                reference.advance()
        venue, symbol = order[k % len(order)]
        venue.step(symbol, T0 + k)
        touches = venue_touches(simulator, "BTC-USDT")
        bid_venue = max(touches, key=lambda name: touches[name][0])
        nbbos.append((touches[bid_venue][0], min(ask for _, ask in touches.values()), bid_venue))
    return nbbos


def test_the_simulated_venues_never_quote_through_each_other_yet_take_turns_at_the_best_bid():
    nbbos = cross_venue_nbbos(allow_crosses=False)
    assert all(bid < ask for bid, ask, _ in nbbos)
    assert len({venue for _, _, venue in nbbos}) == 3


def test_allow_crosses_lets_the_venues_cross_each_other():
    assert any(bid >= ask for bid, ask, _ in cross_venue_nbbos(allow_crosses=True))
