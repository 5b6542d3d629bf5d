"""The analytics worker's arithmetic, without Kafka: per events partition, the windowed item aggregates and funnel
with their event-time watermark and grace (`Windows`), and per co-tries partition the "also tried" counts
(`AlsoTriedCounts`). Definitions: docs/analytics.md. Both keep their state as protobuf records under string keys
(the analytics state topic), so the next owner of a partition continues exactly where the last commit left off.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

from streams.analytics.pseudonym import pseudonym
from streams.proto.vto.v1.analytics_pb2 import (
    AlsoTried,
    AnalyticsSession,
    CoTry,
    CoTryCounts,
    FunnelAggregate,
    ItemAggregate,
    PartitionClock,
)
from streams.proto.vto.v1.tryon_event_pb2 import TryOnEvent

WINDOWS_S = (60, 3600)
DAY_US = 86_400_000_000
E = TryOnEvent
SELECTION = (E.TYPE_SESSION_STARTED, E.TYPE_ITEM_SELECTED)
COMMERCE = (E.TYPE_ADD_TO_CART, E.TYPE_PURCHASE)
# ItemAggregate's counters: what adds up across partitions and windows (dwell_us and advised_sizes aside)
ITEM_COUNTS = (
    "selections",
    "sessions",
    "renders",
    "dwell_us_total",
    "carts",
    "carts_after_tryon",
    "purchases",
    "purchases_after_tryon",
)


def window_start(t_us: int, size_s: int) -> int:
    return t_us - t_us % (size_s * 1_000_000)


@dataclass
class Changes:
    """What a batch changed, to publish with its offsets: aggregate records (latest value per key, `final` for the
    windows that closed), the state entries to write (None: delete), and the co-tries to route."""

    items: list[ItemAggregate] = field(default_factory=list)
    funnel: list[FunnelAggregate] = field(default_factory=list)
    also_tried: list[AlsoTried] = field(default_factory=list)
    state: dict[str, bytes | None] = field(default_factory=dict)
    cotries: list[CoTry] = field(default_factory=list)
    late: dict[int, int] = field(default_factory=dict)  # window size -> late events
    closed: dict[int, int] = field(default_factory=dict)  # window size -> windows closed


class Windows:
    """One events partition's open windows, remembered sessions and watermark (state keys start with `e/`)."""

    def __init__(self, partition: int, key: bytes, grace_s: float, session_ttl_s: float) -> None:
        self.partition, self.key = partition, key
        self.grace_us, self.ttl_us = int(grace_s * 1e6), int(session_ttl_s * 1e6)
        self.items: dict[tuple[int, int, str], ItemAggregate] = {}
        self.funnel: dict[tuple[int, int], FunnelAggregate] = {}
        self.sessions: dict[str, AnalyticsSession] = {}
        self.watermark = 0
        self.next_offset = 0  # records below it are counted (PartitionClock)
        self._moved = False  # next_offset moved since the last take_changes
        self._dirty_items: set[tuple[int, int, str]] = set()
        self._dirty_funnel: set[tuple[int, int]] = set()
        self._dirty_sessions: set[str] = set()
        self._forgotten: set[str] = set()
        self._changes = Changes()

    # -- state ------------------------------------------------------------------------------------------------
    def restore(self, key: str, value: bytes | None) -> None:
        """One state entry as read back (in offset order; None deletes)."""
        kind, _, rest = key.removeprefix("e/").partition("/")
        if kind == "clock":
            clock = PartitionClock.FromString(value or b"")
            self.watermark, self.next_offset = clock.watermark_unix_us, clock.next_offset
        elif kind == "i":
            size, start, item = rest.split("/", 2)
            ikey = (int(size), int(start), item)
            if value is None:
                self.items.pop(ikey, None)
            else:
                self.items[ikey] = ItemAggregate.FromString(value)
        elif kind == "f":
            size, start = rest.split("/")
            fkey = (int(size), int(start))
            if value is None:
                self.funnel.pop(fkey, None)
            else:
                self.funnel[fkey] = FunnelAggregate.FromString(value)
        elif kind == "s":
            if value is None:
                self.sessions.pop(rest, None)
            else:
                self.sessions[rest] = AnalyticsSession.FromString(value)

    # -- events -----------------------------------------------------------------------------------------------
    def first_time(self, offset: int) -> bool:
        """True for a record not counted yet (then it is, whatever it holds); False for one fetched again."""
        if offset < self.next_offset:
            return False
        self.next_offset, self._moved = offset + 1, True
        return True

    def add(self, event: TryOnEvent) -> None:
        """Fold one event in (docs/analytics.md): per window size unless late for it; not at all if late for all."""
        t = event.event_time_unix_us
        who = pseudonym(self.key, event.session_id)
        if event.type == E.TYPE_SESSION_ERASED:  # forgotten whenever it comes, late or not
            self.sessions.pop(who, None)
            self._dirty_sessions.discard(who)
            self._forgotten.add(who)
            return
        sizes = []
        for size in WINDOWS_S:
            if window_start(t, size) + size * 1_000_000 + self.grace_us <= self.watermark:
                funnel = self._funnel(size, window_start(self.watermark, size))
                funnel.late_events += 1
                self._changes.late[size] = self._changes.late.get(size, 0) + 1
            else:
                sizes.append(size)
        self.watermark = max(self.watermark, t)
        if not sizes:
            return
        session = self.sessions.setdefault(who, AnalyticsSession())
        session.last_unix_us = max(session.last_unix_us, t)
        self._dirty_sessions.add(who)
        self._forgotten.discard(who)
        item = event.item_id
        if event.type == E.TYPE_TRY_ON_RENDERED:
            self._tried(session, item, t)
        for size in sizes:
            start = window_start(t, size)
            if event.type in SELECTION:
                if event.type == E.TYPE_SESSION_STARTED:
                    self._once(session, size, start, "sessions")
                if item:
                    self._once(session, size, start, "selected")
                    if self._first(session, f"{size}/{start}/i/{item}/sel"):
                        self._item(size, start, item).selections += 1
            elif event.type == E.TYPE_TRY_ON_RENDERED:
                self._once(session, size, start, "tried")
                if self._first(session, f"{size}/{start}/i/{item}/try"):
                    self._item(size, start, item).sessions += 1
            elif event.type == E.TYPE_ITEM_DWELL:
                aggregate = self._item(size, start, item)
                aggregate.renders += event.frames
                aggregate.dwell_us_total += event.dwell_us
                values = list(aggregate.dwell_us)
                bisect.insort(values, event.dwell_us)
                aggregate.ClearField("dwell_us")
                aggregate.dwell_us.extend(values)
            elif event.type == E.TYPE_FIT_ADVICE:
                advised, chosen = event.fit_advice.item_id or item, event.fit_advice.size
                if chosen and self._first(session, f"{size}/{start}/i/{advised}/adv/{chosen}"):
                    self._item(size, start, advised).advised_sizes[chosen] += 1
            elif event.type in COMMERCE:
                purchase = event.type == E.TYPE_PURCHASE
                self._once(session, size, start, "purchased" if purchase else "carted")
                aggregate = self._item(size, start, item)
                _inc(aggregate, "purchases" if purchase else "carts")
                if item in session.tried and session.tried[item] <= t:
                    _inc(aggregate, "purchases_after_tryon" if purchase else "carts_after_tryon")
        if event.type in COMMERCE and not (item in session.tried and session.tried[item] <= t):
            session.without_tryon.add(purchase=event.type == E.TYPE_PURCHASE, item_id=item, time_unix_us=t)

    def _tried(self, session: AnalyticsSession, item: str, t: int) -> None:
        """A try of `item` at `t`: co-tries with the session's other items (the first time), and carts and purchases
        of the item at or after `t` counted as "not after try-on" become "after try-on" in their open windows."""
        if item not in session.tried:
            for other, other_t in sorted(session.tried.items()):
                day = max(other_t, t) // DAY_US
                self._changes.cotries += [
                    CoTry(item_id=other, other_item_id=item, day=day),
                    CoTry(item_id=item, other_item_id=other, day=day),
                ]
        elif session.tried[item] <= t:
            return
        session.tried[item] = t
        kept = []
        for seen in session.without_tryon:
            if seen.item_id != item or seen.time_unix_us < t:
                kept.append(seen)
                continue
            for size in WINDOWS_S:
                ikey = (size, window_start(seen.time_unix_us, size), item)
                if ikey in self.items and not self._closed(size, ikey[1]):  # a closed window's counts are final
                    _inc(self.items[ikey], "purchases_after_tryon" if seen.purchase else "carts_after_tryon")
                    self._dirty_items.add(ikey)
        del session.without_tryon[:]
        session.without_tryon.extend(kept)

    def _first(self, session: AnalyticsSession, key: str) -> bool:
        """True the first time the session meets `key` (a distinct count); remembered until its window closes."""
        if key in session.counted:
            return False
        session.counted.append(key)
        return True

    def _once(self, session: AnalyticsSession, size: int, start: int, stage: str) -> None:
        """Count the session at a funnel stage (a FunnelAggregate field) of the window, once."""
        if self._first(session, f"{size}/{start}/f/{stage}"):
            _inc(self._funnel(size, start), stage)

    def _item(self, size: int, start: int, item: str) -> ItemAggregate:
        key = (size, start, item)
        if key not in self.items:
            self.items[key] = ItemAggregate(
                item_id=item, window_s=size, window_start_unix_us=start, partition=self.partition
            )
        self._dirty_items.add(key)
        return self.items[key]

    def _funnel(self, size: int, start: int) -> FunnelAggregate:
        key = (size, start)
        if key not in self.funnel:
            self.funnel[key] = FunnelAggregate(window_s=size, window_start_unix_us=start, partition=self.partition)
        self._dirty_funnel.add(key)
        return self.funnel[key]

    # -- what to publish --------------------------------------------------------------------------------------
    def _closed(self, size: int, start: int) -> bool:
        return start + size * 1_000_000 + self.grace_us <= self.watermark

    def take_changes(self) -> Changes:
        """Close the windows the watermark has passed (published `final`, deleted from the state), forget sessions
        idle past the TTL, and return everything changed since the last call."""
        changes, self._changes = self._changes, Changes()
        for ikey in sorted(k for k in self.items if self._closed(k[0], k[1])):
            aggregate = self.items.pop(ikey)
            aggregate.final = True
            changes.items.append(aggregate)
            changes.state["e/i/{}/{}/{}".format(*ikey)] = None
            changes.closed[ikey[0]] = changes.closed.get(ikey[0], 0) + 1
            self._dirty_items.discard(ikey)
        for fkey in sorted(k for k in self.funnel if self._closed(*k)):
            funnel = self.funnel.pop(fkey)
            funnel.final = True
            changes.funnel.append(funnel)
            changes.state["e/f/{}/{}".format(*fkey)] = None
            changes.closed[fkey[0]] = changes.closed.get(fkey[0], 0) + 1
            self._dirty_funnel.discard(fkey)
        for ikey in sorted(self._dirty_items):
            changes.items.append(self.items[ikey])
            changes.state["e/i/{}/{}/{}".format(*ikey)] = self.items[ikey].SerializeToString()
        for fkey in sorted(self._dirty_funnel):
            changes.funnel.append(self.funnel[fkey])
            changes.state["e/f/{}/{}".format(*fkey)] = self.funnel[fkey].SerializeToString()
        for who in [w for w, s in self.sessions.items() if s.last_unix_us + self.ttl_us <= self.watermark]:
            del self.sessions[who]
            self._dirty_sessions.discard(who)
            self._forgotten.add(who)
        for who in sorted(self._dirty_sessions):
            session = self.sessions[who]
            live = [k for k in session.counted if not self._closed(int(k.split("/")[0]), int(k.split("/")[1]))]
            del session.counted[:]
            session.counted.extend(live)
            changes.state[f"e/s/{who}"] = session.SerializeToString()
        for who in sorted(self._forgotten):
            changes.state[f"e/s/{who}"] = None
        if changes.state or changes.late or self._moved:
            clock = PartitionClock(watermark_unix_us=self.watermark, next_offset=self.next_offset)
            changes.state["e/clock"] = clock.SerializeToString()
        self._moved = False
        self._dirty_items, self._dirty_funnel, self._dirty_sessions, self._forgotten = set(), set(), set(), set()
        return changes


class AlsoTriedCounts:
    """One co-tries partition's per-item daily co-try counts and the "also tried" list they give (state keys
    `c/items/<item>`, and `c/clock`)."""

    def __init__(self, top_k: int, half_life_days: float, window_days: int) -> None:
        self.top_k, self.half_life, self.window = top_k, half_life_days, window_days
        self.counts: dict[str, dict[int, dict[str, int]]] = {}
        self.next_offset = 0
        self._dirty: set[str] = set()
        self._moved = False

    def first_time(self, offset: int) -> bool:
        """As `Windows.first_time`, for the co-tries partition."""
        if offset < self.next_offset:
            return False
        self.next_offset, self._moved = offset + 1, True
        return True

    def restore(self, key: str, value: bytes | None) -> None:
        if key == "c/clock":
            self.next_offset = PartitionClock.FromString(value or b"").next_offset
            return
        item = key.removeprefix("c/items/")
        if value is None:
            self.counts.pop(item, None)
            return
        message = CoTryCounts.FromString(value)
        self.counts[item] = {day.day: dict(day.counts) for day in message.days}

    def add(self, cotry: CoTry) -> None:
        days = self.counts.setdefault(cotry.item_id, {})
        reference = max([cotry.day, *days])
        if cotry.day < reference - (self.window - 1):
            return  # older than the window: no longer counts
        day = days.setdefault(cotry.day, {})
        day[cotry.other_item_id] = day.get(cotry.other_item_id, 0) + 1
        for old in [d for d in days if d < reference - (self.window - 1)]:
            del days[old]
        self._dirty.add(cotry.item_id)

    def recommend(self, item: str) -> AlsoTried:
        days = self.counts.get(item, {})
        reference = max(days, default=0)
        scores: dict[str, float] = {}
        totals: dict[str, int] = {}
        for day in sorted(days):
            weight = 0.5 ** ((reference - day) / self.half_life)
            for other, count in sorted(days[day].items()):
                scores[other] = scores.get(other, 0.0) + count * weight
                totals[other] = totals.get(other, 0) + count
        best = sorted(scores, key=lambda other: (-scores[other], other))[: self.top_k]
        return AlsoTried(
            item_id=item,
            also_tried=[AlsoTried.Other(item_id=o, score=scores[o], co_tries=totals[o]) for o in best],
            reference_day=reference,
            half_life_days=self.half_life,
            window_days=self.window,
        )

    def take_changes(self) -> Changes:
        changes = Changes()
        for item in sorted(self._dirty):
            changes.also_tried.append(self.recommend(item))
            days = [CoTryCounts.Day(day=d, counts=c) for d, c in sorted(self.counts[item].items())]
            changes.state[f"c/items/{item}"] = CoTryCounts(item_id=item, days=days).SerializeToString()
        if self._moved:
            changes.state["c/clock"] = PartitionClock(next_offset=self.next_offset).SerializeToString()
        self._dirty, self._moved = set(), False
        return changes


def _inc(message: ItemAggregate | FunnelAggregate, name: str) -> None:
    setattr(message, name, getattr(message, name) + 1)


def merged_items(
    aggregates: Iterator[ItemAggregate] | list[ItemAggregate],
) -> dict[tuple[int, int, str], ItemAggregate]:
    """The per-partition records of each (window_s, window_start, item) added up: the item's totals."""
    merged: dict[tuple[int, int, str], ItemAggregate] = {}
    for a in aggregates:
        key = (a.window_s, a.window_start_unix_us, a.item_id)
        total = merged.setdefault(
            key, ItemAggregate(item_id=a.item_id, window_s=a.window_s, window_start_unix_us=key[1])
        )
        for name in ITEM_COUNTS:
            setattr(total, name, getattr(total, name) + getattr(a, name))
        values = sorted([*total.dwell_us, *a.dwell_us])
        total.ClearField("dwell_us")
        total.dwell_us.extend(values)
        for size, count in a.advised_sizes.items():
            total.advised_sizes[size] += count
    return merged


def merged_funnel(
    aggregates: Iterator[FunnelAggregate] | list[FunnelAggregate],
) -> dict[tuple[int, int], FunnelAggregate]:
    """The per-partition funnel records of each (window_s, window_start) added up."""
    merged: dict[tuple[int, int], FunnelAggregate] = {}
    for a in aggregates:
        key = (a.window_s, a.window_start_unix_us)
        total = merged.setdefault(key, FunnelAggregate(window_s=a.window_s, window_start_unix_us=key[1]))
        for name in ("sessions", "selected", "tried", "carted", "purchased", "late_events"):
            setattr(total, name, getattr(total, name) + getattr(a, name))
    return merged
