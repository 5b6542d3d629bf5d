"""The gateway's per-connection logic with a stand-in for Kafka and the WebSocket: frames stamped and routed,
a slow page given only the newest rendered frame, status and advice as JSON, and the page itself served whole."""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import subprocess
import time
from typing import Any

import cv2
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streams.gateway import server
from streams.gateway.server import STATIC, Connection, Gateway, Refused
from streams.proto.vto.v1.fit_advice_pb2 import FitAdvice
from streams.proto.vto.v1.frame_pb2 import Frame
from streams.proto.vto.v1.rendered_frame_pb2 import RenderedFrame
from streams.proto.vto.v1.session_control_pb2 import SessionControl
from streams.settings import Settings

JPEG = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()


class FakeRelay:
    partition = 3

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []

    def publish(self, topic: str, key: bytes, value: bytes, headers: Any = None) -> None:
        self.records.append((topic, key, value))


class FakeSocket:
    closed = False

    def __init__(self) -> None:
        self.sent: list[bytes | str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def send_bytes(self, data: bytes) -> None:
        await self.gate.wait()
        self.sent.append(data)

    async def send_str(self, data: str) -> None:
        self.sent.append(data)


def connection() -> tuple[Connection, FakeRelay, FakeSocket]:
    gateway = Gateway(Settings(max_session_fps=5), CollectorRegistry())
    relay, ws = FakeRelay(), FakeSocket()
    gateway.relay = relay  # type: ignore[assignment]
    conn = Connection(gateway, ws, "web-1", "token")  # type: ignore[arg-type]
    conn.state.started = True  # as after the page's {"action": "start"}
    return conn, relay, ws


def test_a_page_frame_becomes_a_frame_record_routed_to_this_gateways_partition() -> None:
    conn, relay, _ = connection()
    page_ms = time.time() * 1000 - 5_000  # the page's clock is 5 s behind ours
    conn.frame(struct.pack(">d", page_ms) + JPEG)
    time.sleep(0.07)  # the page's next frame, 66 ms later on its clock, arrives at least that much later
    conn.frame(struct.pack(">d", page_ms + 66.0) + JPEG)
    first, second = (Frame.FromString(value) for _, _, value in relay.records)
    assert (first.sequence, second.sequence, first.reply_partition, first.width, first.height) == (0, 1, 3, 64, 48)
    assert first.session_token == "token" and first.session_id == "web-1"
    # Mapped to our clock (not 5 s in the past), keeping the page's spacing.
    assert abs(first.capture_time_unix_us / 1000 - time.time() * 1000) < 1000
    assert abs(second.capture_time_unix_us - first.capture_time_unix_us - 66_000) <= 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00" * 4, "bad_frame"),
        (struct.pack(">d", time.time() * 1000) + b"GIF89a", "not_jpeg"),
        (struct.pack(">d", time.time() * 1000) + JPEG[:-10], "not_jpeg"),
        (struct.pack(">d", float("nan")) + JPEG, "bad_frame"),
    ],
)
def test_bad_frames_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    conn, relay, _ = connection()
    with pytest.raises(Refused) as refused:
        conn.frame(data)
    assert refused.value.reason == reason and relay.records == []


def test_more_frames_or_messages_than_the_rates_allow_are_refused() -> None:
    conn, relay, _ = connection()
    reasons = []
    for _ in range(server.MAX_FPS + 3):
        try:
            conn.frame(struct.pack(">d", time.time() * 1000) + JPEG)
        except Refused as refused:
            reasons.append(refused.reason)
    assert len(relay.records) == server.MAX_FPS and reasons == ["too_many_frames"] * 3
    for _ in range(int(server.MAX_CONTROLS_PER_S) + 2):
        try:
            conn.control(json.dumps({"action": "select_item", "item_id": "tee-breton-stripes"}))
        except Refused as refused:
            reasons.append(refused.reason)
    assert reasons[3:] == ["too_many_messages"] * 2


def test_frames_before_start_and_oversized_control_messages_are_refused() -> None:
    conn, relay, _ = connection()
    conn.state.started = False
    with pytest.raises(Refused, match="start"):
        conn.frame(struct.pack(">d", time.time() * 1000) + JPEG)
    with pytest.raises(Refused) as refused:
        conn.control(json.dumps({"action": "start", "item_id": "x" * server.MAX_TEXT_BYTES}))
    assert refused.value.reason == "malformed_json" and relay.records == []


async def test_a_slow_page_gets_the_newest_rendered_frame_and_status_and_advice_as_json() -> None:
    conn, _, ws = connection()
    conn.state.page_ms.update({1: 111.0, 2: 222.0, 3: 333.0})
    ws.gate.clear()  # the page is not reading
    sender = asyncio.ensure_future(conn.send_loop())
    conn.rendered(RenderedFrame(sequence=1, image=b"one").SerializeToString())
    await asyncio.sleep(0.01)  # frame 1 is being written when 2 and 3 arrive: 2 is replaced by 3
    conn.rendered(RenderedFrame(sequence=2, image=b"two").SerializeToString())
    conn.rendered(RenderedFrame(sequence=3, image=b"three").SerializeToString())
    notice = RenderedFrame(sequence=4, status=RenderedFrame.STATUS_OVER_CAPACITY, status_detail="busy")
    conn.rendered(notice.SerializeToString())
    advised = RenderedFrame(sequence=3, fit_advice=FitAdvice(size="M"), item_id="tee")
    conn.rendered(advised.SerializeToString())
    conn.rendered(advised.SerializeToString())  # unchanged advice: not sent again
    ws.gate.set()
    await asyncio.sleep(0.05)
    sender.cancel()
    frames = [(*struct.unpack_from(">dI", m), m[12:]) for m in ws.sent if isinstance(m, bytes)]
    texts = [json.loads(m) for m in ws.sent if isinstance(m, str)]
    assert frames == [(111.0, 1, b"one"), (333.0, 3, b"three")]
    assert conn.gateway.metrics.registry.get_sample_value("vto_gateway_frames_dropped_to_page_total") == 1
    assert [t["type"] for t in texts] == ["status", "status", "advice"]  # the notice, then back to ok, advice once
    assert texts[0]["status"] == "over_capacity" and texts[1]["status"] == "ok" and texts[2]["size"] == "M"


def test_a_second_start_of_the_same_session_changes_its_item_instead_of_restarting_it() -> None:
    conn, relay, _ = connection()
    conn.state.started = False  # a new session
    conn.control(json.dumps({"action": "start", "item_id": "tee-breton-stripes"}))
    conn.control(json.dumps({"action": "start", "item_id": "sunglasses-purple", "height_cm": 170}))
    actions = [SessionControl.FromString(v).action for _, _, v in relay.records]
    assert actions == [
        SessionControl.ACTION_START,
        SessionControl.ACTION_SELECT_ITEM,
        SessionControl.ACTION_SET_FIT_PROFILE,
    ]
    assert SessionControl.FromString(relay.records[-1][2]).height_cm == 170


@pytest.mark.parametrize(
    ("body", "action", "item", "size", "quantity"),
    [
        ({"action": "add_to_cart"}, SessionControl.ACTION_ADD_TO_CART, "tee-breton-stripes", "", 1),
        (
            {"action": "add_to_cart", "item_id": "sunglasses-purple", "size": "M", "quantity": 2},
            SessionControl.ACTION_ADD_TO_CART,
            "sunglasses-purple",
            "M",
            2,
        ),
        (
            {"action": "purchase", "size": "EU 42", "quantity": None},
            SessionControl.ACTION_PURCHASE,
            "tee-breton-stripes",
            "EU 42",
            1,
        ),
        (
            {"action": "purchase", "item_id": "sunglasses-purple", "size": "X" * 16, "quantity": 1000},
            SessionControl.ACTION_PURCHASE,
            "sunglasses-purple",
            "X" * 16,
            1000,
        ),
    ],
)
def test_a_cart_or_purchase_becomes_a_session_control_of_the_item_named_or_the_one_tried_on(
    body: dict[str, Any], action: int, item: str, size: str, quantity: int
) -> None:
    conn, relay, _ = connection()
    conn.state.item_id = "tee-breton-stripes"  # being tried on
    conn.control(json.dumps(body))
    ((topic, key, value),) = relay.records
    control = SessionControl.FromString(value)
    assert (topic, key) == (conn.gateway.settings.control_topic, b"web-1")
    assert (control.action, control.item_id, control.size, control.quantity) == (action, item, size, quantity)
    assert control.session_id == "web-1" and control.session_token == "token" and control.time_unix_us > 0
    assert conn.state.item_id == "tee-breton-stripes" and conn.state.started  # what is tried on is unchanged


@pytest.mark.parametrize(
    ("body", "started", "item", "reason"),
    [
        ({"action": "add_to_cart"}, False, "tee-breton-stripes", "not_started"),
        ({"action": "purchase"}, True, "", "unknown_item"),
        ({"action": "add_to_cart", "item_id": "no-such-item"}, True, "tee-breton-stripes", "unknown_item"),
        ({"action": "purchase", "size": "X" * 17}, True, "tee-breton-stripes", "bad_commerce"),
        ({"action": "add_to_cart", "size": 42}, True, "tee-breton-stripes", "bad_commerce"),
        ({"action": "add_to_cart", "quantity": 0}, True, "tee-breton-stripes", "bad_commerce"),
        ({"action": "purchase", "quantity": 1001}, True, "tee-breton-stripes", "bad_commerce"),
        ({"action": "purchase", "quantity": -1}, True, "tee-breton-stripes", "bad_commerce"),
        ({"action": "add_to_cart", "quantity": 1.5}, True, "tee-breton-stripes", "bad_commerce"),
        ({"action": "add_to_cart", "quantity": "2"}, True, "tee-breton-stripes", "bad_commerce"),
        ({"action": "add_to_cart", "quantity": True}, True, "tee-breton-stripes", "bad_commerce"),
    ],
)
def test_a_cart_or_purchase_without_an_item_or_with_a_bad_size_or_quantity_is_refused(
    body: dict[str, Any], started: bool, item: str, reason: str
) -> None:
    conn, relay, _ = connection()
    conn.state.started, conn.state.item_id = started, item
    with pytest.raises(Refused) as refused:
        conn.control(json.dumps(body))
    assert refused.value.reason == reason and relay.records == []


def test_carts_and_purchases_count_against_the_control_rate_like_other_messages() -> None:
    conn, relay, _ = connection()
    conn.state.item_id = "tee-breton-stripes"
    reasons = []
    bodies = [{"action": "add_to_cart"}, {"action": "purchase"}] * int(server.MAX_CONTROLS_PER_S)
    bodies[int(server.MAX_CONTROLS_PER_S)] = {"action": "select_item", "item_id": "sunglasses-purple"}
    for body in bodies[: int(server.MAX_CONTROLS_PER_S) + 2]:
        try:
            conn.control(json.dumps(body))
        except Refused as refused:
            reasons.append(refused.reason)
    # A second's worth of carts and purchases goes out; then they, and the other messages, wait their turn.
    actions = [SessionControl.FromString(value).action for _, _, value in relay.records]
    commerce = [SessionControl.ACTION_ADD_TO_CART, SessionControl.ACTION_PURCHASE] * int(server.MAX_CONTROLS_PER_S)
    assert actions == commerce[: int(server.MAX_CONTROLS_PER_S)]
    assert reasons == ["too_many_messages"] * 2 and conn.state.item_id == "tee-breton-stripes"


def test_the_page_references_only_files_the_gateway_serves_and_its_script_parses() -> None:
    html = (STATIC / "index.html").read_text()
    for name in ("app.js", "style.css"):
        assert f"/static/{name}" in html and (STATIC / name).is_file()
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    result = subprocess.run([node, "--check", str(STATIC / "app.js")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


async def test_the_page_gets_the_gateways_counts_and_latency_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "STATS_INTERVAL_S", 0.01)
    conn, _, ws = connection()
    conn.frame(struct.pack(">d", time.time() * 1000) + JPEG)
    captured = int(time.time() * 1e6) - 80_000  # rendered 80 ms after capture
    conn.rendered(RenderedFrame(sequence=0, image=b"x", capture_time_unix_us=captured).SerializeToString())
    tasks = [asyncio.ensure_future(conn.send_loop()), asyncio.ensure_future(conn.stats_loop())]
    await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    stats = [json.loads(m) for m in ws.sent if isinstance(m, str) and '"stats"' in m]
    assert stats and stats[-1]["frames_in"] == 1 and stats[-1]["frames_out"] == 1
    assert 80 <= stats[-1]["server_latency_ms"] < 200
