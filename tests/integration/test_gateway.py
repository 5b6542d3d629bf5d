"""The browser gateway against the real stack (Kafka, a worker, Triton), driven by WebSocket clients as a page
drives it: frames in, the session's rendered frames back; two gateway instances, each receiving only its own
sessions' frames from its own partition of the replies topic; and bad client input refused with a message to the
page and counted, the gateway still serving."""

from __future__ import annotations

import asyncio
import json
import re
import struct
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import pytest

from streams import tokens
from streams.gateway import server
from streams.session_store import read_to_end
from streams.settings import Settings
from streams.stack import embedded

pytestmark = pytest.mark.integration
ITEM = "tee-breton-stripes"


@pytest.fixture(scope="module")
def gateways(stack: Settings) -> Iterator[list[embedded.Gateway]]:
    """The stack's gateway (instance 0) and a second instance, as two pods."""
    second = embedded.Gateway(1, stack)
    second.start()
    try:
        yield [embedded.Gateway(0, stack), second]
    finally:
        second.stop()


@pytest.fixture(scope="module")
def photo(data_dir: Path) -> bytes:
    image = cv2.resize(cv2.imread(str(data_dir / "keypoints" / "tfjs_pose_yoga" / "pose.jpg")), (480, 320))
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


async def new_session(http: aiohttp.ClientSession, gateway: embedded.Gateway) -> tuple[str, str]:
    async with http.post(f"{gateway.url}api/sessions", json={"consent": True}) as resp:
        assert resp.status == 201
        body = await resp.json()
    return body["session_id"], body["token"]


def frame_message(jpeg: bytes, page_ms: float) -> bytes:
    return struct.pack(">d", page_ms) + jpeg


def metric(gateway: embedded.Gateway, name: str, labels: str = "") -> float:
    with urllib.request.urlopen(f"{gateway.url}metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = re.search(rf"^{name}{re.escape(labels)} ([0-9.e+-]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def stream(
    http: aiohttp.ClientSession, gateway: embedded.Gateway, jpeg: bytes, frames: int, fps: float
) -> tuple[str, list[tuple[float, int, bytes]], list[dict[str, object]], list[float]]:
    """A page's session: START with an item, `frames` frames at `fps`, then a few seconds to collect."""
    session, token = await new_session(http, gateway)
    got: list[tuple[float, int, bytes]] = []
    texts: list[dict[str, object]] = []
    sent_ms: list[float] = []
    async with http.ws_connect(f"{gateway.url}ws?session={session}&token={token}") as ws:

        async def read() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    page_ms, seq = struct.unpack_from(">dI", msg.data)
                    got.append((page_ms, seq, msg.data[12:]))
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    texts.append(json.loads(msg.data))

        reader = asyncio.ensure_future(read())
        await ws.send_str(json.dumps({"action": "start", "item_id": ITEM}))
        for _ in range(frames):
            sent_ms.append(time.time() * 1000.0)
            await ws.send_bytes(frame_message(jpeg, sent_ms[-1]))
            await asyncio.sleep(1 / fps)
        deadline = time.monotonic() + 30
        while (not got or got[-1][1] != frames - 1) and time.monotonic() < deadline:  # until the last one came
            await asyncio.sleep(0.2)
        await ws.send_str(json.dumps({"action": "end"}))
        await asyncio.sleep(0.5)
        reader.cancel()
    return session, got, texts, sent_ms


def settled(gateway: embedded.Gateway, name: str) -> float:
    """The metric once it has stopped moving (earlier tests' sessions may still have frames in flight)."""
    value, deadline = metric(gateway, name), time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(2.0)
        now = metric(gateway, name)
        if now == value:
            return value
        value = now
    return value


def test_two_gateways_each_get_only_their_own_sessions_rendered_frames(
    gateways: list[embedded.Gateway], photo: bytes, stack: Settings
) -> None:
    holders = [gateways[0], gateways[1], gateways[0]]  # two sessions on the first instance, one on the second

    async def all_sessions() -> list[tuple[str, list[tuple[float, int, bytes]], list[dict[str, object]], list[float]]]:
        async with aiohttp.ClientSession() as http:
            return list(await asyncio.gather(*(stream(http, g, photo, 12, 4.0) for g in holders)))

    unrouted_before = [settled(g, "vto_gateway_replies_unrouted_total") for g in gateways]
    skipped_before = [metric(g, "vto_gateway_frames_dropped_to_page_total") for g in gateways]
    results = asyncio.run(all_sessions())
    missing = [0, 0]  # per gateway: frames its pages did not get
    for (session, got, texts, sent_ms), gateway in zip(results, holders, strict=True):
        assert texts[0]["type"] == "hello" and texts[0]["session_id"] == session
        # In order, each once, up to the last. A frame may be skipped only when the worker rendered several of the
        # session's frames in one batch (a backlog on this busy machine): the page gets the newest, and the skip is
        # counted (below).
        seqs = [seq for _, seq, _ in got]
        assert seqs == sorted(set(seqs)) and set(seqs) <= set(range(12)) and seqs[-1] == 11, seqs
        missing[gateway.index] += 12 - len(seqs)
        # Each rendered frame carries the page's own capture time of that frame, and shows the item (not the photo).
        assert [page_ms for page_ms, _, _ in got] == [sent_ms[seq] for seq in seqs]
        rendered = cv2.imdecode(np.frombuffer(got[-1][2], np.uint8), cv2.IMREAD_COLOR)
        original = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
        assert rendered.shape == original.shape
        changed = np.abs(rendered.astype(int) - original.astype(int)).max(axis=2) > 60
        assert changed.mean() > 0.005, "the item is not on the rendered frame"  # the photo re-encoded: ~0
    # On Kafka: each gateway's partition of the replies topic holds its sessions' frames only.
    sessions = [session for session, _, _, _ in results]
    by_partition: dict[int, set[str]] = {}
    for msg in read_to_end(stack, stack.replies_topic):
        key = (msg.key() or b"").decode()
        if key in sessions:
            by_partition.setdefault(int(msg.partition() or 0), set()).add(key)
    assert by_partition == {0: {sessions[0], sessions[2]}, 1: {sessions[1]}}
    assert [metric(g, "vto_gateway_replies_unrouted_total") for g in gateways] == unrouted_before
    skipped = [
        metric(g, "vto_gateway_frames_dropped_to_page_total") - b for g, b in zip(gateways, skipped_before, strict=True)
    ]
    assert skipped == missing  # every frame a page did not get was one it skipped, counted: none lost
    assert all(metric(g, "vto_gateway_frames_out_total") >= 12 for g in gateways)


def test_bad_client_input_is_refused_with_a_message_counted_and_the_gateway_keeps_serving(
    gateways: list[embedded.Gateway], photo: bytes, stack: Settings
) -> None:
    gateway = gateways[0]

    async def scenario() -> tuple[list[str], int, bool, dict[str, object]]:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{gateway.url}api/sessions", json={"consent": False}) as resp:
                assert resp.status == 403 and (await resp.json())["error"] == "consent_required"
            session, token = await new_session(http, gateway)
            other, _ = await new_session(http, gateway)
            # Another session's token, and a forged one: the socket is closed with 4401 after an error message.
            closes = []
            for query in (f"session={other}&token={token}", f"session={session}&token={token}x"):
                async with http.ws_connect(f"{gateway.url}ws?{query}") as ws:
                    first = await ws.receive_json()
                    await ws.receive()
                    assert first["error"] == "bad_token"
                    closes.append(ws.close_code)
            assert closes == [4401, 4401]
            errors: list[str] = []
            rendered, good_back = 0, False
            async with http.ws_connect(f"{gateway.url}ws?session={session}&token={token}") as ws:
                await ws.send_bytes(frame_message(photo, time.time() * 1000))  # before start: not_started
                await ws.send_str(json.dumps({"action": "start", "item_id": ITEM}))
                await ws.send_str("{not json")
                await ws.send_str(json.dumps({"action": "dance"}))
                await ws.send_str(json.dumps({"action": "select_item", "item_id": "no-such-item"}))
                await ws.send_bytes(b"\x00\x01")  # too short to be a frame
                await ws.send_bytes(frame_message(b"GIF89a not a jpeg", time.time() * 1000))
                await ws.send_bytes(frame_message(photo[:-100], time.time() * 1000))  # cut short
                await ws.send_bytes(frame_message(b"\xff\xd8" + b"\0" * (stack.max_image_bytes + 10), 0.0))
                for _ in range(server.MAX_FPS + 20):  # a flood: more than a second's worth at once
                    await ws.send_bytes(frame_message(photo, time.time() * 1000))
                await asyncio.sleep(2.0)  # the flood is over: a good frame renders again
                await ws.send_bytes(frame_message(photo, time.time() * 1000))
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    msg = await ws.receive(timeout=30)
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        body = json.loads(msg.data)
                        if body["type"] == "error":
                            errors.append(str(body["error"]))
                    elif msg.type == aiohttp.WSMsgType.BINARY:
                        rendered += 1
                        if struct.unpack_from(">dI", msg.data)[1] == server.MAX_FPS + 25:
                            good_back = True  # the good frame after the flood came back: the socket still works
                            break
                    else:
                        break
            async with http.get(f"{gateway.url}healthz") as resp:
                health = await resp.json()
            return errors, rendered, good_back, health

    refused_before = {
        r: metric(gateway, "vto_gateway_refused_total", f'{{reason="{r}"}}')
        for r in ("malformed_json", "unknown_action", "unknown_item", "bad_frame", "not_jpeg", "frame_too_large")
    }
    bad_tokens_before = metric(gateway, "vto_gateway_refused_total", '{reason="bad_token"}')
    errors, rendered, good_back, health = asyncio.run(scenario())
    assert health["status"] == "ok" and good_back
    expected = {"not_started", "malformed_json", "unknown_action", "unknown_item", "bad_frame", "not_jpeg"}
    expected |= {"frame_too_large"}
    assert expected | {"too_many_frames"} <= set(errors), errors
    assert rendered >= 1  # frames within the rate rendered, and the one after the flood
    for reason, before in refused_before.items():
        assert metric(gateway, "vto_gateway_refused_total", f'{{reason="{reason}"}}') >= before + 1, reason
    assert metric(gateway, "vto_gateway_refused_total", '{reason="bad_token"}') == bad_tokens_before + 2


def test_a_token_that_expires_during_the_session_closes_the_socket(gateways: list[embedded.Gateway]) -> None:
    """Not a socket whose frames the workers silently refuse: the page is told (4401) and opens a new session."""
    gateway = gateways[0]
    session = f"web-expiring-{time.time_ns()}"
    token = tokens.mint(gateway.settings.session_key(), session, ttl_s=2)

    async def connect() -> tuple[int | None, float]:
        url = f"{gateway.url}ws?session={session}&token={token}"
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            opened = time.monotonic()
            async for _ in ws:  # hello, then nothing until the close
                pass
            return ws.close_code, time.monotonic() - opened

    code, lasted = asyncio.run(connect())
    assert code == 4401 and 0.5 < lasted < 10
