"""The blocked sorted run against a plain dict: every change, walk and drop, in every block layout."""
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedhandler import run_kernels as r


class Run:
    """One run in its own slab, driven from Python."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.levels = np.zeros((r.run_rows(capacity), 2), np.int64)
        blocks = r.run_blocks(capacity)
        self.state = r.run_clear(self.levels, (0, blocks, 0, 0, 0))

    def set(self, key: int, qty: int) -> int:
        self.state, status = r.run_set(self.levels, self.state, key, qty, self.capacity)
        return status

    def gather(self, keys: np.ndarray, qtys: np.ndarray) -> None:
        """Replace the run with ascending rows, written from the slab's first row and dealt out
        (as a snapshot loads one)."""
        self.levels[:len(keys), 0] = keys
        self.levels[:len(keys), 1] = qtys
        self.state = r.run_spread_gathered(self.levels, self.state, len(keys))

    def rows(self) -> list[tuple[int, int]]:
        """Best first, by the walk the book's readers use."""
        out = []
        block, index = r.walk_start(self.levels, self.state)
        while block >= self.state[r.R_LO]:
            row = r.walk_row(self.levels, self.state, block, index)
            out.append((int(self.levels[row, 0]), int(self.levels[row, 1])))
            block, index = r.walk_next(self.levels, self.state, block, index)
        return out

    def check(self, reference: dict[int, int]) -> None:
        assert self.rows() == sorted(reference.items(), reverse=True)
        assert self.state[r.R_N] == len(reference)
        if reference:
            assert tuple(self.levels[r.run_top(self.levels, self.state)]) == max(reference.items())
            assert tuple(self.levels[r.run_bottom(self.levels, self.state)]) == min(reference.items())
        blocks, lo, hi = self.state[r.R_BLOCKS], self.state[r.R_LO], self.state[r.R_HI]
        directory = self.levels[blocks * r.RUN_BLOCK:]
        lengths, starts = directory[:, 0] & 255, directory[:, 0] >> 8
        assert lengths.sum() == len(reference)
        assert all(starts[b] + lengths[b] <= r.RUN_BLOCK for b in range(blocks) if lengths[b])
        assert all(lengths[b] == 0 for b in range(blocks) if not lo <= b < hi)
        firsts = directory[lo:hi, 1].tolist()
        assert firsts == sorted(firsts), "the directory's first keys must ascend where the run is"


def reference_set(reference: dict[int, int], key: int, qty: int) -> None:
    if qty:
        reference[key] = qty
    else:
        reference.pop(key, None)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 300), st.lists(st.tuples(st.integers(-2000, 2000), st.integers(0, 3)), max_size=400))
def test_random_changes_match_a_dict_while_the_run_has_room(capacity, changes):
    run, reference = Run(capacity), {}
    for key, qty in changes:
        if qty and key not in reference and len(reference) >= capacity:
            continue  # a full run drops its worst: the next test's subject
        run.set(key, qty)
        reference_set(reference, key, qty)
        run.check(reference)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 100), st.lists(st.tuples(st.integers(-500, 500), st.integers(0, 3)), max_size=300))
def test_a_full_run_keeps_its_best_levels(capacity, changes):
    run, reference = Run(capacity), {}
    for key, qty in changes:
        status = run.set(key, qty)
        if qty and key not in reference and len(reference) >= capacity:
            worst = min(reference)
            assert status == r.RUN_FULL
            if key < worst:
                continue
            del reference[worst]
        reference_set(reference, key, qty)
        run.check(reference)


@pytest.mark.parametrize("order", ["ascending", "descending", "random"])
def test_a_deep_run_built_level_by_level_then_changed_anywhere_matches_a_dict(order):
    rng = random.Random(20261207)
    run, reference = Run(20_000), {}
    keys = list(range(0, 3 * 20_000, 3))
    if order == "descending":
        keys.reverse()
    elif order == "random":
        rng.shuffle(keys)
    for key in keys:
        run.set(key, key + 1)
        reference[key] = key + 1
    run.check(reference)
    for step in range(20_000):
        key = rng.randrange(-10, 3 * 20_000 + 10)
        qty = 0 if rng.random() < 0.5 else rng.randint(1, 99)
        if qty and key not in reference and len(reference) >= run.capacity:
            continue
        run.set(key, qty)
        reference_set(reference, key, qty)
        if step % 2000 == 0:
            run.check(reference)
    run.check(reference)


def test_dropping_the_worst_rows_and_dealing_gathered_rows_out():
    run, reference = Run(1000), {}
    keys = np.arange(0, 5000, 5, dtype=np.int64)
    qtys = keys + 7
    run.gather(keys, qtys)
    reference = {int(k): int(q) for k, q in zip(keys, qtys)}
    run.check(reference)
    run.state = r.run_drop_bottom(run.levels, run.state, 130)
    for key in sorted(reference)[:130]:
        del reference[key]
    run.check(reference)
    run.gather(keys[400:], qtys[400:])
    run.check({int(k): int(q) for k, q in zip(keys[400:], qtys[400:])})


def test_full_blocks_pass_rows_to_the_nearest_block_with_room_either_way():
    """Two full blocks: a new worst level goes to the empty block below, a new level inside the top
    one sends that block's best row to the block above."""
    run, reference = Run(1000), {}
    for key in range(0, 96 * 4, 4):  # two blocks of 48, the run growing upwards
        run.set(key, 1)
        reference[key] = 1
    lo = run.state[r.R_LO]
    for key in list(range(1, 64 * 4, 4))[:16] + list(range(48 * 4 + 1, 96 * 4, 4))[:16]:
        run.set(key, 2)  # 16 more rows in each: both full
        reference[key] = 2
    assert [int(run.levels[r.run_rows(1000) - r.run_blocks(1000) + b, 0]) & 255 for b in (lo, lo + 1)] == [64, 64]
    run.set(-4, 3)
    reference[-4] = 3
    run.check(reference)
    assert run.state[r.R_LO] == lo - 1
    run.set(48 * 4 + 2, 4)
    reference[48 * 4 + 2] = 4
    run.check(reference)
