"""`vto analytics ...`: the analytics worker, the live aggregates and recommendations, the Parquet export and the
DuckDB report (docs/analytics.md)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.errors import VTOError
from streams.settings import Settings


def add_parser(sub: Any) -> None:
    analytics = sub.add_parser("analytics", help="try-on analytics: worker, items, funnel, recommend, export, report")
    actions = analytics.add_subparsers(dest="action", required=True)
    worker = actions.add_parser("worker", help="run one analytics worker in the foreground")
    worker.add_argument("--name", default="", help="label for process listings")
    items = actions.add_parser("items", help="live per-item aggregates from the aggregate topics")
    funnel = actions.add_parser("funnel", help="the live try-on funnel per window")
    for p in (items, funnel):
        p.add_argument("--window", type=int, choices=[60, 3600], default=3600, help="window size in seconds")
        p.add_argument("--since", type=_time, help="windows starting at or after (ISO date or time, UTC)")
        p.add_argument("--json", action="store_true", help="JSON output")
    recommend = actions.add_parser("recommend", help="shoppers who tried ITEM also tried ...")
    recommend.add_argument("item")
    recommend.add_argument("--json", action="store_true", help="JSON output")
    export = actions.add_parser("export", help="events and aggregates to Parquet, partitioned by date")
    export.add_argument("--out", type=Path, help="directory (default VTO_ANALYTICS_DIR)")
    report = actions.add_parser("report", help="a merchandiser's questions answered with DuckDB over the export")
    report.add_argument("--data", type=Path, help="the export's directory (default VTO_ANALYTICS_DIR)")
    report.add_argument("--since", type=_time, help="events at or after (ISO date or time, UTC)")
    report.add_argument("--until", type=_time, help="events before (ISO date or time, UTC)")
    report.add_argument("--chart", type=Path, help="PNG chart (default <data>/report.png)")
    report.add_argument("--json", action="store_true", help="JSON output")


def _time(text: str) -> int:
    """An ISO date or date-time (UTC unless it says otherwise) as Unix microseconds."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


def run(settings: Settings, args: argparse.Namespace) -> int:
    from streams.analytics import live

    if args.action == "worker":
        from streams.analytics.worker import main as worker_main

        worker_main()
    elif args.action == "items":
        rows = live.items(settings, args.window, args.since or 0)
        columns = ["item_id", "sessions", "selections", "renders", "dwell_s", "median_dwell_s", "carts"]
        columns += ["purchases", "purchases_after_tryon"]
        print(json.dumps(rows) if args.json else live.table(rows, columns))
    elif args.action == "funnel":
        rows = live.funnel(settings, args.window, args.since or 0)
        if not args.json:
            for row in rows:
                row["window"] = datetime.fromtimestamp(row["window_start_unix_us"] / 1e6, UTC).isoformat()
        columns = ["window", "sessions", "selected", "tried", "carted", "purchased", "late_events"]
        print(json.dumps(rows) if args.json else live.table(rows, columns))
    elif args.action == "recommend":
        found = live.recommend(settings, args.item)
        if args.json:
            print(json.dumps(found))
        else:
            print(f"shoppers who tried {found['item_id']} also tried:")
            print(live.table(found["also_tried"], ["item_id", "score", "co_tries"]))
    elif args.action == "export":
        from streams.analytics import offline

        print(json.dumps(offline.export(settings, args.out)))
    elif args.action == "report":
        from streams.analytics import offline

        data = args.data or settings.analytics_dir
        if not data.is_dir():
            raise VTOError(f"no export at {data}: run `vto analytics export` first")
        found = offline.report(data, args.since, args.until)
        chart = args.chart or data / "report.png"
        offline.draw_chart(found, chart)
        print(json.dumps(found) if args.json else offline.render_text(found) + f"\n\nchart: {chart}")
    return 0
