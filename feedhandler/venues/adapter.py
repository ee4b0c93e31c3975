"""What a venue is, as data: endpoints, channels and limits, and the connections a set of symbols
needs (URL and subscribe messages). No I/O happens here: workers open what these describe."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class VenueAdapter:
    name: str
    ws_url: str
    rest_url: str
    channels: dict[str, str]  # our channel name -> the venue's stream/channel template
    snapshot_path: str = ""  # REST book snapshot, formatted with the venue symbol
    instruments_path: str = ""  # REST instrument metadata
    limits: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ConnectionPlan:
    """One WebSocket connection: where to, which books it carries, what to send once open."""

    url: str
    symbols: tuple[str, ...]  # venue symbols
    subscribe: tuple[bytes, ...] = ()


def shards(symbols: list[str], per_connection: int) -> list[tuple[str, ...]]:
    """`symbols` in groups of at most `per_connection`, in order."""
    if per_connection < 1:
        raise ValueError(f"per_connection must be >= 1, got {per_connection}")
    return [tuple(symbols[k:k + per_connection]) for k in range(0, len(symbols), per_connection)]
