"""The offline export and report (streams/analytics/offline.py): Parquet written from the topics' records, erased
sessions and raw session ids absent, and the DuckDB report checked against hand-computed answers and against the
synthetic sessions' independently computed truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from pydantic import SecretStr

from streams.analytics import offline, synthetic
from streams.analytics.pseudonym import pseudonym
from streams.errors import VTOError
from streams.proto.vto.v1.analytics_pb2 import AlsoTried, FunnelAggregate, ItemAggregate
from streams.proto.vto.v1.fit_advice_pb2 import FitAdvice
from streams.proto.vto.v1.tryon_event_pb2 import TryOnEvent
from streams.settings import Settings

KEY = b"offline-test-key-0123456789"
T0 = 1_709_337_540_000_000  # 2024-03-01T23:59:00Z: the sessions cross midnight
S = 1_000_000
T = TryOnEvent
# Raw session ids distinctive enough to search the files' bytes for.
S1, S2, S3, S4, S5, S6 = (f"raw-session-{n}-c0ffee" for n in range(1, 7))


def event(session: str, kind: TryOnEvent.Type.ValueType, at_s: float, item: str = "", **fields: Any) -> bytes:
    message = T(session_id=session, type=kind, item_id=item, event_time_unix_us=T0 + int(at_s * S), **fields)
    return message.SerializeToString()


def numbered(records: list[tuple[int, bytes, bytes | None]]) -> list[tuple[int, int, bytes, bytes | None]]:
    """(partition, key, value) in production order -> (partition, offset, key, value), offsets per partition."""
    offsets: dict[int, int] = {}
    out = []
    for partition, key, value in records:
        offset = offsets.get(partition, 0)
        offsets[partition] = offset + 1
        out.append((partition, offset, key, value))
    return out


def records(erase_s4: bool = True) -> list[tuple[int, int, bytes, bytes | None]]:
    """Six sessions whose report is computed by hand in `test_report_known_answer`."""
    r: list[tuple[int, bytes, bytes | None]] = []

    def add(partition: int, session: str, n: int, value: bytes | None) -> None:
        r.append((partition, f"{session}/{n}".encode(), value))

    add(0, S1, 1, event(S1, T.TYPE_SESSION_STARTED, 0, "A"))
    add(0, S1, 2, event(S1, T.TYPE_TRY_ON_RENDERED, 1, "A", capture_time_unix_us=T0 + S, sequence=30))
    add(0, S1, 3, event(S1, T.TYPE_FIT_ADVICE, 2, "A", fit_advice=FitAdvice(item_id="A", size="M", confidence=0.8)))
    add(0, S1, 4, event(S1, T.TYPE_ITEM_SELECTED, 10, "B"))
    add(0, S1, 5, event(S1, T.TYPE_ITEM_DWELL, 10, "A", dwell_us=8_000_000, frames=240))
    add(0, S1, 6, event(S1, T.TYPE_TRY_ON_RENDERED, 11, "B"))
    add(0, S1, 7, event(S1, T.TYPE_ITEM_DWELL, 20, "B", dwell_us=3_000_001, frames=90))
    add(0, S1, 8, event(S1, T.TYPE_PURCHASE, 70, "A", size="M", quantity=1))  # the next UTC day
    add(0, S1, 9, event(S1, T.TYPE_SESSION_ENDED, 80, "B"))
    # S2 selects A and B, tries neither, buys A.
    add(1, S2, 1, event(S2, T.TYPE_SESSION_STARTED, 5, "A"))
    add(1, S2, 2, event(S2, T.TYPE_PURCHASE, 6, "A", size="L", quantity=2))
    add(1, S2, 3, event(S2, T.TYPE_ITEM_SELECTED, 7, "B"))
    # S3 buys A before trying it; its advice names no item (the event's counts); its dwell was rewritten.
    add(0, S3, 1, event(S3, T.TYPE_SESSION_STARTED, 30, "A"))
    add(0, S3, 2, event(S3, T.TYPE_PURCHASE, 31, "A", size="S", quantity=1))
    add(0, S3, 3, event(S3, T.TYPE_TRY_ON_RENDERED, 32, "A"))
    add(0, S3, 4, event(S3, T.TYPE_ITEM_DWELL, 40, "A", dwell_us=5_000_000, frames=150))
    add(0, S3, 5, event(S3, T.TYPE_FIT_ADVICE, 33, "A", fit_advice=FitAdvice(size="S")))
    add(0, S3, 4, event(S3, T.TYPE_ITEM_DWELL, 40, "A", dwell_us=1_000_000, frames=30))  # latest value wins
    # S4 is erased: none of it may appear.
    add(1, S4, 1, event(S4, T.TYPE_SESSION_STARTED, 3, "A"))
    add(1, S4, 2, event(S4, T.TYPE_TRY_ON_RENDERED, 4, "A"))
    add(1, S4, 3, event(S4, T.TYPE_PURCHASE, 5, "A", size="XL", quantity=1))
    if erase_s4:
        add(1, S4, 4, event(S4, T.TYPE_SESSION_ERASED, 9))
    # S5's try-on was tombstoned: it only selected B.
    add(1, S5, 1, event(S5, T.TYPE_SESSION_STARTED, 50, "B"))
    add(1, S5, 2, event(S5, T.TYPE_TRY_ON_RENDERED, 51, "B"))
    add(1, S5, 2, None)
    # S6 tries A, no dwell, no purchase.
    add(2, S6, 1, event(S6, T.TYPE_SESSION_STARTED, 100, "A"))
    add(2, S6, 2, event(S6, T.TYPE_TRY_ON_RENDERED, 101, "A"))
    return numbered(r)


def aggregates() -> dict[str, list[tuple[bytes, bytes | None]]]:
    window = T0 - T0 % (60 * S)
    items = [
        (
            b"60/w/A/0",
            ItemAggregate(item_id="A", window_s=60, window_start_unix_us=window, sessions=1).SerializeToString(),
        ),
        (
            b"60/w/A/0",
            ItemAggregate(
                item_id="A",
                window_s=60,
                window_start_unix_us=window,
                sessions=2,
                dwell_us=[1, 5],
                advised_sizes={"M": 1},
            ).SerializeToString(),
        ),
        (b"60/w/B/0", ItemAggregate(item_id="B", window_s=60, window_start_unix_us=window).SerializeToString()),
        (b"60/w/B/0", None),
        (
            b"60/w2/B/1",
            ItemAggregate(
                item_id="B", window_s=60, window_start_unix_us=window + 60 * S, final=True
            ).SerializeToString(),
        ),
    ]
    funnel: list[tuple[bytes, bytes | None]] = [
        (b"60/w/0", FunnelAggregate(window_s=60, window_start_unix_us=window, tried=3).SerializeToString())
    ]
    also = AlsoTried(
        item_id="A", reference_day=T0 // (86_400 * S), also_tried=[AlsoTried.Other(item_id="B", score=1.5, co_tries=2)]
    )
    return {"items": items, "funnel": funnel, "also_tried": [(b"A", also.SerializeToString())]}


def read_events(out: Path) -> list[dict[str, Any]]:
    return list(pq.read_table(out / "events").to_pylist())


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    out = tmp_path / "analytics"
    offline.write_dataset(out, KEY, records(), **aggregates())
    return out


def test_counts_and_partitions(tmp_path: Path) -> None:
    out = tmp_path / "analytics"
    counts = offline.write_dataset(out, KEY, records(), **aggregates())
    assert counts == {"events": 20, "items": 2, "funnel": 1, "also_tried": 1}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet")) == [
        "also_tried/part-0.parquet",
        "events/event_date=2024-03-01/part-0.parquet",
        "events/event_date=2024-03-02/part-0.parquet",
        "funnel/window_date=2024-03-01/part-0.parquet",
        "items/window_date=2024-03-01/part-0.parquet",
        "items/window_date=2024-03-02/part-0.parquet",
    ]
    rows = read_events(out)
    assert len(rows) == 20
    for row in rows:  # each row in the partition of its UTC date
        assert row["event_date"] == row["event_time"].date().isoformat()
        assert row["event_time"].timestamp() * S == row["event_time_us"]


def test_event_columns(dataset: Path) -> None:
    rows = read_events(dataset)
    names = {pseudonym(KEY, s): s for s in (S1, S2, S3, S5, S6)}
    purchase = next(r for r in rows if r["session"] == pseudonym(KEY, S2) and r["type"] == "PURCHASE")
    assert (purchase["item_id"], purchase["size"], purchase["quantity"], purchase["partition"]) == ("A", "L", 2, 1)
    assert purchase["offset"] == 1 and purchase["dwell_us"] is None and purchase["advice_size"] is None
    tried = next(r for r in rows if r["session"] == pseudonym(KEY, S1) and r["type"] == "TRY_ON_RENDERED")
    assert (tried["capture_time_us"], tried["sequence"]) == (T0 + S, 30)
    advice = next(r for r in rows if r["session"] == pseudonym(KEY, S1) and r["type"] == "FIT_ADVICE")
    assert (advice["advice_item_id"], advice["advice_size"], advice["advice_runner_up"]) == ("A", "M", None)
    assert advice["advice_confidence"] == pytest.approx(0.8)
    assert {r["session"] for r in rows} == set(names)
    assert {r["type"] for r in rows} == {
        "SESSION_STARTED",
        "TRY_ON_RENDERED",
        "FIT_ADVICE",
        "ITEM_SELECTED",
        "ITEM_DWELL",
        "PURCHASE",
        "SESSION_ENDED",
    }


def test_erased_session_absent(dataset: Path) -> None:
    rows = read_events(dataset)
    assert pseudonym(KEY, S4) not in {r["session"] for r in rows}
    assert "SESSION_ERASED" not in {r["type"] for r in rows}
    assert "XL" not in {r["size"] for r in rows}


def test_no_raw_session_id_anywhere(dataset: Path) -> None:
    files = [p for p in dataset.rglob("*") if p.is_file()]
    assert len(files) == 6
    for path in files:
        data = path.read_bytes()
        assert b"raw-session" not in data, path
        for row in pq.read_table(path).to_pylist():
            assert not any("raw-session" in str(value) for value in row.values()), path
    # the pseudonym is what is there instead
    assert pseudonym(KEY, S1).encode() in b"".join(p.read_bytes() for p in files)


def test_latest_value_per_key(dataset: Path) -> None:
    rows = read_events(dataset)
    s3_dwell = [r for r in rows if r["session"] == pseudonym(KEY, S3) and r["type"] == "ITEM_DWELL"]
    assert [(r["dwell_us"], r["frames"], r["offset"]) for r in s3_dwell] == [(1_000_000, 30, 14)]
    s5 = [r["type"] for r in rows if r["session"] == pseudonym(KEY, S5)]
    assert s5 == ["SESSION_STARTED"]  # its tombstoned try-on is gone
    items = pq.read_table(dataset / "items").to_pylist()
    assert [
        (r["item_id"], r["sessions"], r["dwell_us"], json.loads(r["advised_sizes"]), r["final"]) for r in items
    ] == [
        ("A", 2, [1, 5], {"M": 1}, False),
        ("B", 0, [], {}, True),
    ]
    assert [r["tried"] for r in pq.read_table(dataset / "funnel").to_pylist()] == [3]
    also = pq.read_table(dataset / "also_tried").to_pylist()
    assert [(r["item_id"], r["rank"], r["other_item_id"], r["score"], r["co_tries"]) for r in also] == [
        ("A", 1, "B", 1.5, 2)
    ]


def test_reexport_replaces(tmp_path: Path) -> None:
    out = tmp_path / "analytics"
    offline.write_dataset(out, KEY, records(erase_s4=False))
    assert pseudonym(KEY, S4) in {r["session"] for r in read_events(out)}
    stale = out / "events" / "event_date=1999-01-01" / "part-0.parquet"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    offline.write_dataset(out, KEY, records())
    assert pseudonym(KEY, S4) not in {r["session"] for r in read_events(out)}
    assert not stale.parent.exists()
    assert not (out / "items").exists()  # nothing of the old export's layout survives
    assert [p.name for p in tmp_path.iterdir()] == ["analytics"]  # no temporary folders left


def test_report_known_answer(dataset: Path) -> None:
    assert offline.report(dataset) == {
        "since": None,
        "until": None,
        "events": 20,
        "sessions": 5,
        "top_items": [
            {"item_id": "A", "sessions_tried": 3, "renders": 270, "dwell_s": 9.0},
            {"item_id": "B", "sessions_tried": 1, "renders": 90, "dwell_s": 3.000001},
        ],
        "conversion": [
            {
                "item_id": "A",
                "tried_sessions": 3,
                "tried_purchased": 1,
                "tried_rate": 0.333333,
                "not_tried_sessions": 1,
                "not_tried_purchased": 1,
                "not_tried_rate": 1.0,
            },
            {
                "item_id": "B",
                "tried_sessions": 1,
                "tried_purchased": 0,
                "tried_rate": 0.0,
                "not_tried_sessions": 2,
                "not_tried_purchased": 0,
                "not_tried_rate": 0.0,
            },
        ],
        "sizes": [
            {"item_id": "A", "size": "L", "advised_sessions": 0, "purchased_sessions": 1},
            {"item_id": "A", "size": "M", "advised_sessions": 1, "purchased_sessions": 1},
            {"item_id": "A", "size": "S", "advised_sessions": 1, "purchased_sessions": 1},
        ],
        "dwell_vs_purchase": [
            {
                "item_id": "A",
                "purchased_sessions": 2,
                "purchased_median_dwell_s": 4.5,
                "not_purchased_sessions": 1,
                "not_purchased_median_dwell_s": 0.0,
            },
            {
                "item_id": "B",
                "purchased_sessions": 0,
                "purchased_median_dwell_s": None,
                "not_purchased_sessions": 1,
                "not_purchased_median_dwell_s": 3.000001,
            },
        ],
    }


def test_report_period(dataset: Path) -> None:
    """[T0+30 s, T0+70 s): S3 and S5's start only; S1's purchase at T0+70 s is out."""
    result = offline.report(dataset, since_us=T0 + 30 * S, until_us=T0 + 70 * S)
    assert (result["since"], result["until"]) == ("2024-03-01T23:59:30+00:00", "2024-03-02T00:00:10+00:00")
    assert (result["events"], result["sessions"]) == (6, 2)
    assert result["top_items"] == [{"item_id": "A", "sessions_tried": 1, "renders": 30, "dwell_s": 1.0}]
    names = ["tried_sessions", "tried_purchased", "tried_rate", "not_tried_sessions", "not_tried_purchased"]
    assert result["conversion"] == [
        {"item_id": "A", **dict(zip(names, [1, 0, 0.0, 0, 0], strict=True)), "not_tried_rate": None},
        {"item_id": "B", **dict(zip(names, [0, 0, None, 1, 0], strict=True)), "not_tried_rate": 0.0},
    ]
    assert result["sizes"] == [{"item_id": "A", "size": "S", "advised_sessions": 1, "purchased_sessions": 1}]
    assert result["dwell_vs_purchase"] == [
        {
            "item_id": "A",
            "purchased_sessions": 1,
            "purchased_median_dwell_s": 1.0,
            "not_purchased_sessions": 0,
            "not_purchased_median_dwell_s": None,
        }
    ]
    empty = offline.report(dataset, since_us=T0 + 10_000 * S)
    assert (empty["events"], empty["top_items"], empty["conversion"]) == (0, [], [])


def test_report_without_data(tmp_path: Path) -> None:
    with pytest.raises(VTOError, match="vto analytics export"):
        offline.report(tmp_path / "nothing")
    offline.write_dataset(tmp_path / "empty", KEY, [])
    with pytest.raises(VTOError, match="vto analytics export"):
        offline.report(tmp_path / "empty")


def test_render_text(dataset: Path) -> None:
    text = offline.render_text(offline.report(dataset))
    for title in ("Top items tried", "Conversion with vs without try-on", "Size distribution", "Dwell vs purchase"):
        assert title in text
    lines = text.splitlines()
    top = lines.index(next(line for line in lines if line.startswith("Top items tried")))
    assert lines[top + 1].split() == ["item_id", "sessions_tried", "renders", "dwell_s"]
    assert lines[top + 3].split() == ["A", "3", "270", "9.000"]
    assert len({len(line) for line in lines[top + 1 : top + 3]}) == 1  # header and rule aligned
    assert "20 events, 5 sessions" in lines[0]


def test_chart(dataset: Path, tmp_path: Path) -> None:
    path = tmp_path / "chart" / "report.png"
    offline.draw_chart(offline.report(dataset), path)
    image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] >= 300 and image.shape[1] > 800
    assert float(image.std()) > 10  # bars and text, not a blank canvas
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20
    empty = offline.report(dataset, since_us=T0 + 10_000 * S)
    offline.draw_chart(empty, path)  # a period without events still draws (empty axes)
    assert cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR) is not None


def test_known_answer_synthetic(tmp_path: Path) -> None:
    """The report equals the synthetic sessions' truth, computed from the session model, never from the records."""

    def without_period(report: dict[str, object]) -> dict[str, object]:
        return {k: v for k, v in report.items() if k not in ("since", "until")}

    for seed in (1, 7):
        data = synthetic.generate(seed)
        out = tmp_path / f"seed-{seed}"
        counts = offline.write_dataset(out, KEY, numbered(data.records))
        erased = [s.session_id for s in data.sessions if s.erased]
        assert len(erased) == 3
        rows = read_events(out)
        assert {pseudonym(KEY, sid) for sid in erased}.isdisjoint(r["session"] for r in rows)
        assert not any(b"syn-" in p.read_bytes() for p in out.rglob("*.parquet"))

        truth = synthetic.report_truth(data)
        assert counts["events"] == truth["events"]
        assert without_period(offline.report(out)) == truth

        times = sorted(row["event_time_us"] for row in rows)
        since, until = times[len(times) // 4], times[3 * len(times) // 4]
        for period in ((since, until), (since, None), (None, until)):
            truth = synthetic.report_truth(data, *period)
            assert 0 < truth["events"] < counts["events"]  # type: ignore[operator]
            assert without_period(offline.report(out, *period)) == truth


class FakeMessage:
    def __init__(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        self._record = (partition, offset, key, value)

    def partition(self) -> int:
        return self._record[0]

    def offset(self) -> int:
        return self._record[1]

    def key(self) -> bytes | None:
        return self._record[2]

    def value(self) -> bytes | None:
        return self._record[3]


def test_export_reads_the_topics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(analytics_secret=SecretStr(KEY.decode()), analytics_dir=tmp_path / "default")
    topics = {
        settings.events_topic: [FakeMessage(*record) for record in records()],
        settings.analytics_items_topic: [FakeMessage(0, n, *kv) for n, kv in enumerate(aggregates()["items"])],
        settings.analytics_funnel_topic: [FakeMessage(0, 0, None, b"")],  # a record without a key is skipped
        settings.analytics_also_tried_topic: [
            FakeMessage(0, n, *kv) for n, kv in enumerate(aggregates()["also_tried"])
        ],
    }
    monkeypatch.setattr(offline, "read_to_end", lambda s, topic: iter(topics[topic]))
    assert offline.export(settings) == {"events": 20, "items": 2, "funnel": 0, "also_tried": 1}
    assert offline.report(tmp_path / "default")["sessions"] == 5
    offline.export(settings, tmp_path / "elsewhere")
    assert offline.report(tmp_path / "elsewhere") == offline.report(tmp_path / "default")
