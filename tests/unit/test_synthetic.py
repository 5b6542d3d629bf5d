"""Synthetic sessions: the records carry the model, lateness and erasure are as intended, and the truths hold,
including on a hand-built case whose answers are worked out here by hand."""

from __future__ import annotations

import itertools
import zlib
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest

from streams.analytics import synthetic as syn
from streams.analytics.synthetic import Event, FunnelTotals, ItemTotals, Session
from streams.proto.vto.v1.tryon_event_pb2 import TryOnEvent

GRACE_US = 120_000_000


def at(hour: int, minute: int, second: int, day: int = 2) -> int:
    return int(datetime(2026, 11, day, hour, minute, second, tzinfo=UTC).timestamp()) * 1_000_000


def late_keys(synthetic: syn.Synthetic, window_s: int, grace_us: int = GRACE_US) -> set[bytes]:
    """Keys of the events that arrive when their partition's watermark is at or past their window's end + grace."""
    watermark: dict[int, int] = defaultdict(int)
    late = set()
    for partition, key, value in synthetic.records:
        if value is None:
            continue
        t = TryOnEvent.FromString(value).event_time_unix_us
        if syn.window_start(t, window_s) + window_s * 1_000_000 + grace_us <= watermark[partition]:
            late.add(key)
        watermark[partition] = max(watermark[partition], t)
    return late


def model_keys(synthetic: syn.Synthetic, too_late: bool) -> set[bytes]:
    return {
        f"{s.session_id}/{n}".encode()
        for s in synthetic.sessions
        for n, e in enumerate(s.events)
        if e.too_late == too_late
    }


@pytest.fixture(scope="module")
def generated() -> syn.Synthetic:
    return syn.generate(11)


def test_the_same_seed_gives_the_same_records_and_truths() -> None:
    assert syn.generate(5) == syn.generate(5)
    assert syn.generate(5).records != syn.generate(6).records


def test_the_records_carry_the_model(generated: syn.Synthetic) -> None:
    values: dict[bytes, tuple[int, TryOnEvent]] = {}
    for partition, key, value in generated.records:
        if value is not None and not key.endswith(b"/erased"):
            assert key not in values
            values[key] = (partition, TryOnEvent.FromString(value))
    assert generated.events == sum(value is not None for _, _, value in generated.records)
    assert len(values) == sum(len(s.events) for s in generated.sessions)
    out_of_order = 0
    position = {key: k for k, (_, key, value) in enumerate(generated.records) if value is not None}
    for s in generated.sessions:
        assert s.partition == zlib.crc32(s.session_id.encode()) % 6
        for n, event in enumerate(s.events):
            partition, message = values[f"{s.session_id}/{n}".encode()]
            assert partition == s.partition
            assert (message.session_id, message.type, message.event_time_unix_us) == (
                s.session_id,
                event.kind,
                event.time_us,
            )
            assert message.item_id == event.item_id
            assert message.dwell_us == event.dwell_us and message.frames == event.frames
            if event.kind in syn.FRAME_CAUSED:
                assert message.capture_time_unix_us == event.time_us
            if event.kind == TryOnEvent.TYPE_FIT_ADVICE:
                assert (message.fit_advice.item_id, message.fit_advice.size) == (event.item_id, event.size)
            if event.kind in (TryOnEvent.TYPE_ADD_TO_CART, TryOnEvent.TYPE_PURCHASE):
                assert (message.size, message.quantity) == (event.size, event.quantity) and event.quantity >= 1
        keys = [f"{s.session_id}/{n}".encode() for n in range(len(s.events))]
        out_of_order += sum(position[a] > position[b] for a, b in itertools.pairwise(keys))
    assert out_of_order > 10  # the jitter really reorders events


def test_tombstones_and_erasure_markers_only_for_erased_sessions(generated: syn.Synthetic) -> None:
    erased = [s for s in generated.sessions if s.erased]
    assert len(erased) == 3
    tombstones = [(partition, key) for partition, key, value in generated.records if value is None]
    expected = {(s.partition, f"{s.session_id}/{n}".encode()) for s in erased for n in range(len(s.events))}
    assert len(tombstones) == len(expected) and set(tombstones) == expected
    position = {(partition, key, value is None): k for k, (partition, key, value) in enumerate(generated.records)}
    for s in erased:
        last_event = max(position[(s.partition, f"{s.session_id}/{n}".encode(), False)] for n in range(len(s.events)))
        first_tombstone = min(
            position[(s.partition, f"{s.session_id}/{n}".encode(), True)] for n in range(len(s.events))
        )
        marker_at = position[(s.partition, f"{s.session_id}/erased".encode(), False)]
        assert last_event < first_tombstone < marker_at
        marker = TryOnEvent.FromString(generated.records[marker_at][2] or b"")
        assert marker.type == TryOnEvent.TYPE_SESSION_ERASED and marker.session_id == s.session_id
        assert marker.event_time_unix_us > s.events[-1].time_us


@pytest.mark.parametrize(("seed", "sessions", "partitions", "span_s"), [(11, 200, 6, 3 * 3600), (2, 12, 3, 1800)])
def test_exactly_the_too_late_events_are_late_and_for_every_window_size(
    seed: int, sessions: int, partitions: int, span_s: float
) -> None:
    generated = syn.generate(seed, sessions, partitions, span_s=span_s, too_late=4)
    too_late = model_keys(generated, too_late=True)
    assert len(too_late) == generated.late_events == 4
    assert late_keys(generated, 3600) == too_late
    assert late_keys(generated, 60) == too_late
    first_hour_end = syn.DEFAULT_START_US + 3600 * 1_000_000
    by_id = {s.session_id: s for s in generated.sessions}
    assert all(by_id[key.decode().split("/")[0]].events[0].time_us < first_hour_end for key in too_late)


def test_a_short_span_gets_a_session_that_moves_the_watermark_past_the_too_late_events() -> None:
    generated = syn.generate(2, sessions=12, partitions=3, span_s=1800, too_late=4)
    assert len(generated.sessions) > 12  # sessions added so that each too-late event's partition gets far enough
    assert late_keys(generated, 3600) == model_keys(generated, too_late=True)


def test_window_totals_add_up(generated: syn.Synthetic) -> None:
    live = [e for s in generated.sessions for e in s.events if not e.too_late]
    hours = {key for key in generated.items if key[0] == 3600}
    for window_s, start, item in hours:
        hour = generated.items[(window_s, start, item)]
        minutes = [
            totals
            for (w, s, i), totals in generated.items.items()
            if w == 60 and i == item and start <= s < start + 3600 * 1_000_000
        ]
        for name in ("sessions", "renders", "dwell_us_total", "carts", "carts_after_tryon", "purchases"):
            assert getattr(hour, name) == sum(getattr(m, name) for m in minutes), name
        assert hour.dwell_us == tuple(sorted(d for m in minutes for d in m.dwell_us))
        assert hour.dwell_us_total == sum(hour.dwell_us)
        assert hour.carts_after_tryon <= hour.carts and hour.purchases_after_tryon <= hour.purchases
    for window_s in syn.WINDOWS:
        items = [t for k, t in generated.items.items() if k[0] == window_s]
        funnel = {k: t for k, t in generated.funnel.items() if k[0] == window_s}
        # one TRY_ON_RENDERED per session and item, one SESSION_STARTED per session
        assert sum(t.sessions for t in items) == sum(e.kind == syn.TRIED for e in live)
        assert sum(t.sessions for t in funnel.values()) == sum(e.kind == syn.STARTED for e in live)
        assert sum(t.carts for t in items) == sum(e.kind == syn.CART for e in live)
        assert sum(t.renders for t in items) == sum(e.frames for e in live if e.kind == syn.DWELL)
        for (w, start), totals in funnel.items():
            tried = [t.sessions for (w2, s2, _), t in generated.items.items() if (w2, s2) == (w, start)]
            assert max(tried, default=0) <= totals.tried <= sum(tried)
    assert all(t != ItemTotals(0, 0, 0, 0, (), (), 0, 0, 0, 0) for t in generated.items.values())


def test_the_counts_are_not_trivial(generated: syn.Synthetic) -> None:
    hours = [t for k, t in generated.items.items() if k[0] == 3600]
    assert sum(t.carts - t.carts_after_tryon for t in hours) > 0
    assert sum(t.purchases - t.purchases_after_tryon for t in hours) > 0
    assert sum(t.purchases_after_tryon for t in hours) > 0
    assert sum(t.sessions >= 5 for t in hours) >= 10
    assert sum(len(rec) >= 3 for rec in generated.also_tried.values()) >= 5
    assert len({e.time_us // syn.DAY_US for s in generated.sessions for e in s.events}) == 2
    assert sum(f.sessions >= 30 for k, f in generated.funnel.items() if k[0] == 3600) >= 3
    after_end = [s for s in generated.sessions if s.events[-1].kind == syn.PURCHASE]
    assert after_end
    kinds = Counter(e.kind for s in generated.sessions for e in s.events)
    assert kinds[syn.POSE_LOST] > 0 and kinds[syn.POSE_LOST] == kinds[syn.POSE_FOUND]
    assert kinds[syn.STARTED] == kinds[syn.ENDED] == len(generated.sessions)


def test_also_tried_is_symmetric_when_no_day_is_dropped() -> None:
    full = syn.generate(11, top_k=100)
    co_tries = {(x, y): count for x, rec in full.also_tried.items() for y, _, count in rec}
    assert co_tries and all(co_tries[(y, x)] == count for (x, y), count in co_tries.items())
    for rec in full.also_tried.values():
        assert [r[1] for r in rec] == sorted((r[1] for r in rec), reverse=True)
        assert all(0 < score <= count for _, score, count in rec)
    top = syn.generate(11).also_tried
    assert all(top[x] == rec[:10] for x, rec in full.also_tried.items())


def tiny() -> list[Session]:
    """a: tee then dress (its dress try-on arrives too late), buys dress and, after the end, tee. b: tee then
    dress, erased. c: cap then tee, the hour after (it moves the watermark). d: the next day, tee, dress (bought
    before its try-on), and cap bought without one."""
    e = Event
    a = [
        e(syn.STARTED, at(21, 59, 0), "tee"),
        e(syn.TRIED, at(21, 59, 10), "tee"),
        e(syn.ADVICE, at(21, 59, 20), "tee", size="M"),
        e(syn.ADVICE, at(21, 59, 30), "tee", size="M"),
        e(syn.CART, at(21, 59, 40), "tee", size="M", quantity=1),
        e(syn.DWELL, at(22, 0, 5), "tee", dwell_us=3_000_000, frames=75),
        e(syn.SELECTED, at(22, 0, 10), "dress"),
        e(syn.TRIED, at(22, 0, 20), "dress", too_late=True),
        e(syn.PURCHASE, at(22, 0, 30), "dress", size="S", quantity=1),
        e(syn.DWELL, at(22, 0, 40), "dress", dwell_us=2_000_000, frames=50),
        e(syn.ENDED, at(22, 0, 50), "dress"),
        e(syn.PURCHASE, at(22, 10, 0), "tee", size="M", quantity=2),
    ]
    b = [
        e(syn.STARTED, at(21, 59, 30)),
        e(syn.SELECTED, at(21, 59, 35), "tee"),
        e(syn.TRIED, at(21, 59, 50), "tee"),
        e(syn.ADVICE, at(21, 59, 55), "tee", size="L"),
        e(syn.DWELL, at(22, 0, 15), "tee", dwell_us=1_000_000, frames=25),
        e(syn.SELECTED, at(22, 0, 20), "dress"),
        e(syn.TRIED, at(22, 1, 0), "dress"),
        e(syn.CART, at(22, 1, 10), "dress", quantity=1),
        e(syn.DWELL, at(22, 1, 20), "dress", dwell_us=4_000_000, frames=100),
        e(syn.ENDED, at(22, 1, 30), "dress"),
    ]
    c = [
        e(syn.STARTED, at(23, 2, 0), "cap"),  # 23:00 + the grace: a's dress try-on is now too late
        e(syn.TRIED, at(23, 2, 10), "cap"),
        e(syn.DWELL, at(23, 2, 20), "cap", dwell_us=6_000_000, frames=150),
        e(syn.SELECTED, at(23, 2, 30), "tee"),
        e(syn.TRIED, at(23, 2, 40), "tee"),
        e(syn.PURCHASE, at(23, 2, 50), "tee", size="XL", quantity=1),
        e(syn.DWELL, at(23, 3, 0), "tee", dwell_us=8_000_000, frames=200),
        e(syn.ENDED, at(23, 3, 10), "tee"),
    ]
    d = [
        e(syn.STARTED, at(0, 10, 0, day=3), "tee"),
        e(syn.TRIED, at(0, 10, 10, day=3), "tee"),
        e(syn.DWELL, at(0, 10, 20, day=3), "tee", dwell_us=1_000_000, frames=25),
        e(syn.SELECTED, at(0, 10, 30, day=3), "dress"),
        e(syn.PURCHASE, at(0, 10, 35, day=3), "dress", size="M", quantity=1),
        e(syn.TRIED, at(0, 10, 40, day=3), "dress"),
        e(syn.DWELL, at(0, 10, 50, day=3), "dress", dwell_us=1_000_000, frames=25),
        e(syn.SELECTED, at(0, 11, 0, day=3), "cap"),
        e(syn.PURCHASE, at(0, 11, 10, day=3), "cap", quantity=1),
        e(syn.ENDED, at(0, 11, 20, day=3), "cap"),
    ]
    return [Session("a", 0, a), Session("b", 0, b, erased=True), Session("c", 0, c), Session("d", 0, d)]


def totals(
    selections: int = 0,
    sessions: int = 0,
    dwell: tuple[tuple[int, int], ...] = (),  # (dwell_us, frames) per ITEM_DWELL
    advised: tuple[tuple[str, int], ...] = (),
    carts: tuple[int, int] = (0, 0),
    purchases: tuple[int, int] = (0, 0),
) -> ItemTotals:
    return ItemTotals(
        selections=selections,
        sessions=sessions,
        renders=sum(f for _, f in dwell),
        dwell_us_total=sum(d for d, _ in dwell),
        dwell_us=tuple(sorted(d for d, _ in dwell)),
        advised_sizes=advised,
        carts=carts[0],
        carts_after_tryon=carts[1],
        purchases=purchases[0],
        purchases_after_tryon=purchases[1],
    )


def test_a_hand_built_case_delivers_as_stated() -> None:
    synthetic = syn.from_sessions(tiny(), jitter_s=0)
    keys = [key.decode() + ("~" if value is None else "") for _, key, value in synthetic.records]
    assert keys == [
        *("a/0", "a/1", "a/2", "a/3", "b/0", "b/1", "a/4", "b/2", "b/3", "a/5", "a/6", "b/4", "b/5"),
        *("a/8", "a/9", "a/10", "b/6", "b/7", "b/8", "b/9"),
        *(f"b/{n}~" for n in range(10)),
        "b/erased",
        "a/11",
        "c/0",
        "a/7",  # right after its partition reached 23:02:00
        *(f"c/{n}" for n in range(1, 8)),
        *(f"d/{n}" for n in range(10)),
    ]
    assert synthetic.events == 12 + 10 + 1 + 8 + 10
    assert synthetic.late_events == 1
    assert late_keys(synthetic, 60) == late_keys(synthetic, 3600) == {b"a/7"}


def test_a_hand_built_case_has_the_stated_streaming_truths() -> None:
    synthetic = syn.from_sessions(tiny(), jitter_s=0)
    hour = 3600
    assert {k: t for k, t in synthetic.items.items() if k[0] == hour} == {
        (hour, at(21, 0, 0), "tee"): totals(2, 2, advised=(("L", 1), ("M", 1)), carts=(1, 1)),
        (hour, at(22, 0, 0), "tee"): totals(dwell=((3_000_000, 75), (1_000_000, 25)), purchases=(1, 1)),
        # a's dress try-on is too late: b's is the only one, and a's purchase is not after a try-on
        (hour, at(22, 0, 0), "dress"): totals(
            2, 1, dwell=((2_000_000, 50), (4_000_000, 100)), carts=(1, 1), purchases=(1, 0)
        ),
        (hour, at(23, 0, 0), "cap"): totals(1, 1, dwell=((6_000_000, 150),)),
        (hour, at(23, 0, 0), "tee"): totals(1, 1, dwell=((8_000_000, 200),), purchases=(1, 1)),
        (hour, at(0, 0, 0, day=3), "tee"): totals(1, 1, dwell=((1_000_000, 25),)),
        (hour, at(0, 0, 0, day=3), "dress"): totals(1, 1, dwell=((1_000_000, 25),), purchases=(1, 0)),
        (hour, at(0, 0, 0, day=3), "cap"): totals(1, purchases=(1, 0)),
    }
    minute = 60
    assert {k[1:] for k in synthetic.items if k[0] == minute} == {
        (at(21, 59, 0), "tee"),
        (at(22, 0, 0), "tee"),
        (at(22, 0, 0), "dress"),
        (at(22, 1, 0), "dress"),
        (at(22, 10, 0), "tee"),
        (at(23, 2, 0), "cap"),
        (at(23, 2, 0), "tee"),
        (at(23, 3, 0), "tee"),
        (at(0, 10, 0, day=3), "tee"),
        (at(0, 10, 0, day=3), "dress"),
        (at(0, 11, 0, day=3), "cap"),
    }
    assert synthetic.items[(minute, at(22, 0, 0), "dress")] == totals(2, 0, dwell=((2_000_000, 50),), purchases=(1, 0))
    assert synthetic.items[(minute, at(22, 1, 0), "dress")] == totals(0, 1, dwell=((4_000_000, 100),), carts=(1, 1))
    assert {k: t for k, t in synthetic.funnel.items() if k[0] == hour} == {
        (hour, at(21, 0, 0)): FunnelTotals(sessions=2, selected=2, tried=2, carted=1, purchased=0),
        (hour, at(22, 0, 0)): FunnelTotals(sessions=0, selected=2, tried=1, carted=1, purchased=1),
        (hour, at(23, 0, 0)): FunnelTotals(sessions=1, selected=1, tried=1, carted=0, purchased=1),
        (hour, at(0, 0, 0, day=3)): FunnelTotals(sessions=1, selected=1, tried=1, carted=0, purchased=1),
    }
    assert synthetic.funnel[(minute, at(22, 0, 0))] == FunnelTotals(0, 2, 0, 0, 1)
    # co-tries: b tee+dress and c cap+tee on the 2nd, d tee+dress on the 3rd (a's dress try-on is too late)
    older = 0.5 ** (1 / 7)
    assert synthetic.also_tried == {
        "tee": [("dress", older + 1, 2), ("cap", older, 1)],
        "dress": [("tee", older + 1, 2)],
        "cap": [("tee", 1.0, 1)],  # its own latest co-try day is the reference
    }
    assert syn.also_tried_truth(tiny(), top_k=1, half_life_days=7.0, window_days=1) == {
        "tee": [("dress", 1.0, 1)],
        "dress": [("tee", 1.0, 1)],
        "cap": [("tee", 1.0, 1)],
    }


def test_a_hand_built_case_has_the_stated_report() -> None:
    synthetic = syn.from_sessions(tiny(), jitter_s=0)
    # b is erased; a's too-late dress try-on counts
    assert syn.report_truth(synthetic) == {
        "events": 12 + 8 + 10,
        "sessions": 3,
        "top_items": [
            {"item_id": "tee", "sessions_tried": 3, "renders": 300, "dwell_s": 12.0},
            {"item_id": "dress", "sessions_tried": 2, "renders": 75, "dwell_s": 3.0},
            {"item_id": "cap", "sessions_tried": 1, "renders": 150, "dwell_s": 6.0},
        ],
        "conversion": [
            conversion("cap", 1, 0, 0.0, 1, 1, 1.0),  # d bought it without trying it
            conversion("dress", 2, 1, 0.5, 0, 0, None),  # d bought it before its try-on
            conversion("tee", 3, 2, 0.666667, 0, 0, None),
        ],
        "sizes": [
            {"item_id": "dress", "size": "M", "advised_sessions": 0, "purchased_sessions": 1},
            {"item_id": "dress", "size": "S", "advised_sessions": 0, "purchased_sessions": 1},
            {"item_id": "tee", "size": "M", "advised_sessions": 1, "purchased_sessions": 1},
            {"item_id": "tee", "size": "XL", "advised_sessions": 0, "purchased_sessions": 1},
        ],
        "dwell_vs_purchase": [
            dwell_row("cap", 0, None, 1, 6.0),
            dwell_row("dress", 2, 1.5, 0, None),
            dwell_row("tee", 2, 5.5, 1, 1.0),
        ],
    }
    assert syn.report_truth(synthetic, since_us=at(22, 0, 0), until_us=at(23, 0, 0)) == {
        "events": 7,
        "sessions": 1,
        "top_items": [{"item_id": "dress", "sessions_tried": 1, "renders": 50, "dwell_s": 2.0}],
        "conversion": [conversion("dress", 1, 1, 1.0, 0, 0, None)],
        "sizes": [
            {"item_id": "dress", "size": "S", "advised_sessions": 0, "purchased_sessions": 1},
            {"item_id": "tee", "size": "M", "advised_sessions": 0, "purchased_sessions": 1},
        ],
        "dwell_vs_purchase": [dwell_row("dress", 1, 2.0, 0, None)],
    }


def conversion(
    item: str,
    tried: int,
    tried_bought: int,
    tried_rate: float | None,
    other: int,
    other_bought: int,
    rate: float | None,
) -> dict[str, object]:
    return {
        "item_id": item,
        "tried_sessions": tried,
        "tried_purchased": tried_bought,
        "tried_rate": tried_rate,
        "not_tried_sessions": other,
        "not_tried_purchased": other_bought,
        "not_tried_rate": rate,
    }


def dwell_row(item: str, bought: int, bought_s: float | None, other: int, other_s: float | None) -> dict[str, object]:
    return {
        "item_id": item,
        "purchased_sessions": bought,
        "purchased_median_dwell_s": bought_s,
        "not_purchased_sessions": other,
        "not_purchased_median_dwell_s": other_s,
    }


def test_the_report_over_everything_is_the_report_without_bounds(generated: syn.Synthetic) -> None:
    everything = syn.report_truth(generated, since_us=0, until_us=2**62)
    assert everything == syn.report_truth(generated)
    kept = [s for s in generated.sessions if not s.erased]
    assert everything["events"] == sum(len(s.events) for s in kept)  # too-late events included
    assert everything["sessions"] == len(kept)


def test_a_too_late_event_whose_partition_never_gets_far_enough_is_refused() -> None:
    sessions = tiny()[:2]  # without c nothing reaches 23:02 on the partition
    with pytest.raises(ValueError, match="never reaches"):
        syn.from_sessions(sessions, jitter_s=0)
