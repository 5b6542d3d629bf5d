"""`vto demo`: a real video through the embedded stack, end to end, with the figures a platform team asks for.

Brings the stack up, sends the video as one session at its own frame rate, consumes the rendered frames
from Kafka, writes the rendered video and a PNG contact sheet, prints frames, fps and end-to-end latency
(capture timestamp -> rendered frame consumed) p50/p95/p99, then brings the stack down.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from confluent_kafka import Consumer, TopicPartition

from streams import kafka_client
from streams.accounting import account_when_settled
from streams.analytics import live
from streams.errors import VTOError
from streams.proto.vto.v1.analytics_pb2 import ItemAggregate
from streams.proto.vto.v1.rendered_frame_pb2 import RenderedFrame
from streams.sender import commerce, frames_of, send
from streams.settings import Settings
from streams.stack import embedded, prometheus

DEFAULT_VIDEO = "people/videos/mediapipe_full_body_dance.mp4"
DEFAULT_ITEMS = ("tee-breton-stripes", "sneaker-white-red", "sunglasses-blue-wayfarer")  # a third of the video each


@dataclass(frozen=True)
class Summary:
    video: str
    frames_sent: int
    frames_rendered: int
    frames_dropped: dict[str, int]  # by reason, from the session's frame outcomes (superseded under load, ...)
    frames_with_pose: int
    throughput_fps: float
    latency_ms_p50: float
    latency_ms_p95: float
    latency_ms_p99: float
    stage_ms_mean: dict[str, float]
    rendered_video: str
    contact_sheet: str
    prometheus: str  # the embedded Prometheus that scraped the run ('' when it is not installed)
    page: str  # the try-on page of the stack's browser gateway
    analytics: dict[str, object]  # what the analytics worker made of the run's session (`analytics_summary`)


def rendered_consumer(settings: Settings) -> Consumer:
    """A consumer positioned at the current end of the rendered topic, so it sees only this run's frames."""
    consumer = Consumer(
        kafka_client.confluent(
            settings,
            **{
                "group.id": f"vto-client-demo-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "isolation.level": "read_uncommitted",  # as a shopper: a frame shows the moment it is written
                # a fetch returns as soon as a frame is there; the wait (librdkafka's 500 ms) only bounds idle polls
                "fetch.message.max.bytes": settings.max_message_bytes + 65536,
            },
        )
    )
    parts = consumer.list_topics(settings.rendered_topic, timeout=10).topics[settings.rendered_topic].partitions
    assigned = []
    for p in parts:
        _, high = consumer.get_watermark_offsets(TopicPartition(settings.rendered_topic, p), timeout=10)
        assigned.append(TopicPartition(settings.rendered_topic, p, high))
    consumer.assign(assigned)
    return consumer


def collect(
    consumer: Consumer, sessions: set[str], expected: list[int], timeout_s: float
) -> list[tuple[RenderedFrame, int]]:
    """Rendered frames of `sessions` with the time each was consumed (unix us), in (session, sequence) order,
    until `expected[0]` frames came (the caller may lower it once it knows how many were dropped) or time ran out."""
    got: dict[tuple[str, int], tuple[RenderedFrame, int]] = {}
    deadline = time.monotonic() + timeout_s
    while len(got) < expected[0] and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None or msg.error():
            continue
        now = time.time_ns() // 1000
        frame = RenderedFrame.FromString(msg.value() or b"")
        if frame.session_id in sessions:
            got[(frame.session_id, frame.sequence)] = (frame, now)
    return [got[k] for k in sorted(got)]


def contact_sheet(images: list[np.ndarray], columns: int = 4, tile: int = 240) -> np.ndarray:
    tiles = [cv2.resize(img, (tile, round(tile * img.shape[0] / img.shape[1]))) for img in images]
    height = max(t.shape[0] for t in tiles)
    tiles = [cv2.copyMakeBorder(t, 0, height - t.shape[0], 0, 0, cv2.BORDER_CONSTANT) for t in tiles]
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    return np.vstack(rows)


def analytics_summary(
    settings: Settings, before: dict[bytes, ItemAggregate], tried: list[str], timeout_s: float = 60.0
) -> dict[str, object]:
    """The run's own analytics, as the analytics worker published them: per item, what the 60-s windows gained since
    `before` (read when the run began), once the run's purchase has arrived; and what the first item is
    recommended with."""
    deadline = time.monotonic() + timeout_s
    rows: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        rows = [r for r in live.item_rows(live.added_since(before, live.item_records(settings)), 60) if r["sessions"]]
        if any(int(r["purchases"]) for r in rows):  # type: ignore[call-overload]
            break
        time.sleep(1.0)
    try:
        also = [o["item_id"] for o in live.recommend(settings, tried[0])["also_tried"]]
    except VTOError:
        also = []
    keep = ("item_id", "sessions", "renders", "dwell_s", "carts", "purchases", "purchases_after_tryon")
    return {"items": [{k: r[k] for k in keep} for r in rows], "also_tried": {tried[0]: also}}


def run(
    settings: Settings, video: Path, out_dir: Path, fps: float, keep_up: bool = False, items: Sequence[str] = ()
) -> Summary:
    """The video through the whole embedded stack as one session trying on `items` in turn (DEFAULT_ITEMS)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    clip = list(frames_of(video))  # encoded up front, as a client's device would: not on the clock
    observed = prometheus.available()  # the run's metrics, alerts and SLOs, where an SRE would look at them
    embedded.up(settings, with_prometheus=observed)
    try:
        consumer = rendered_consumer(settings)
        before = live.item_records(settings)  # the demo's analytics are what its session adds to these
        session = f"demo-{uuid.uuid4().hex[:8]}"
        results: list[tuple[RenderedFrame, int]] = []
        expected = [len(clip)]
        collector = threading.Thread(
            target=lambda: results.extend(
                collect(consumer, {session}, expected, timeout_s=60 + len(clip) / max(fps, 1))
            )
        )
        collector.start()  # consume while sending: latency is measured as a shopper would see it
        sent = send(settings, clip, session, fps=fps, item=list(items or DEFAULT_ITEMS))
        outcomes = account_when_settled(settings, session, len(sent))
        expected[0] = int(outcomes["rendered"])  # type: ignore[call-overload]  # frames dropped will not come
        collector.join()
        consumer.close()
        tried = list(items or DEFAULT_ITEMS)
        commerce(settings, session, False, tried[0], "M")  # the shopper liked the first item: cart, then bought it
        commerce(settings, session, True, tried[0], "M")
        analytics = analytics_summary(settings, before, tried)
    finally:
        if not keep_up:
            embedded.down(settings)

    decoded = (cv2.imdecode(np.frombuffer(f.image, np.uint8), cv2.IMREAD_COLOR) for f, _ in results)
    images = [img for img in decoded if img is not None]
    video_path, sheet_path = out_dir / "rendered.mp4", out_dir / "contact_sheet.png"
    if images:
        h, w = images[0].shape[:2]
        writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter.fourcc(*"mp4v"), fps or 15, (w, h))
        for img in images:
            writer.write(img)
        writer.release()
        picks = np.linspace(0, len(images) - 1, num=min(12, len(images))).round().astype(int)
        cv2.imwrite(str(sheet_path), contact_sheet([images[i] for i in picks]))
    latencies = np.array([(consumed - f.capture_time_unix_us) / 1000 for f, consumed in results])
    first_sent = sent[0].capture_time_unix_us if sent else 0
    span_s = (results[-1][1] - first_sent) / 1e6 if results else 0.0

    def pct(q: float) -> float:
        return float(np.percentile(latencies, q)) if len(latencies) else float("nan")

    summary = Summary(
        video=str(video),
        frames_sent=len(sent),
        frames_rendered=len(results),
        frames_dropped=dict(outcomes["dropped"]),  # type: ignore[call-overload]
        frames_with_pose=sum(1 for f, _ in results if f.keypoints),
        throughput_fps=len(results) / span_s if span_s else 0.0,
        latency_ms_p50=pct(50),
        latency_ms_p95=pct(95),
        latency_ms_p99=pct(99),
        stage_ms_mean={
            k: round(float(np.mean([f.stage_seconds[k] for f, _ in results])) * 1000, 1)
            for k in (results[0][0].stage_seconds if results else {})
        },
        rendered_video=str(video_path),
        contact_sheet=str(sheet_path),
        prometheus=prometheus.url(settings) if observed else "",
        page=embedded.Gateway(0, settings).url,
        analytics=analytics,
    )
    (out_dir / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary
