"""Offline analytics (docs/analytics.md, "Offline: Parquet and DuckDB"): `export` snapshots the try-on events and
the aggregate topics into date-partitioned Parquet, sessions only as pseudonyms and erased sessions left out;
`report` answers the merchandisers' questions with DuckDB SQL over the events; `render_text` and `draw_chart`
show the answer."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from google.protobuf.message import Message
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from streams.analytics.pseudonym import pseudonym
from streams.errors import SerializationError, VTOError
from streams.proto.vto.v1.analytics_pb2 import AlsoTried, FunnelAggregate, ItemAggregate
from streams.proto.vto.v1.tryon_event_pb2 import TryOnEvent
from streams.session_store import read_to_end
from streams.settings import Settings

US_PER_DAY = 86_400_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TIMESTAMP = pa.timestamp("us", tz="UTC")
M = TypeVar("M", bound=Message)

EVENTS_SCHEMA = pa.schema(
    [
        ("session", pa.string()),
        ("item_id", pa.string()),
        ("type", pa.string()),
        ("event_time", TIMESTAMP),
        ("event_time_us", pa.int64()),
        ("capture_time_us", pa.int64()),
        ("sequence", pa.uint64()),
        ("dwell_us", pa.int64()),
        ("frames", pa.uint32()),
        ("size", pa.string()),
        ("quantity", pa.uint32()),
        ("advice_item_id", pa.string()),
        ("advice_size", pa.string()),
        ("advice_runner_up", pa.string()),
        ("advice_confidence", pa.float32()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
    ]
)
ITEMS_SCHEMA = pa.schema(
    [
        ("window_s", pa.uint32()),
        ("window_start", TIMESTAMP),
        ("window_start_us", pa.int64()),
        ("item_id", pa.string()),
        ("partition", pa.uint32()),
        ("selections", pa.uint64()),
        ("sessions", pa.uint64()),
        ("renders", pa.uint64()),
        ("dwell_us_total", pa.int64()),
        ("dwell_us", pa.list_(pa.int64())),
        ("advised_sizes", pa.string()),  # JSON object: size -> sessions
        ("carts", pa.uint64()),
        ("carts_after_tryon", pa.uint64()),
        ("purchases", pa.uint64()),
        ("purchases_after_tryon", pa.uint64()),
        ("final", pa.bool_()),
    ]
)
FUNNEL_SCHEMA = pa.schema(
    [
        ("window_s", pa.uint32()),
        ("window_start", TIMESTAMP),
        ("window_start_us", pa.int64()),
        ("partition", pa.uint32()),
        ("sessions", pa.uint64()),
        ("selected", pa.uint64()),
        ("tried", pa.uint64()),
        ("carted", pa.uint64()),
        ("purchased", pa.uint64()),
        ("late_events", pa.uint64()),
        ("final", pa.bool_()),
    ]
)
ALSO_TRIED_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("rank", pa.int32()),
        ("other_item_id", pa.string()),
        ("score", pa.float64()),
        ("co_tries", pa.uint64()),
        ("reference_day", pa.int64()),
    ]
)


# --- export -------------------------------------------------------------------------------------------------------


def _latest(records: Iterable[tuple[bytes, bytes | None]]) -> list[bytes]:
    """The current value of each key of a compacted topic read in offset order (a None value deletes the key)."""
    latest: dict[bytes, bytes] = {}
    for key, value in records:
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = value
    return list(latest.values())


def _day(time_us: int) -> date:
    return date(1970, 1, 1) + timedelta(days=time_us // US_PER_DAY)


def _or_none(value: str) -> str | None:
    return value or None


def _decode(message: M, value: bytes, where: str) -> M:
    try:
        message.ParseFromString(value)
    except Exception as exc:  # protobuf raises DecodeError, sometimes other errors on garbage
        raise SerializationError(f"{where}: not a {type(message).__name__}: {exc}") from exc
    return message


def _event_rows(key: bytes, events: Iterable[tuple[int, int, bytes, bytes | None]]) -> list[dict[str, Any]]:
    """One row per current, non-erased event, in (event time, partition, offset) order."""
    latest: dict[bytes, tuple[int, int, bytes]] = {}
    for partition, offset, record_key, value in events:
        if value is None:
            latest.pop(record_key, None)
        else:
            latest[record_key] = (partition, offset, value)
    decoded = []
    for record_key, (partition, offset, value) in latest.items():
        event = _decode(TryOnEvent(), value, f"events partition {partition} offset {offset}")
        session_id = event.session_id or record_key.decode(errors="replace").rsplit("/", 1)[0]
        decoded.append((session_id, partition, offset, event))
    erased = {sid for sid, _, _, event in decoded if event.type == TryOnEvent.TYPE_SESSION_ERASED}
    names: dict[str, str] = {}
    rows = []
    for session_id, partition, offset, event in decoded:
        if session_id in erased:
            continue
        if session_id not in names:
            names[session_id] = pseudonym(key, session_id)
        is_advice, is_dwell = event.type == TryOnEvent.TYPE_FIT_ADVICE, event.type == TryOnEvent.TYPE_ITEM_DWELL
        is_commerce = event.type in (TryOnEvent.TYPE_ADD_TO_CART, TryOnEvent.TYPE_PURCHASE)
        has_frame = event.capture_time_unix_us != 0
        advice = event.fit_advice
        rows.append(
            {
                "session": names[session_id],
                "item_id": _or_none(event.item_id),
                "type": TryOnEvent.Type.Name(event.type).removeprefix("TYPE_"),
                "event_time": event.event_time_unix_us,
                "event_time_us": event.event_time_unix_us,
                "capture_time_us": event.capture_time_unix_us if has_frame else None,
                "sequence": event.sequence if has_frame else None,
                "dwell_us": event.dwell_us if is_dwell else None,
                "frames": event.frames if is_dwell else None,
                "size": _or_none(event.size) if is_commerce else None,
                "quantity": event.quantity if is_commerce else None,
                "advice_item_id": _or_none(advice.item_id) if is_advice else None,
                "advice_size": _or_none(advice.size) if is_advice else None,
                "advice_runner_up": _or_none(advice.runner_up) if is_advice else None,
                "advice_confidence": advice.confidence if is_advice else None,
                "partition": partition,
                "offset": offset,
            }
        )
    rows.sort(key=lambda row: (row["event_time_us"], row["partition"], row["offset"]))
    return rows


def _item_row(value: bytes) -> dict[str, Any]:
    agg = _decode(ItemAggregate(), value, "items topic")
    return {
        "window_s": agg.window_s,
        "window_start": agg.window_start_unix_us,
        "window_start_us": agg.window_start_unix_us,
        "item_id": agg.item_id,
        "partition": agg.partition,
        "selections": agg.selections,
        "sessions": agg.sessions,
        "renders": agg.renders,
        "dwell_us_total": agg.dwell_us_total,
        "dwell_us": list(agg.dwell_us),
        "advised_sizes": json.dumps(dict(sorted(agg.advised_sizes.items()))),
        "carts": agg.carts,
        "carts_after_tryon": agg.carts_after_tryon,
        "purchases": agg.purchases,
        "purchases_after_tryon": agg.purchases_after_tryon,
        "final": agg.final,
    }


def _funnel_row(value: bytes) -> dict[str, Any]:
    agg = _decode(FunnelAggregate(), value, "funnel topic")
    return {
        "window_s": agg.window_s,
        "window_start": agg.window_start_unix_us,
        "window_start_us": agg.window_start_unix_us,
        "partition": agg.partition,
        "sessions": agg.sessions,
        "selected": agg.selected,
        "tried": agg.tried,
        "carted": agg.carted,
        "purchased": agg.purchased,
        "late_events": agg.late_events,
        "final": agg.final,
    }


def _also_tried_rows(value: bytes) -> list[dict[str, Any]]:
    also = _decode(AlsoTried(), value, "also-tried topic")
    return [
        {
            "item_id": also.item_id,
            "rank": rank,
            "other_item_id": other.item_id,
            "score": other.score,
            "co_tries": other.co_tries,
            "reference_day": also.reference_day,
        }
        for rank, other in enumerate(also.also_tried, start=1)
    ]


def _write_by_date(
    folder: Path, column: str, rows: list[dict[str, Any]], schema: Any, time_field: str, order: list[str]
) -> None:
    """Hive-style date partitions: folder/<column>=YYYY-MM-DD/part-0.parquet (the date is in the path only)."""
    by_date: dict[date, list[dict[str, Any]]] = {}
    for row in rows:
        by_date.setdefault(_day(row[time_field]), []).append(row)
    for day, day_rows in sorted(by_date.items()):
        day_rows.sort(key=lambda row: tuple(row[name] for name in order))
        target = folder / f"{column}={day.isoformat()}"
        target.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(day_rows, schema=schema), target / "part-0.parquet")


def write_dataset(
    out: Path,
    key: bytes,
    events: Iterable[tuple[int, int, bytes, bytes | None]],
    items: Iterable[tuple[bytes, bytes | None]] = (),
    funnel: Iterable[tuple[bytes, bytes | None]] = (),
    also_tried: Iterable[tuple[bytes, bytes | None]] = (),
) -> dict[str, int]:
    """Write the dataset under `out` afresh from the topics' records (events as (partition, offset, key, value),
    the others as (key, value), each in offset order) and return the rows written per table.

    Built in a temporary sibling folder that then replaces `out`: an export is a snapshot of the topics, so a
    session erased since the last export disappears from it too."""
    event_rows = _event_rows(key, events)
    item_rows = [_item_row(value) for value in _latest(items)]
    funnel_rows = [_funnel_row(value) for value in _latest(funnel)]
    also_rows = [row for value in _latest(also_tried) for row in _also_tried_rows(value)]

    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        _write_by_date(staging / "events", "event_date", event_rows, EVENTS_SCHEMA, "event_time_us", ["event_time_us"])
        window_order = ["window_s", "window_start_us", "item_id", "partition"]
        _write_by_date(staging / "items", "window_date", item_rows, ITEMS_SCHEMA, "window_start_us", window_order)
        funnel_order = ["window_s", "window_start_us", "partition"]
        _write_by_date(staging / "funnel", "window_date", funnel_rows, FUNNEL_SCHEMA, "window_start_us", funnel_order)
        if also_rows:
            (staging / "also_tried").mkdir()
            table = pa.Table.from_pylist(also_rows, schema=ALSO_TRIED_SCHEMA)
            table = table.sort_by([("item_id", "ascending"), ("rank", "ascending")])
            pq.write_table(table, staging / "also_tried" / "part-0.parquet")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # A folder cannot be replaced in one rename: move the old one aside, move the new one in, delete the old.
    retired = None
    if out.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        out.rename(retired / out.name)
    staging.rename(out)
    if retired is not None:
        shutil.rmtree(retired)
    return {
        "events": len(event_rows),
        "items": len(item_rows),
        "funnel": len(funnel_rows),
        "also_tried": len(also_rows),
    }


def export(settings: Settings, out: Path | None = None) -> dict[str, int]:
    """`vto analytics export`: read the events and aggregate topics to their end (committed records) and write the
    Parquet dataset to `out` (default VTO_ANALYTICS_DIR). Returns the rows written per table."""

    def keyed(topic: str) -> list[tuple[bytes, bytes | None]]:
        return [(key, msg.value()) for msg in read_to_end(settings, topic) if (key := msg.key()) is not None]

    events = []
    for msg in read_to_end(settings, settings.events_topic):
        key = msg.key()
        if key is not None:
            events.append((int(msg.partition() or 0), int(msg.offset() or 0), key, msg.value()))
    return write_dataset(
        out or settings.analytics_dir,
        settings.analytics_key(),
        events,
        items=keyed(settings.analytics_items_topic),
        funnel=keyed(settings.analytics_funnel_topic),
        also_tried=keyed(settings.analytics_also_tried_topic),
    )


# --- report -------------------------------------------------------------------------------------------------------

# Over `ev`, the events of the period; `tries` is each (item, session) tried, with its first try's time.
_TRIES = """
CREATE TEMP TABLE tries AS
SELECT item_id, session, min(event_time_us) AS first_try
FROM ev WHERE type = 'TRY_ON_RENDERED' AND item_id IS NOT NULL GROUP BY item_id, session
"""
_TOP_ITEMS = """
WITH tried AS (SELECT item_id, count(*) AS sessions_tried FROM tries GROUP BY item_id),
dwell AS (
    SELECT item_id, sum(frames) AS renders, sum(dwell_us) AS dwell_us
    FROM ev WHERE type = 'ITEM_DWELL' GROUP BY item_id
)
SELECT t.item_id, t.sessions_tried, coalesce(d.renders, 0), coalesce(d.dwell_us, 0)
FROM tried t LEFT JOIN dwell d ON d.item_id = t.item_id
ORDER BY t.sessions_tried DESC, t.item_id
"""
_CONVERSION = """
WITH purchases AS (SELECT item_id, session, event_time_us FROM ev WHERE type = 'PURCHASE'),
tried AS (
    SELECT t.item_id, t.session, coalesce(bool_or(p.event_time_us >= t.first_try), false) AS bought
    FROM tries t LEFT JOIN purchases p ON p.item_id = t.item_id AND p.session = t.session
    GROUP BY t.item_id, t.session
),
not_tried AS (
    SELECT DISTINCT s.item_id, s.session,
        EXISTS (SELECT 1 FROM purchases p WHERE p.item_id = s.item_id AND p.session = s.session) AS bought
    FROM ev s
    WHERE s.type IN ('SESSION_STARTED', 'ITEM_SELECTED') AND s.item_id IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM tries t WHERE t.item_id = s.item_id AND t.session = s.session)
),
tried_counts AS (SELECT item_id, count(*) AS n, count(*) FILTER (WHERE bought) AS k FROM tried GROUP BY item_id),
not_tried_counts AS (
    SELECT item_id, count(*) AS n, count(*) FILTER (WHERE bought) AS k FROM not_tried GROUP BY item_id
)
SELECT item_id, coalesce(t.n, 0), coalesce(t.k, 0), coalesce(u.n, 0), coalesce(u.k, 0)
FROM tried_counts t FULL JOIN not_tried_counts u USING (item_id)
ORDER BY item_id
"""
_SIZES = """
WITH advised AS (
    SELECT coalesce(advice_item_id, item_id) AS item_id, advice_size AS size, count(DISTINCT session) AS n
    FROM ev WHERE type = 'FIT_ADVICE' AND advice_size IS NOT NULL GROUP BY ALL
),
purchased AS (
    SELECT item_id, size, count(DISTINCT session) AS n
    FROM ev WHERE type = 'PURCHASE' AND size IS NOT NULL GROUP BY ALL
)
SELECT item_id, size, coalesce(a.n, 0), coalesce(p.n, 0)
FROM advised a FULL JOIN purchased p USING (item_id, size)
WHERE item_id IS NOT NULL
ORDER BY item_id, size
"""
_DWELL_VS_PURCHASE = """
WITH dwell AS (
    SELECT item_id, session, sum(dwell_us)::BIGINT AS total FROM ev WHERE type = 'ITEM_DWELL' GROUP BY ALL
),
buyers AS (SELECT DISTINCT item_id, session FROM ev WHERE type = 'PURCHASE'),
per_session AS (
    SELECT t.item_id, coalesce(d.total, 0) AS total, b.session IS NOT NULL AS bought
    FROM tries t
    LEFT JOIN dwell d ON d.item_id = t.item_id AND d.session = t.session
    LEFT JOIN buyers b ON b.item_id = t.item_id AND b.session = t.session
)
SELECT item_id,
    count(*) FILTER (WHERE bought), median(total) FILTER (WHERE bought),
    count(*) FILTER (WHERE NOT bought), median(total) FILTER (WHERE NOT bought)
FROM per_session GROUP BY item_id ORDER BY item_id
"""


def _iso(time_us: int | None) -> str | None:
    return None if time_us is None else (EPOCH + timedelta(microseconds=time_us)).isoformat()


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _seconds(time_us: float | None) -> float | None:
    return None if time_us is None else round(time_us / 1e6, 6)


def report(data_dir: Path, since_us: int | None = None, until_us: int | None = None) -> dict[str, object]:
    """`vto analytics report`: the answers of docs/analytics.md over the exported events whose event time is in
    [since_us, until_us) (None: unbounded), as JSON-ready data."""
    if not any((data_dir / "events").glob("*/*.parquet")):
        raise VTOError(f"no analytics data under {data_dir}: run `vto analytics export` first")
    with duckdb.connect() as con:
        con.execute(
            "CREATE TEMP TABLE ev AS SELECT * FROM read_parquet(?, hive_partitioning = true) "
            "WHERE event_time_us >= coalesce(?, event_time_us) AND event_time_us < coalesce(?, event_time_us + 1)",
            [str(data_dir / "events" / "**" / "*.parquet"), since_us, until_us],
        )
        con.execute(_TRIES)
        totals = con.execute("SELECT count(*), count(DISTINCT session) FROM ev").fetchone()
        assert totals is not None
        top_items = con.execute(_TOP_ITEMS).fetchall()
        conversion = con.execute(_CONVERSION).fetchall()
        sizes = con.execute(_SIZES).fetchall()
        dwell = con.execute(_DWELL_VS_PURCHASE).fetchall()
    return {
        "since": _iso(since_us),
        "until": _iso(until_us),
        "events": int(totals[0]),
        "sessions": int(totals[1]),
        "top_items": [
            {"item_id": item, "sessions_tried": int(n), "renders": int(renders), "dwell_s": _seconds(int(dwell_us))}
            for item, n, renders, dwell_us in top_items
        ],
        "conversion": [
            {
                "item_id": item,
                "tried_sessions": int(tried),
                "tried_purchased": int(tried_bought),
                "tried_rate": _ratio(int(tried_bought), int(tried)),
                "not_tried_sessions": int(other),
                "not_tried_purchased": int(other_bought),
                "not_tried_rate": _ratio(int(other_bought), int(other)),
            }
            for item, tried, tried_bought, other, other_bought in conversion
        ],
        "sizes": [
            {"item_id": item, "size": size, "advised_sessions": int(advised), "purchased_sessions": int(bought)}
            for item, size, advised, bought in sizes
        ],
        "dwell_vs_purchase": [
            {
                "item_id": item,
                "purchased_sessions": int(bought),
                "purchased_median_dwell_s": _seconds(bought_median),
                "not_purchased_sessions": int(other),
                "not_purchased_median_dwell_s": _seconds(other_median),
            }
            for item, bought, bought_median, other, other_median in dwell
        ],
    }


# --- presentation -------------------------------------------------------------------------------------------------


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A titled table with aligned columns: text to the left, numbers to the right."""
    if not rows:
        return f"{title}\n  (none)"
    cells = [[_cell(row[name]) for name in columns] for row in rows]
    widths = [max(len(name), *(len(line[i]) for line in cells)) for i, name in enumerate(columns)]
    numeric = [not isinstance(rows[0][name], str) for name in columns]

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  " + "  ".join(parts).rstrip()

    rule = "  " + "  ".join("-" * w for w in widths)
    return "\n".join([title, line(columns), rule, *(line(values) for values in cells)])


def _period(report: dict[str, Any]) -> str:
    since, until = report.get("since"), report.get("until")
    if since is None and until is None:
        return "all events"
    return f"events from {since or 'the first'} to {until or 'the last'}"


def render_text(report: dict[str, Any]) -> str:
    """The report as tables for a terminal, one titled table per question."""
    head = f"Try-on analytics, {_period(report)}: {report['events']} events, {report['sessions']} sessions"
    sections = [
        head,
        _table(
            "Top items tried (sessions that saw themselves wearing the item)",
            report["top_items"],
            ["item_id", "sessions_tried", "renders", "dwell_s"],
        ),
        _table(
            "Conversion with vs without try-on (sessions; purchase at or after the first try)",
            report["conversion"],
            [
                "item_id",
                "tried_sessions",
                "tried_purchased",
                "tried_rate",
                "not_tried_sessions",
                "not_tried_purchased",
                "not_tried_rate",
            ],
        ),
        _table(
            "Size distribution (sessions advised each size, sessions that purchased it)",
            report["sizes"],
            ["item_id", "size", "advised_sessions", "purchased_sessions"],
        ),
        _table(
            "Dwell vs purchase (median total dwell per session that tried the item, seconds)",
            report["dwell_vs_purchase"],
            [
                "item_id",
                "purchased_sessions",
                "purchased_median_dwell_s",
                "not_purchased_sessions",
                "not_purchased_median_dwell_s",
            ],
        ),
    ]
    return "\n\n".join(sections) + "\n"


def draw_chart(report: dict[str, Any], path: Path, top: int = 15) -> None:
    """One PNG of the `top` items by sessions that tried them: on the left those sessions and, of them, the ones
    that purchased after trying; on the right each item's conversion with vs without try-on."""
    conversion = {row["item_id"]: row for row in report["conversion"]}
    items = [row["item_id"] for row in report["top_items"][:top]][::-1]  # best at the top
    tried = [row["sessions_tried"] for row in report["top_items"][:top]][::-1]
    positions = list(range(len(items)))
    figure = Figure(figsize=(14, 2 + 0.4 * max(len(items), 5)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, sharey=True)

    left.barh(positions, tried, height=0.8, color="#4c72b0", label="sessions that tried it")
    bought = [conversion[item]["tried_purchased"] for item in items]
    left.barh(positions, bought, height=0.45, color="#dd8452", label="of those, purchased after trying")
    left.set_yticks(positions, items)
    left.set_xlabel("sessions")
    left.set_title(f"Top {len(items)} items tried on")
    left.legend(loc="best")

    half = 0.4
    for offset, name, label, colour in (
        (half / 2, "tried_rate", "tried it on", "#55a868"),
        (-half / 2, "not_tried_rate", "selected it, did not try it on", "#8c8c8c"),
    ):
        rates = [100 * (conversion[item][name] or 0) for item in items]
        right.barh([p + offset for p in positions], rates, height=half, color=colour, label=label)
    right.set_xlabel("sessions that purchased the item (%)")
    right.set_xlim(0, 100)
    right.set_title("Conversion with vs without try-on")
    right.legend(loc="best")

    figure.suptitle(f"Try-on analytics, {_period(report)}: {report['sessions']} sessions, {report['events']} events")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
