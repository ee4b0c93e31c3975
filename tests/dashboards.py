"""What every Grafana dashboard of monitoring/ must be, whatever it shows."""
from __future__ import annotations


def assert_laid_out(panels: list[dict]) -> None:
    """Unique panel ids (rows' inner panels too), every panel within the 24-column grid, none overlapping."""
    ids = [p["id"] for p in panels] + [inner["id"] for p in panels for inner in p.get("panels", [])]
    assert len(set(ids)) == len(ids)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not mine & cells, f"panel {panel['title']!r} overlaps another"
        cells |= mine
