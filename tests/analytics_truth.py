"""Comparing analytics outputs with the synthetic sessions' independently computed truths (tests and loadtest)."""

from __future__ import annotations

from streams.analytics.aggregate import merged_funnel, merged_items
from streams.analytics.synthetic import FunnelTotals, ItemTotals, Synthetic
from streams.proto.vto.v1.analytics_pb2 import AlsoTried, FunnelAggregate, ItemAggregate


def item_totals(records: list[ItemAggregate]) -> dict[tuple[int, int, str], ItemTotals]:
    """Per-partition ItemAggregates added up, in the truths' shape (all-zero entries left out)."""
    found = {}
    for key, a in merged_items(records).items():
        totals = ItemTotals(
            selections=a.selections,
            sessions=a.sessions,
            renders=a.renders,
            dwell_us_total=a.dwell_us_total,
            dwell_us=tuple(a.dwell_us),
            advised_sizes=tuple(sorted((s, n) for s, n in a.advised_sizes.items() if n)),
            carts=a.carts,
            carts_after_tryon=a.carts_after_tryon,
            purchases=a.purchases,
            purchases_after_tryon=a.purchases_after_tryon,
        )
        if totals != ItemTotals(0, 0, 0, 0, (), (), 0, 0, 0, 0):
            found[key] = totals
    return found


def funnel_totals(records: list[FunnelAggregate]) -> tuple[dict[tuple[int, int], FunnelTotals], dict[int, int]]:
    """Per-partition FunnelAggregates added up (all-zero entries left out), and late events per window size."""
    found, late = {}, {60: 0, 3600: 0}
    for key, f in merged_funnel(records).items():
        late[key[0]] += f.late_events
        totals = FunnelTotals(f.sessions, f.selected, f.tried, f.carted, f.purchased)
        if totals != FunnelTotals(0, 0, 0, 0, 0):
            found[key] = totals
    return found, late


def also_tried(records: list[AlsoTried]) -> dict[str, list[tuple[str, float, int]]]:
    return {a.item_id: [(o.item_id, round(o.score, 9), o.co_tries) for o in a.also_tried] for a in records}


def assert_matches(
    synthetic: Synthetic, items: list[ItemAggregate], funnel: list[FunnelAggregate], recommendations: list[AlsoTried]
) -> None:
    """Every aggregate equals its truth exactly (scores to 1e-9)."""
    assert item_totals(items) == synthetic.items
    found_funnel, late = funnel_totals(funnel)
    assert found_funnel == synthetic.funnel
    assert late == {60: synthetic.late_events, 3600: synthetic.late_events}
    truth = {k: [(o, round(s, 9), n) for o, s, n in v] for k, v in synthetic.also_tried.items() if v}
    assert also_tried(recommendations) == truth
