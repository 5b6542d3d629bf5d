"""Synthetic shopper sessions as try-on event records, with the analytics answers computed from the session model
itself, never by replaying the records: the truths the streaming aggregates and the report are tested against
(docs/analytics.md)."""

from __future__ import annotations

import heapq
import itertools
import random
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from streams.proto.vto.v1.fit_advice_pb2 import FitAdvice
from streams.proto.vto.v1.tryon_event_pb2 import TryOnEvent

DEFAULT_ITEMS: tuple[str, ...] = (
    "tee-white",
    "tee-black",
    "dress-red",
    "jeans-slim",
    "glasses-round",
    "hoodie-grey",
    "jacket-denim",
    "shirt-blue",
    "skirt-pleated",
    "cap-red",
    "glasses-aviator",
    "dress-black",
)
SIZES: tuple[str, ...] = ("XS", "S", "M", "L", "XL")
WINDOWS: tuple[int, ...] = (60, 3600)
DEFAULT_START_US = int(datetime(2026, 11, 2, 21, 30, tzinfo=UTC).timestamp()) * 1_000_000  # the span crosses midnight
SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US
FRAME_US = 40_000  # 25 frames per second: the sequence number of a frame-caused event

STARTED = TryOnEvent.TYPE_SESSION_STARTED
SELECTED = TryOnEvent.TYPE_ITEM_SELECTED
TRIED = TryOnEvent.TYPE_TRY_ON_RENDERED
POSE_LOST = TryOnEvent.TYPE_POSE_LOST
POSE_FOUND = TryOnEvent.TYPE_POSE_FOUND
ENDED = TryOnEvent.TYPE_SESSION_ENDED
ADVICE = TryOnEvent.TYPE_FIT_ADVICE
ERASED = TryOnEvent.TYPE_SESSION_ERASED
DWELL = TryOnEvent.TYPE_ITEM_DWELL
CART = TryOnEvent.TYPE_ADD_TO_CART
PURCHASE = TryOnEvent.TYPE_PURCHASE
FRAME_CAUSED = frozenset({TRIED, DWELL, ADVICE, POSE_LOST, POSE_FOUND})

Record = tuple[int, bytes, bytes | None]


@dataclass(frozen=True)
class Event:
    """One event of the model. `size`: the advised size (FIT_ADVICE) or the chosen one (ADD_TO_CART, PURCHASE)."""

    kind: TryOnEvent.Type.ValueType
    time_us: int
    item_id: str = ""
    size: str = ""
    quantity: int = 0
    dwell_us: int = 0
    frames: int = 0
    sequence: int = 0
    too_late: bool = False  # delivered after its partition passed its 3600-s window's end plus the grace


@dataclass
class Session:
    """A shopper session: its events in event-time order (the key's n is the index), all on one partition."""

    session_id: str
    partition: int
    events: list[Event]
    erased: bool = False


@dataclass(frozen=True)
class ItemTotals:
    selections: int
    sessions: int
    renders: int
    dwell_us_total: int
    dwell_us: tuple[int, ...]  # ascending
    advised_sizes: tuple[tuple[str, int], ...]  # sorted by size, counts > 0 only
    carts: int
    carts_after_tryon: int
    purchases: int
    purchases_after_tryon: int


@dataclass(frozen=True)
class FunnelTotals:
    sessions: int
    selected: int
    tried: int
    carted: int
    purchased: int


@dataclass
class Synthetic:
    records: list[Record]  # (partition, key, TryOnEvent bytes or None: a tombstone), in production order
    items: dict[tuple[int, int, str], ItemTotals]  # (window_s, window_start_unix_us, item_id), over partitions
    funnel: dict[tuple[int, int], FunnelTotals]  # (window_s, window_start_unix_us), over partitions
    late_events: int  # events delivered too late for every window size
    also_tried: dict[str, list[tuple[str, float, int]]]  # item -> [(other item, score, co-tries)], best first
    sessions: list[Session]
    events: int  # TryOnEvent records (not tombstones) in records


def window_start(time_us: int, window_s: int) -> int:
    return time_us - time_us % (window_s * SECOND_US)


def is_selection(event: Event) -> bool:
    return event.kind == SELECTED or (event.kind == STARTED and event.item_id != "")


def generate(
    seed: int,
    sessions: int = 200,
    partitions: int = 6,
    items: Sequence[str] = DEFAULT_ITEMS,
    start_us: int = DEFAULT_START_US,
    span_s: float = 3 * 3600,
    jitter_s: float = 60.0,
    too_late: int = 5,
    erased: int = 3,
    grace_s: float = 120.0,
    top_k: int = 10,
    half_life_days: float = 7.0,
    window_days: int = 28,
) -> Synthetic:
    """`sessions` random sessions starting in [start_us, start_us + span_s), `erased` of them erased and `too_late`
    events of sessions of the first hour delivered too late for every window (plus, when a partition needs one, a
    session that moves its watermark far enough), in records delivered up to `jitter_s` out of order."""
    rng = random.Random(seed)
    span_us = round(span_s * SECOND_US)
    grace_us = round(grace_s * SECOND_US)
    weights = [len(items) - i for i in range(len(items))]  # a few popular items, so that pairs recur
    model: list[Session] = []
    for i in range(sessions):
        session_id = f"syn-{seed}-{i}"
        partition = zlib.crc32(session_id.encode()) % partitions
        model.append(random_session(rng, session_id, partition, start_us + rng.randrange(span_us), items, weights))

    for i in rng.sample(range(sessions), erased):
        model[i].erased = True
    candidates = [
        (i, n)
        for i, session in enumerate(model)
        if not session.erased and session.events[0].time_us < start_us + 3600 * SECOND_US
        for n in range(len(session.events))
    ]
    chosen = sorted(rng.sample(candidates, too_late))  # (session index, event index)

    # A too-late event needs its partition to see an event at or after its hour's end plus the grace.
    latest = [0] * partitions
    for i, session in enumerate(model):
        for n, event in enumerate(session.events):
            if (i, n) not in chosen:
                latest[session.partition] = max(latest[session.partition], event.time_us)
    next_index = sessions
    for i, n in chosen:
        session = model[i]
        needed = window_start(session.events[n].time_us, 3600) + 3600 * SECOND_US + grace_us
        if latest[session.partition] >= needed:
            continue
        while zlib.crc32(f"syn-{seed}-{next_index}".encode()) % partitions != session.partition:
            next_index += 1
        filler = random_session(rng, f"syn-{seed}-{next_index}", session.partition, needed + SECOND_US, items, weights)
        next_index += 1
        model.append(filler)
        latest[session.partition] = filler.events[-1].time_us
    for i, n in chosen:
        model[i].events[n] = replace(model[i].events[n], too_late=True)

    return from_sessions(
        model,
        seed=seed,
        jitter_s=jitter_s,
        grace_s=grace_s,
        top_k=top_k,
        half_life_days=half_life_days,
        window_days=window_days,
    )


def random_session(
    rng: random.Random, session_id: str, partition: int, start_us: int, items: Sequence[str], weights: list[int]
) -> Session:
    """1 to 5 looks at items, each selected, maybe rendered (advice, pose noise, dwell), maybe carted or bought."""
    events: list[Event] = []
    tried: set[str] = set()
    looked: list[str] = []
    t = start_us
    current = ""
    for look in range(rng.randint(1, 5)):
        item = rng.choices(items, weights)[0]
        while item == current:
            item = rng.choices(items, weights)[0]
        if look == 0 and rng.random() < 0.5:
            events.append(Event(STARTED, t, item))
        else:
            if look == 0:
                events.append(Event(STARTED, t))
            t += gap_us(rng)
            events.append(Event(SELECTED, t, item))
        current = item
        looked.append(item)
        rendered = rng.random() < 0.75
        if rendered:
            t += gap_us(rng)
            if item not in tried:
                tried.add(item)
                events.append(Event(TRIED, t, item, sequence=(t - start_us) // FRAME_US))
            size = rng.choice(SIZES)
            for _ in range(rng.randint(0, 2)):
                t += gap_us(rng)
                events.append(Event(ADVICE, t, item, size=size, sequence=(t - start_us) // FRAME_US))
                if rng.random() < 0.6:  # else the advice changed but not its size
                    size = rng.choice(SIZES)
            if rng.random() < 0.2:
                t += gap_us(rng)
                events.append(Event(POSE_LOST, t, item, sequence=(t - start_us) // FRAME_US))
                t += gap_us(rng)
                events.append(Event(POSE_FOUND, t, item, sequence=(t - start_us) // FRAME_US))
        if rng.random() < (0.35 if rendered else 0.15):
            t += gap_us(rng)
            events.append(Event(CART, t, item, size=rng.choice((*SIZES, "")), quantity=rng.randint(1, 3)))
        if rng.random() < (0.25 if rendered else 0.1):
            t += gap_us(rng)
            events.append(Event(PURCHASE, t, item, size=rng.choice((*SIZES, "")), quantity=rng.randint(1, 2)))
        if rendered:
            t += gap_us(rng)
            dwell_us = 2_000 * rng.randint(500, 20_000)  # whole milliseconds: medians in seconds stay exact
            frames = rng.randint(1, dwell_us // FRAME_US + 1)
            events.append(Event(DWELL, t, item, dwell_us=dwell_us, frames=frames, sequence=(t - start_us) // FRAME_US))
    t += gap_us(rng)
    events.append(Event(ENDED, t, current))
    if rng.random() < 0.1:
        t += rng.randint(60, 600) * SECOND_US
        events.append(Event(PURCHASE, t, rng.choice(looked), size=rng.choice(SIZES), quantity=1))
    return Session(session_id, partition, events)


def gap_us(rng: random.Random) -> int:
    return rng.randint(2 * SECOND_US, 40 * SECOND_US)


def from_sessions(
    model: list[Session],
    *,
    seed: int = 0,
    jitter_s: float = 60.0,
    grace_s: float = 120.0,
    top_k: int = 10,
    half_life_days: float = 7.0,
    window_days: int = 28,
) -> Synthetic:
    """The records and the truths of given sessions (events flagged `too_late` are delivered after their partition
    has seen an event at or after their hour's end plus the grace)."""
    for session in model:
        check_session(session)
    records = deliver(model, random.Random(seed), jitter_s, grace_s)
    return Synthetic(
        records=records,
        items=item_truths(model),
        funnel=funnel_truths(model),
        late_events=sum(event.too_late for session in model for event in session.events),
        also_tried=also_tried_truth(model, top_k, half_life_days, window_days),
        sessions=model,
        events=sum(value is not None for _, _, value in records),
    )


def check_session(session: Session) -> None:
    times = [event.time_us for event in session.events]
    if not times or any(a >= b for a, b in itertools.pairwise(times)):
        raise ValueError(f"{session.session_id}: event times must be strictly increasing")
    tries = [event.item_id for event in session.events if event.kind == TRIED]
    if len(tries) != len(set(tries)):
        raise ValueError(f"{session.session_id}: more than one TRY_ON_RENDERED of an item")
    if session.erased and any(event.too_late for event in session.events):
        raise ValueError(f"{session.session_id}: an erased session's events are all delivered before its erasure")
    for event in session.events:
        if event.kind == DWELL and (event.dwell_us <= 0 or event.frames < 1):
            raise ValueError(f"{session.session_id}: ITEM_DWELL needs dwell_us > 0 and frames >= 1")
        if event.kind in (CART, PURCHASE) and event.quantity < 1:
            raise ValueError(f"{session.session_id}: a cart or purchase needs a quantity")


def to_proto(session_id: str, event: Event) -> TryOnEvent:
    message = TryOnEvent(
        session_id=session_id, item_id=event.item_id, type=event.kind, event_time_unix_us=event.time_us
    )
    if event.kind in FRAME_CAUSED:
        message.capture_time_unix_us = event.time_us
        message.sequence = event.sequence
    if event.kind == ADVICE:
        runner_up = SIZES[(SIZES.index(event.size) + 1) % len(SIZES)] if event.size in SIZES else ""
        message.fit_advice.CopyFrom(FitAdvice(item_id=event.item_id, size=event.size, runner_up=runner_up))
        message.fit_advice.confidence = 0.75
    elif event.kind == DWELL:
        message.dwell_us = event.dwell_us
        message.frames = event.frames
    elif event.kind in (CART, PURCHASE):
        message.size = event.size
        message.quantity = event.quantity
    return message


def deliver(model: list[Session], rng: random.Random, jitter_s: float, grace_s: float) -> list[Record]:
    """Each partition delivers its events in order of event time plus a jitter under the grace (so none is late), an
    erased session's tombstones and SESSION_ERASED after all its events, and each too-late event right after its
    partition's first event at or after its hour's end plus the grace."""
    jitter_us = round(jitter_s * SECOND_US)
    grace_us = round(grace_s * SECOND_US)
    if jitter_us >= grace_us:
        raise ValueError("the jitter must stay under the grace, or events would be late")
    # per partition: (delivery key, session index, order in the session, event time or -1, record)
    queued: dict[int, list[tuple[int, int, int, int, Record]]] = defaultdict(list)
    late: list[tuple[int, int, Record]] = []  # (partition, watermark it waits for, record)
    for i, session in enumerate(model):
        sid, partition = session.session_id, session.partition
        last_key = 0
        for n, event in enumerate(session.events):
            record: Record = (partition, f"{sid}/{n}".encode(), to_proto(sid, event).SerializeToString())
            if event.too_late:
                late.append((partition, window_start(event.time_us, 3600) + 3600 * SECOND_US + grace_us, record))
                continue
            key = event.time_us + (rng.randrange(jitter_us) if jitter_us else 0)
            last_key = max(last_key, key)
            queued[partition].append((key, i, n, event.time_us, record))
        if session.erased:
            erased_us = session.events[-1].time_us + SECOND_US
            key = max(last_key, erased_us + (rng.randrange(jitter_us) if jitter_us else 0))
            count = len(session.events)
            for n in range(count):
                queued[partition].append((key, i, count + n, -1, (partition, f"{sid}/{n}".encode(), None)))
            marker = TryOnEvent(session_id=sid, type=ERASED, event_time_unix_us=erased_us).SerializeToString()
            queued[partition].append((key, i, 2 * count, -1, (partition, f"{sid}/erased".encode(), marker)))

    ordered: dict[int, list[tuple[int, Record]]] = {}
    for partition, entries in queued.items():
        entries.sort(key=lambda entry: entry[:3])
        after: dict[int, list[Record]] = defaultdict(list)  # index of the triggering entry -> too-late records
        for late_partition, needed, record in late:
            if late_partition != partition:
                continue
            trigger = next((k for k, entry in enumerate(entries) if entry[3] >= needed), None)
            if trigger is None:
                raise ValueError(f"partition {partition} never reaches {needed} for a too-late event")
            after[trigger].append(record)
        ordered[partition] = []
        for k, entry in enumerate(entries):
            ordered[partition].append((entry[0], entry[4]))
            ordered[partition].extend((entry[0], record) for record in after[k])
    if any(partition not in ordered for partition, _, _ in late):
        raise ValueError("a too-late event's partition has no other event")
    merged = heapq.merge(*(ordered[partition] for partition in sorted(ordered)), key=lambda entry: entry[0])
    return [record for _, record in merged]


@dataclass
class _ItemCounts:
    selections: set[str] = field(default_factory=set)
    sessions: set[str] = field(default_factory=set)
    renders: int = 0
    dwell_us: list[int] = field(default_factory=list)
    advised: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    carts: int = 0
    carts_after_tryon: int = 0
    purchases: int = 0
    purchases_after_tryon: int = 0


def item_truths(model: list[Session]) -> dict[tuple[int, int, str], ItemTotals]:
    """Per window size, window and item, over every session (erased ones too), too-late events left out."""
    counts: dict[tuple[int, int, str], _ItemCounts] = defaultdict(_ItemCounts)
    for session in model:
        sid = session.session_id
        live = [event for event in session.events if not event.too_late]
        tried_us = {event.item_id: event.time_us for event in live if event.kind == TRIED}
        for event in live:
            if not (is_selection(event) or event.kind in (TRIED, DWELL, ADVICE, CART, PURCHASE)):
                continue
            after_tryon = event.item_id in tried_us and tried_us[event.item_id] <= event.time_us
            for window_s in WINDOWS:
                c = counts[(window_s, window_start(event.time_us, window_s), event.item_id)]
                if is_selection(event):
                    c.selections.add(sid)
                elif event.kind == TRIED:
                    c.sessions.add(sid)
                elif event.kind == DWELL:
                    c.renders += event.frames
                    c.dwell_us.append(event.dwell_us)
                elif event.kind == ADVICE:
                    c.advised[event.size].add(sid)
                elif event.kind == CART:
                    c.carts += 1
                    c.carts_after_tryon += after_tryon
                elif event.kind == PURCHASE:
                    c.purchases += 1
                    c.purchases_after_tryon += after_tryon
    return {
        key: ItemTotals(
            selections=len(c.selections),
            sessions=len(c.sessions),
            renders=c.renders,
            dwell_us_total=sum(c.dwell_us),
            dwell_us=tuple(sorted(c.dwell_us)),
            advised_sizes=tuple((size, len(c.advised[size])) for size in sorted(c.advised)),
            carts=c.carts,
            carts_after_tryon=c.carts_after_tryon,
            purchases=c.purchases,
            purchases_after_tryon=c.purchases_after_tryon,
        )
        for key, c in sorted(counts.items())
    }


def funnel_truths(model: list[Session]) -> dict[tuple[int, int], FunnelTotals]:
    """Distinct sessions per stage, window size and window, over every session, too-late events left out."""
    stages: dict[tuple[int, int], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for session in model:
        for event in session.events:
            if event.too_late:
                continue
            names = []
            if event.kind == STARTED:
                names.append("sessions")
            if is_selection(event):
                names.append("selected")
            if event.kind == TRIED:
                names.append("tried")
            elif event.kind == CART:
                names.append("carted")
            elif event.kind == PURCHASE:
                names.append("purchased")
            for window_s in WINDOWS:
                for name in names:
                    stages[(window_s, window_start(event.time_us, window_s))][name].add(session.session_id)
    return {
        key: FunnelTotals(
            sessions=len(s["sessions"]),
            selected=len(s["selected"]),
            tried=len(s["tried"]),
            carted=len(s["carted"]),
            purchased=len(s["purchased"]),
        )
        for key, s in sorted(stages.items())
        if s
    }


def also_tried_truth(
    model: list[Session], top_k: int, half_life_days: float, window_days: int
) -> dict[str, list[tuple[str, float, int]]]:
    """Each pair of items a session tried (not too late) is one co-try, on the UTC day of the later try."""
    counts: dict[str, dict[int, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for session in model:
        tried_us = {e.item_id: e.time_us for e in session.events if e.kind == TRIED and not e.too_late}
        names = sorted(tried_us)
        for k, x in enumerate(names):
            for y in names[k + 1 :]:
                day = max(tried_us[x], tried_us[y]) // DAY_US
                counts[x][day][y] += 1
                counts[y][day][x] += 1
    result: dict[str, list[tuple[str, float, int]]] = {}
    for x in sorted(counts):
        reference = max(counts[x])
        scores: dict[str, float] = {}
        co_tries: dict[str, int] = {}
        for day in sorted(counts[x]):  # oldest first: the order the scores are summed in
            if day < reference - (window_days - 1):
                continue
            weight = 0.5 ** ((reference - day) / half_life_days)
            for y, count in sorted(counts[x][day].items()):
                scores[y] = scores.get(y, 0.0) + count * weight
                co_tries[y] = co_tries.get(y, 0) + count
        ranked = sorted(scores, key=lambda y: (-scores[y], y))[:top_k]
        result[x] = [(y, scores[y], co_tries[y]) for y in ranked]
    return result


def report_truth(synthetic: Synthetic, since_us: int | None = None, until_us: int | None = None) -> dict[str, object]:
    """What `vto analytics report --json` answers: over the events of sessions not erased (too-late ones included)
    with event time in [since_us, until_us)."""
    kept: list[tuple[str, Event]] = [
        (session.session_id, event)
        for session in synthetic.sessions
        if not session.erased
        for event in session.events
        if (since_us is None or event.time_us >= since_us) and (until_us is None or event.time_us < until_us)
    ]
    tried: dict[str, set[str]] = defaultdict(set)
    first_try_us: dict[tuple[str, str], int] = {}
    selected: dict[str, set[str]] = defaultdict(set)
    renders: dict[str, int] = defaultdict(int)
    dwell_us: dict[str, int] = defaultdict(int)
    session_dwell_us: dict[tuple[str, str], int] = defaultdict(int)
    purchases_us: dict[tuple[str, str], list[int]] = defaultdict(list)
    advised: dict[tuple[str, str], set[str]] = defaultdict(set)
    bought_size: dict[tuple[str, str], set[str]] = defaultdict(set)
    for sid, event in kept:
        item = event.item_id
        if is_selection(event):
            selected[item].add(sid)
        if event.kind == TRIED:
            tried[item].add(sid)
            first_try_us[(sid, item)] = min(event.time_us, first_try_us.get((sid, item), event.time_us))
        elif event.kind == DWELL:
            renders[item] += event.frames
            dwell_us[item] += event.dwell_us
            session_dwell_us[(sid, item)] += event.dwell_us
        elif event.kind == ADVICE and event.size:
            advised[(item, event.size)].add(sid)
        elif event.kind == PURCHASE:
            purchases_us[(sid, item)].append(event.time_us)
            if event.size:
                bought_size[(item, event.size)].add(sid)

    top_items = [
        {
            "item_id": item,
            "sessions_tried": len(tried[item]),
            "renders": renders[item],
            "dwell_s": seconds(dwell_us[item]),
        }
        for item in sorted(tried, key=lambda item: (-len(tried[item]), item))
    ]
    conversion = []
    for item in sorted(set(tried) | set(selected)):
        tried_sids = tried.get(item, set())
        tried_purchased = sum(
            any(t >= first_try_us[(sid, item)] for t in purchases_us.get((sid, item), [])) for sid in tried_sids
        )
        not_tried = selected.get(item, set()) - tried_sids
        not_tried_purchased = sum((sid, item) in purchases_us for sid in not_tried)
        conversion.append(
            {
                "item_id": item,
                "tried_sessions": len(tried_sids),
                "tried_purchased": tried_purchased,
                "tried_rate": rate(tried_purchased, len(tried_sids)),
                "not_tried_sessions": len(not_tried),
                "not_tried_purchased": not_tried_purchased,
                "not_tried_rate": rate(not_tried_purchased, len(not_tried)),
            }
        )
    sizes = [
        {
            "item_id": item,
            "size": size,
            "advised_sessions": len(advised.get((item, size), set())),
            "purchased_sessions": len(bought_size.get((item, size), set())),
        }
        for item, size in sorted(set(advised) | set(bought_size))
    ]
    dwell_vs_purchase = []
    for item in sorted(tried):
        bought = [session_dwell_us.get((sid, item), 0) for sid in tried[item] if (sid, item) in purchases_us]
        not_bought = [session_dwell_us.get((sid, item), 0) for sid in tried[item] if (sid, item) not in purchases_us]
        dwell_vs_purchase.append(
            {
                "item_id": item,
                "purchased_sessions": len(bought),
                "purchased_median_dwell_s": median_s(bought),
                "not_purchased_sessions": len(not_bought),
                "not_purchased_median_dwell_s": median_s(not_bought),
            }
        )
    return {
        "events": len(kept),
        "sessions": len({sid for sid, _ in kept}),
        "top_items": top_items,
        "conversion": conversion,
        "sizes": sizes,
        "dwell_vs_purchase": dwell_vs_purchase,
    }


def seconds(us: int) -> float:
    return round(us / 1e6, 6)


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def median_s(values_us: list[int]) -> float | None:
    if not values_us:
        return None
    ordered = sorted(values_us)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return round(ordered[middle] / 1e6, 6)
    return round((ordered[middle - 1] + ordered[middle]) / 2 / 1e6, 6)
