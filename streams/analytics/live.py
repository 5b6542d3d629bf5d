"""The live aggregates as `vto analytics items`, `vto analytics funnel` and `vto analytics recommend` print them:
the latest record of each key of the aggregate topics (committed only), per-partition records added up."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from statistics import median
from typing import Any

from streams.analytics.aggregate import ITEM_COUNTS, merged_funnel, merged_items
from streams.errors import VTOError
from streams.proto.vto.v1.analytics_pb2 import AlsoTried, FunnelAggregate, ItemAggregate
from streams.session_store import read_to_end
from streams.settings import Settings


def latest(settings: Settings, topic: str) -> dict[bytes, bytes]:
    """The latest value of every key of a compacted topic (tombstones remove)."""
    values: dict[bytes, bytes] = {}
    for msg in read_to_end(settings, topic, timeout_s=120.0, group=settings.analytics_group):
        key, value = msg.key() or b"", msg.value()
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return values


def item_rows(aggregates: Iterable[ItemAggregate], window_s: int, since_us: int = 0) -> list[dict[str, Any]]:
    """Per item, the windows of `window_s` starting at or after `since_us` added up (over partitions and windows);
    most tried first."""
    chosen = [a for a in aggregates if a.window_s == window_s and a.window_start_unix_us >= since_us]
    per_item: dict[str, list[ItemAggregate]] = {}
    for (_, _, item), summed in sorted(merged_items(chosen).items()):
        per_item.setdefault(item, []).append(summed)
    rows = []
    for item, windows in per_item.items():
        dwell = sorted(v for w in windows for v in w.dwell_us)
        sizes: dict[str, int] = {}
        for w in windows:
            for size, n in w.advised_sizes.items():
                sizes[size] = sizes.get(size, 0) + n

        def total(name: str, windows: list[ItemAggregate] = windows) -> int:
            return sum(int(getattr(w, name)) for w in windows)

        rows.append(
            {
                "item_id": item,
                "sessions": total("sessions"),
                "selections": total("selections"),
                "renders": total("renders"),
                "dwell_s": round(total("dwell_us_total") / 1e6, 3),
                "median_dwell_s": round(median(dwell) / 1e6, 3) if dwell else None,
                "advised_sizes": dict(sorted(sizes.items())),
                "carts": total("carts"),
                "carts_after_tryon": total("carts_after_tryon"),
                "purchases": total("purchases"),
                "purchases_after_tryon": total("purchases_after_tryon"),
                "windows": len(windows),
                "window_s": window_s,
                "first_window_start_unix_us": min(w.window_start_unix_us for w in windows),
            }
        )
    return sorted(rows, key=lambda r: (-int(r["sessions"]), str(r["item_id"])))


def item_records(settings: Settings) -> dict[bytes, ItemAggregate]:
    """The current record of every per-item window (and partition)."""
    return {k: ItemAggregate.FromString(v) for k, v in latest(settings, settings.analytics_items_topic).items()}


def items(settings: Settings, window_s: int = 3600, since_us: int = 0) -> list[dict[str, Any]]:
    return item_rows(item_records(settings).values(), window_s, since_us)


def added_since(before: dict[bytes, ItemAggregate], after: dict[bytes, ItemAggregate]) -> list[ItemAggregate]:
    """What the sessions between two readings added, window by window: the later counts minus the earlier (the
    demo's own sessions, when nothing else ran meanwhile)."""
    added = []
    for key, now in after.items():
        was = before.get(key, ItemAggregate())
        delta = ItemAggregate(item_id=now.item_id, window_s=now.window_s, window_start_unix_us=now.window_start_unix_us)
        for name in ITEM_COUNTS:
            setattr(delta, name, getattr(now, name) - getattr(was, name))
        gone = Counter(was.dwell_us)  # the values that were there before leave once each
        for value in now.dwell_us:
            if gone[value]:
                gone[value] -= 1
            else:
                delta.dwell_us.append(value)
        for size, n in now.advised_sizes.items():
            if n - was.advised_sizes.get(size, 0):
                delta.advised_sizes[size] = n - was.advised_sizes.get(size, 0)
        added.append(delta)
    return added


def funnel(settings: Settings, window_s: int = 3600, since_us: int = 0) -> list[dict[str, Any]]:
    """The funnel per window (partitions added up), oldest first."""
    records = [FunnelAggregate.FromString(v) for v in latest(settings, settings.analytics_funnel_topic).values()]
    chosen = [f for f in records if f.window_s == window_s and f.window_start_unix_us >= since_us]
    return [
        {
            "window_start_unix_us": start,
            "window_s": size,
            "sessions": f.sessions,
            "selected": f.selected,
            "tried": f.tried,
            "carted": f.carted,
            "purchased": f.purchased,
            "late_events": f.late_events,
        }
        for (size, start), f in sorted(merged_funnel(chosen).items())
    ]


def recommend(settings: Settings, item: str) -> dict[str, Any]:
    value = latest(settings, settings.analytics_also_tried_topic).get(item.encode())
    if value is None:
        raise VTOError(f"no recommendations for {item!r} yet: no session has tried it together with another item")
    found = AlsoTried.FromString(value)
    return {
        "item_id": found.item_id,
        "also_tried": [
            {"item_id": o.item_id, "score": round(o.score, 6), "co_tries": o.co_tries} for o in found.also_tried
        ],
        "reference_day": found.reference_day,
        "half_life_days": found.half_life_days,
        "window_days": found.window_days,
    }


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Rows as an aligned text table of the given columns."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
