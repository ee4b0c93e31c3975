"""`fh plan -c CONFIG [--json]`: every connection the venue workers would open (URL), every message
they would send on it (subscriptions), how they keep it alive, and every REST request (method, URL,
weight) for start-up and for a full resync, without touching the network.

The plan comes from the same `Venue` objects the workers run, so what it prints is what they do.
Venue symbols come from the instrument cache when it holds the venue's metadata, else from the
venue's documented naming form (`symbols_from` says which).
"""
from __future__ import annotations

import json

from feedhandler.config import RunConfig, VenueConfig
from feedhandler.instrument_cache import DEFAULT_DIRECTORY, InstrumentCache, InstrumentCacheError
from feedhandler.instruments import FUTURE, Instrument, split_symbol
from feedhandler.venues import VENUES
from feedhandler.venues.base import Venue


def _instruments(venue: Venue, config: VenueConfig, cache: InstrumentCache) -> tuple[list[Instrument], str]:
    try:
        cached = cache.load(config.name)
    except InstrumentCacheError:
        cached = None
    if cached is not None:
        instruments, source = cached[0], "instrument cache"
    else:
        instruments = [Instrument(venue.name, venue.symbol_form_of(market).format(base=base, quote=quote), base,
                                  quote, 0, 0, market=market)  # a future's date is in no naming form: metadata only
                       for base, quote, market in map(split_symbol, config.symbols) if market != FUTURE]
        forms = sorted({venue.symbol_form_of(split_symbol(s)[2]) for s in config.symbols} - {""})
        source = f"naming form {', '.join(forms)} (no cached metadata)"
    by_symbol = {i.symbol: i for i in venue.protocol.wire_instruments(instruments, config.ws_url)}
    return [by_symbol[s] for s in config.symbols if s in by_symbol], source


def _rest(request) -> dict:
    return {"method": request.method, "url": request.url, "weight": request.weight}


def _keepalive(venue: Venue, config: VenueConfig) -> dict:
    limits, stale = venue.limits, config.stale_after_s
    if limits.heartbeat_s:
        rule = {"ping": None, "reconnect": f"after {stale:g} s without a message (the venue sends heartbeats "
                                           f"every {limits.heartbeat_s:g} s)"}
    else:
        rule = {"ping": f"a WebSocket ping after {stale:g} s with nothing received",
                "reconnect": f"after {2 * stale:g} s with nothing received, pings and pongs included"}
    if limits.client_ping_s:
        rule["send"] = f"{venue.protocol.keepalive().decode()} every {limits.client_ping_s:g} s"
    lifetime = config.rotate_after_s or (limits.lifetime_s - limits.rotate_margin_s if limits.lifetime_s else None)
    return rule | {"rotate_after_s": lifetime}


def venue_plan(config: VenueConfig, cache: InstrumentCache) -> dict:
    venue = VENUES[config.name]
    instruments, source = _instruments(venue, config, cache)
    options = config.plan_options()
    symbols = tuple(i.venue_symbol for i in instruments)
    plans = venue.plan(symbols, options)
    snapshots = [venue.protocol.snapshot_request(symbol, options) for symbol in symbols]
    rest_snapshots = [_rest(r) for r in snapshots if r is not None]
    limits = venue.limits
    return {
        "venue": venue.notes,
        "symbols_from": source,
        "books": {i.symbol: i.venue_symbol for i in instruments},
        "connections": [{"url": plan.url, "books": list(plan.symbols),
                         "send": [message.decode() for message in plan.subscribe]} for plan in plans],
        "keepalive": _keepalive(venue, config),

        "pacing": {"messages": f"{limits.messages.count} per {limits.messages.per_s:g} s per {limits.messages.scope}",
                   "connections": f"{limits.connections.count} per {limits.connections.per_s:g} s per "
                                  f"{limits.connections.scope}"},
        "rest": {
            "startup": [{"method": "GET", "url": url, "weight": limits.instruments_weight} for url in sorted(
                {venue.instruments_url(config.rest_url, split_symbol(s)[2]) for s in config.symbols})] + rest_snapshots,
            "resync": rest_snapshots,
        },
        "resync_messages": [] if rest_snapshots else [
            {"connection": k, "send": [m.decode() for m in venue.protocol.resubscribe(plan.symbols, options, 100)]}
            for k, plan in enumerate(plans)],
    }


def plan(config: RunConfig) -> dict:
    cache = InstrumentCache(config.instrument_cache or DEFAULT_DIRECTORY)
    venues = {name: venue_plan(venue, cache) for name, venue in config.venues.items()}
    return {"config": config.source, "venues": venues}


def text(result: dict) -> str:
    lines = [f"plan of {result['config']}"]
    for name, venue in result["venues"].items():
        lines.append(f"\n[{name}] {venue['venue']}")
        lines.append(f"  books: {', '.join(f'{s} ({w})' for s, w in venue['books'].items())}"
                     f"  (symbols from {venue['symbols_from']})")
        for k, connection in enumerate(venue["connections"]):
            lines.append(f"  connection {k}: {connection['url']}")
            lines += [f"    send {message}" for message in connection["send"]]
        keepalive = venue["keepalive"]
        lines.append(f"  keepalive: {keepalive['ping'] or 'no pings'}; reconnect {keepalive['reconnect']}"
                     + (f"; rotate after {keepalive['rotate_after_s']:g} s" if keepalive["rotate_after_s"] else ""))
        lines.append(f"  pacing: messages {venue['pacing']['messages']}, connections {venue['pacing']['connections']}")
        for phase in ("startup", "resync"):
            for request in venue["rest"][phase]:
                lines.append(f"  REST {phase}: {request['method']} {request['url']} (weight {request['weight']})")
        for resync in venue["resync_messages"]:
            lines += [f"  resync on connection {resync['connection']}: send {m}" for m in resync["send"]]
    return "\n".join(lines)


def main(config: RunConfig, as_json: bool) -> int:
    result = plan(config)
    print(json.dumps(result, indent=1) if as_json else text(result))
    return 0
