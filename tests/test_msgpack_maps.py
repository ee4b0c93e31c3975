"""The numba msgpack encoder gives exactly the bytes msgpack-python gives for the same records."""
from __future__ import annotations

import msgpack
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.sinks.msgpack_maps import MapEncoder

INT64 = st.integers(-2**63, 2**63 - 1)
# msgpack's size classes change at these values: each side of every boundary
EDGES = [0, 1, 31, 32, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, -1, -32, -33, -128, -129,
         -32768, -32769, -2**31, -2**31 - 1, -2**63]


def rows_of(columns: dict[str, np.ndarray], nulls: dict[str, np.ndarray] | None = None) -> list[dict]:
    masks = {name: (nulls or {}).get(name, np.zeros(len(values), bool)) for name, values in columns.items()}
    lists = [[None if null else value for value, null in zip(values.tolist(), masks[name].tolist())]
             for name, values in columns.items()]
    return [dict(zip(columns, row)) for row in zip(*lists)]


def encoded(columns: dict[str, np.ndarray], nulls: dict[str, np.ndarray] | None = None) -> list[bytes]:
    data, ends = MapEncoder(tuple(columns)).encode(columns, nulls or {})
    return [data[start:end] for start, end in zip([0, *ends[:-1].tolist()], ends.tolist())]


def test_integers_at_every_size_boundary_pack_as_msgpack_packs_them():
    values = np.array(EDGES, np.int64)
    columns = {"value": values, "negated": -np.maximum(values, -2**63 + 1)}
    assert encoded(columns) == [msgpack.packb(row) for row in rows_of(columns)]


def test_nulls_booleans_and_strings_of_every_length_class():
    texts = np.array(["", "a", "é" * 20, "x" * 31, "y" * 32, "z" * 255, "w" * 256, "v" * 70000, None], object)
    count = len(texts)
    columns = {"text": texts, "flag": np.arange(count) % 2 == 0, "maybe": np.arange(count, dtype=np.int64),
               "maybe_flag": np.arange(count) % 2 == 1}
    nulls = {"maybe": np.arange(count) % 3 == 0, "maybe_flag": np.arange(count) % 4 == 0}
    assert encoded(columns, nulls) == [msgpack.packb(row) for row in rows_of(columns, nulls)]


def test_a_record_of_more_than_fifteen_fields_gets_a_map16_header():
    columns = {f"field_{i}": np.array([i, -i], np.int64) for i in range(20)}
    assert encoded(columns) == [msgpack.packb(row) for row in rows_of(columns)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(INT64, INT64, st.booleans(), st.sampled_from(["BTC-USD", "ETH-USD", "€uro"])),
                min_size=1, max_size=50))
def test_any_int64_records_pack_as_msgpack_packs_them(rows):
    prices, sizes, flags, symbols = zip(*rows)
    columns = {"price": np.array(prices, np.int64), "qty": np.array(sizes, np.int64), "flag": np.array(flags),
               "symbol": np.array(symbols, object)}
    nulls = {"qty": np.array(flags)}
    assert encoded(columns, nulls) == [msgpack.packb(row) for row in rows_of(columns, nulls)]
