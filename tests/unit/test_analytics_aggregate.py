"""The analytics arithmetic (streams/analytics/aggregate.py) in-process, against synthetic sessions whose answers
are computed independently (streams/analytics/synthetic.py): exact, with events out of order within the grace,
events too late for every window, erased sessions, and a state handed to a new owner mid-stream."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from streams.analytics.aggregate import AlsoTriedCounts, Windows, merged_items, window_start
from streams.analytics.pseudonym import pseudonym
from streams.analytics.synthetic import generate
from streams.proto.vto.v1.analytics_pb2 import AlsoTried, CoTry, FunnelAggregate, ItemAggregate
from streams.proto.vto.v1.fit_advice_pb2 import FitAdvice
from streams.proto.vto.v1.tryon_event_pb2 import TryOnEvent
from tests.analytics_truth import assert_matches, funnel_totals, item_totals

KEY = b"k" * 32
GRACE_S, TTL_S = 120.0, 6 * 3600.0


class Run:
    """The analytics worker's loop without Kafka: per partition `Windows`, co-tries routed by item to one
    `AlsoTriedCounts` per routing partition, the latest record per key of each output, the state per partition."""

    def __init__(self, partitions: int = 6) -> None:
        self.partitions = partitions
        self.windows = {p: Windows(p, KEY, GRACE_S, TTL_S) for p in range(partitions)}
        self.counts = {p: AlsoTriedCounts(10, 7.0, 28) for p in range(partitions)}
        self.items: dict[tuple[int, int, str, int], ItemAggregate] = {}
        self.funnel: dict[tuple[int, int, int], FunnelAggregate] = {}
        self.also: dict[str, AlsoTried] = {}
        self.state: dict[int, dict[str, bytes]] = {p: {} for p in range(partitions)}
        self.offsets: dict[int, int] = {}

    def offer(self, partition: int, offset: int, value: bytes | None) -> None:
        """One record at its offset, as the worker's agent takes it: counted once, whatever is fetched again."""
        if self.windows[partition].first_time(offset) and value is not None:
            self.windows[partition].add(TryOnEvent.FromString(value))

    def feed(self, records: list[tuple[int, bytes, bytes | None]], batch: int = 50) -> None:
        """Records in production order; each gets its partition's next offset (as the broker gives them)."""
        for start in range(0, len(records), batch):
            touched = set()
            for partition, _, value in records[start : start + batch]:
                offset = self.offsets.get(partition, 0)
                self.offsets[partition] = offset + 1
                self.offer(partition, offset, value)
                touched.add(partition)
            for p in sorted(touched):
                self.take(p, self.windows[p].take_changes())

    def take(self, p: int, changes: object) -> None:
        for a in changes.items:  # type: ignore[attr-defined]
            self.items[(a.window_s, a.window_start_unix_us, a.item_id, a.partition)] = a
        for f in changes.funnel:  # type: ignore[attr-defined]
            self.funnel[(f.window_s, f.window_start_unix_us, f.partition)] = f
        for key, value in changes.state.items():  # type: ignore[attr-defined]
            if value is None:
                self.state[p].pop(key, None)
            else:
                self.state[p][key] = value
        routed = set()
        for cotry in changes.cotries:  # type: ignore[attr-defined]
            q = hash(cotry.item_id) % self.partitions
            self.counts[q].add(cotry)
            routed.add(q)
        for q in sorted(routed):
            for a in self.counts[q].take_changes().also_tried:
                self.also[a.item_id] = a

    def handover(self, partition: int) -> None:
        """A new owner of the partition: only what was published of its state."""
        fresh = Windows(partition, KEY, GRACE_S, TTL_S)
        for key, value in self.state[partition].items():
            fresh.restore(key, value)
        self.windows[partition] = fresh


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_aggregates_equal_the_independent_truths(seed: int) -> None:
    synthetic = generate(seed, sessions=150)
    run = Run()
    run.feed(synthetic.records)
    assert synthetic.late_events > 0 and len(synthetic.also_tried) >= 3  # the cases are exercised
    assert_matches(synthetic, list(run.items.values()), list(run.funnel.values()), list(run.also.values()))


def test_a_new_owner_continues_from_the_published_state() -> None:
    synthetic = generate(4, sessions=150)
    run = Run()
    cut = len(synthetic.records) // 2
    run.feed(synthetic.records[:cut])
    for p in range(run.partitions):
        run.handover(p)  # everything in memory is gone; the state topic's entries remain
    run.feed(synthetic.records[cut:])
    assert_matches(synthetic, list(run.items.values()), list(run.funnel.values()), list(run.also.values()))


def test_records_fetched_again_are_not_counted_again() -> None:
    # After a rebalance a consumer may be handed records it had already counted (its buffer, then the seek to the
    # committed offsets): the state's next offset skips them.
    synthetic = generate(5, sessions=80)
    run = Run()
    run.feed(synthetic.records[:300])
    again = dict(run.offsets)
    for partition, _, value in synthetic.records[250:300][::-1]:  # the last 50 again, as offsets already counted
        again[partition] -= 1
        run.offer(partition, again[partition], value)
    run.feed(synthetic.records[300:])
    assert_matches(synthetic, list(run.items.values()), list(run.funnel.values()), list(run.also.values()))


def test_without_the_offset_check_a_record_fetched_again_would_count_twice() -> None:
    synthetic = generate(5, sessions=80)
    run = Run()
    run.feed(synthetic.records)
    dwell = TryOnEvent.TYPE_ITEM_DWELL
    partition, _, value = [r for r in synthetic.records if r[2] and TryOnEvent.FromString(r[2]).type == dwell][-1]
    run.windows[partition].add(TryOnEvent.FromString(value or b""))  # the last ITEM_DWELL (open windows), twice
    run.take(partition, run.windows[partition].take_changes())
    assert item_totals(list(run.items.values())) != synthetic.items


def test_an_event_late_for_one_window_size_still_counts_in_the_other() -> None:
    w = Windows(0, KEY, GRACE_S, TTL_S)
    hour = 3600 * 1_000_000
    t0 = 10 * hour + 30 * 1_000_000
    start = TryOnEvent(session_id="a", type=TryOnEvent.TYPE_SESSION_STARTED, event_time_unix_us=t0)
    w.add(start)
    later = TryOnEvent(session_id="b", type=TryOnEvent.TYPE_SESSION_STARTED, event_time_unix_us=t0 + 5 * 60 * 1_000_000)
    w.add(later)
    late = TryOnEvent(session_id="c", type=TryOnEvent.TYPE_SESSION_STARTED, event_time_unix_us=t0 + 1_000_000)
    w.add(late)  # its minute closed 3 minutes ago; its hour is open
    changes = w.take_changes()
    funnel, late_counts = funnel_totals(changes.funnel)
    assert funnel[(3600, window_start(t0, 3600))].sessions == 3
    assert funnel[(60, window_start(t0, 60))].sessions == 1  # final, without the late one
    assert late_counts == {60: 1, 3600: 0}
    assert changes.late == {60: 1}


def test_a_purchase_before_its_try_arrives_becomes_after_try_on() -> None:
    w = Windows(0, KEY, GRACE_S, TTL_S)
    t = 1_000 * 3600 * 1_000_000
    buy = TryOnEvent(session_id="s", item_id="x", type=TryOnEvent.TYPE_PURCHASE, event_time_unix_us=t + 5_000_000)
    tried = TryOnEvent(session_id="s", item_id="x", type=TryOnEvent.TYPE_TRY_ON_RENDERED, event_time_unix_us=t)
    w.add(buy)
    first = merged_items(w.take_changes().items)
    assert {k[0]: v.purchases_after_tryon for k, v in first.items()} == {60: 0, 3600: 0}
    w.add(tried)  # arrives second, happened first
    second = merged_items(w.take_changes().items)
    assert {k[0]: (v.purchases, v.purchases_after_tryon) for k, v in second.items()} == {60: (1, 1), 3600: (1, 1)}


def test_session_ids_never_reach_the_state() -> None:
    synthetic = generate(6, sessions=40)
    run = Run()
    run.feed(synthetic.records)
    blob = b"".join(k.encode() + v for p in run.state.values() for k, v in p.items())
    blob += b"".join(a.SerializeToString() for a in run.items.values())
    assert synthetic.sessions and not any(s.session_id.encode() in blob for s in synthetic.sessions)


def test_recommendations_decay_and_drop_old_days() -> None:
    counts = AlsoTriedCounts(top_k=2, half_life_days=7.0, window_days=28)

    for _ in range(5):  # two half-lives before the others: 5 x 0.25
        counts.add(CoTry(item_id="x", other_item_id="old", day=100))
    counts.add(CoTry(item_id="x", other_item_id="new", day=114))
    counts.add(CoTry(item_id="x", other_item_id="newer", day=114))
    best = counts.recommend("x")
    assert [(o.item_id, round(o.score, 6), o.co_tries) for o in best.also_tried] == [("old", 1.25, 5), ("new", 1.0, 1)]
    counts.add(CoTry(item_id="x", other_item_id="new", day=128))  # day 100 is now out of the 28-day window
    after = counts.recommend("x")
    assert [(o.item_id, round(o.score, 6), o.co_tries) for o in after.also_tried] == [
        ("new", 1.25, 2),
        ("newer", 0.25, 1),
    ]
    assert after.reference_day == 128


def test_what_a_run_added_is_the_later_counts_minus_the_earlier() -> None:
    from streams.analytics.live import added_since, item_rows

    synthetic = generate(7, sessions=60)
    run = Run()
    cut = len(synthetic.records) // 3
    run.feed(synthetic.records[:cut])
    key = lambda a: f"{a.window_s}/{a.window_start_unix_us}/{a.item_id}/{a.partition}".encode()  # noqa: E731
    before = {key(a): ItemAggregate.FromString(a.SerializeToString()) for a in run.items.values()}
    run.feed(synthetic.records[cut:])
    after = {key(a): a for a in run.items.values()}
    rows = {r["item_id"]: r for r in item_rows(added_since(before, after), 3600)}
    whole = {r["item_id"]: r for r in item_rows(list(after.values()), 3600)}
    first = {r["item_id"]: r for r in item_rows(list(before.values()), 3600)}
    for item, total in whole.items():
        for name in ("sessions", "selections", "renders", "carts", "purchases", "purchases_after_tryon"):
            assert rows[item][name] == total[name] - first.get(item, {}).get(name, 0), (item, name)
    assert sum(r["renders"] for r in rows.values()) > 0


def ev(session: str, kind: int, t_s: float, item: str = "x", **fields: object) -> TryOnEvent:
    event = TryOnEvent(session_id=session, item_id=item, type=kind, event_time_unix_us=int(t_s * 1e6))  # type: ignore[arg-type]
    for name, value in fields.items():
        getattr(event, name).CopyFrom(value) if name == "fit_advice" else setattr(event, name, value)
    return event


BASE_S = 1_000 * 3600.0  # an hour boundary


@pytest.mark.parametrize("batched", [True, False])
def test_a_try_after_its_window_closed_does_not_change_the_final_counts(batched: bool) -> None:
    # s2 carts x at 20 s; an event at 200 s closes that minute; then s carts x at 30 s and tried it at 25 s (late for
    # the minute, in time for the hour). The minute's final record must not depend on where batches fall.
    w = Windows(0, KEY, GRACE_S, TTL_S)
    finals = []
    events = [
        ev("s2", TryOnEvent.TYPE_ADD_TO_CART, BASE_S + 20),
        ev("s3", TryOnEvent.TYPE_SESSION_STARTED, BASE_S + 200),
        ev("s", TryOnEvent.TYPE_ADD_TO_CART, BASE_S + 30),
        ev("s", TryOnEvent.TYPE_TRY_ON_RENDERED, BASE_S + 25),
    ]
    for i, event in enumerate(events):
        w.add(event)
        if not batched or i == len(events) - 1:
            finals += [a for a in w.take_changes().items if a.final and a.window_s == 60]
    assert [(a.carts, a.carts_after_tryon) for a in finals] == [(1, 0)]
    hour = merged_items(w.take_changes().items or list(w.items.values()))[(3600, int(BASE_S * 1e6), "x")]
    assert (hour.carts, hour.carts_after_tryon) == (2, 1)  # the hour is open: s's cart became after try-on


def test_an_erasure_forgets_the_session_even_when_it_comes_late() -> None:
    w = Windows(0, KEY, GRACE_S, TTL_S)
    w.add(ev("s", TryOnEvent.TYPE_TRY_ON_RENDERED, BASE_S))
    w.add(ev("other", TryOnEvent.TYPE_SESSION_STARTED, BASE_S + 3 * 3600))  # every window of the first is closed
    w.take_changes()
    w.add(ev("s", TryOnEvent.TYPE_SESSION_ERASED, BASE_S + 1))
    changes = w.take_changes()
    assert pseudonym(KEY, "s") not in w.sessions
    assert changes.state[f"e/s/{pseudonym(KEY, 's')}"] is None


def test_advice_counts_for_the_item_it_names() -> None:
    w = Windows(0, KEY, GRACE_S, TTL_S)
    advice = FitAdvice(item_id="jeans", size="M")
    w.add(ev("s", TryOnEvent.TYPE_FIT_ADVICE, BASE_S, item="tee", fit_advice=advice))
    w.add(ev("s", TryOnEvent.TYPE_FIT_ADVICE, BASE_S + 1, item="tee", fit_advice=advice))  # the same: once
    got = {k[2]: dict(a.advised_sizes) for k, a in merged_items(w.take_changes().items).items() if k[0] == 60}
    assert got == {"jeans": {"M": 1}}


def test_the_pseudonym_is_a_keyed_hash() -> None:
    assert pseudonym(KEY, "s1") == hmac.new(KEY, b"s1", hashlib.sha256).hexdigest()[:32]
    assert pseudonym(b"another key of 32 bytes........", "s1") != pseudonym(KEY, "s1")
