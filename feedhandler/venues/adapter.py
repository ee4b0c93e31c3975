"""What a venue is, as data: endpoints, channels and limits. No I/O happens here."""
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
