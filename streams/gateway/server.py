"""`vto gateway`: the try-on page over HTTP, each shopper's WebSocket turned into Kafka records and back.

A page's binary messages are camera frames (its capture time + a JPEG) that become `Frame` records; its text
messages are JSON control that becomes `SessionControl`; the session's rendered frames come back as binary
messages, its size advice and status as JSON. Protocol: docs/gateway.md. A connection only ever sees its own
session: the WebSocket must present a token signed for that session, and rendered frames are routed to it by
session id. Bad input is refused with a message to the page and counted; it never ends the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import logging.config
import statistics
import struct
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
from aiohttp import WSMsgType, web
from google.protobuf.json_format import MessageToDict
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streams import tokens, tracing
from streams.errors import BadInput
from streams.gateway.relay import Relay
from streams.imageheader import BadImage, image_size
from streams.logs import logging_config
from streams.metrics import GatewayMetrics
from streams.proto.vto.v1.common_pb2 import IMAGE_FORMAT_JPEG
from streams.proto.vto.v1.fit_advice_pb2 import FitPreference
from streams.proto.vto.v1.frame_pb2 import Frame
from streams.proto.vto.v1.rendered_frame_pb2 import RenderedFrame
from streams.proto.vto.v1.session_control_pb2 import SessionControl
from streams.settings import Settings, get_settings
from streams.tryon.catalogue import Catalogue

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
PAGE_FPS = 15  # what the page is asked to send
MAX_FPS = 2 * PAGE_FPS  # frames a second a page may send (bursts allowed up to a second's worth)
MAX_CONTROLS_PER_S = 5.0  # control messages a second a page may send
MAX_TEXT_BYTES = 4096  # a control message is a small JSON object
MAX_SIZE_CHARS = 16  # the size of an add_to_cart or purchase (as the worker checks it)
MAX_QUANTITY = 1000
MAX_CONNECTIONS = 2000  # WebSockets per gateway instance; beyond, pages are told to try again (503)
SESSIONS_PER_IP_PER_MINUTE = 30  # sessions one address may open a minute (POST /api/sessions), beyond: 429
CAPTURE_HEADER = struct.Struct(">d")  # the page's capture time, ms
RENDERED_HEADER = struct.Struct(">dI")  # the page's capture time of the frame, ms; its sequence
STATS_INTERVAL_S = 2.0
MAX_PAGE_SESSIONS = 20_000  # sessions remembered across reconnects (~5 KB each: 64 capture times)
PAGE_TIMES = 64  # the page's capture times kept per session (a few seconds of frames in flight)
UNAUTHORIZED = 4401  # WebSocket close code: the token does not open this session
COMMERCE = {"add_to_cart": SessionControl.ACTION_ADD_TO_CART, "purchase": SessionControl.ACTION_PURCHASE}
STATUS_NAMES = {
    RenderedFrame.STATUS_DEGRADED: "degraded",
    RenderedFrame.STATUS_RATE_LIMITED: "rate_limited",
    RenderedFrame.STATUS_OVER_CAPACITY: "over_capacity",
}


class Refused(Exception):
    """Client input the gateway will not forward: `reason` goes to the page and to the metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class PageSession:
    """What the gateway keeps of a session across its sockets (a page that reconnects continues it): the next
    frame's sequence, the page's capture time of recent frames, its clock's offset, whether it was started."""

    next_sequence: int = 0
    offset_ms: float = float("inf")  # server clock - page clock, the smallest seen (the least delayed frame)
    page_ms: OrderedDict[int, float] = field(default_factory=OrderedDict)  # sequence -> the page's capture time
    item_id: str = ""
    started: bool = False


class Rate:
    """A token bucket: `per_s` a second, bursts of up to a second's worth."""

    def __init__(self, per_s: float) -> None:
        self.per_s, self.tokens, self.at = per_s, per_s, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens, self.at = min(self.per_s, self.tokens + (now - self.at) * self.per_s), now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class Connection:
    """One page's WebSocket: its session, and the newest rendered frame waiting to be sent (a slow page skips
    frames instead of queueing them)."""

    def __init__(self, gateway: Gateway, ws: web.WebSocketResponse, session_id: str, token: str) -> None:
        self.gateway, self.ws, self.session_id, self.token = gateway, ws, session_id, token
        self.state = gateway.page_session(session_id)
        self.frame_rate, self.control_rate = Rate(MAX_FPS), Rate(MAX_CONTROLS_PER_S)
        self.pending: bytes | None = None  # the newest rendered frame not yet sent
        self.wake = asyncio.Event()
        self.texts: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=64)
        self.advice = ""
        self.status = "ok"  # the last status the page was told
        self.latencies: deque[float] = deque(maxlen=64)  # capture -> rendered frame back at the gateway, ms
        self.sent_frames = self.dropped = 0
        self.refused_at: dict[str, float] = {}  # reason -> when the page was last told (once a second each)

    # -- page -> Kafka -----------------------------------------------------------------------------------
    def frame(self, data: bytes) -> None:
        started = time.perf_counter()
        state = self.state
        sequence, state.next_sequence = state.next_sequence, state.next_sequence + 1
        settings = self.gateway.settings
        if len(data) <= CAPTURE_HEADER.size:
            raise Refused("bad_frame", "a frame is 8 bytes of capture time followed by a JPEG")
        if len(data) - CAPTURE_HEADER.size > settings.max_image_bytes:
            raise Refused("frame_too_large", f"a frame may be at most {settings.max_image_bytes} bytes")
        (page_ms,) = CAPTURE_HEADER.unpack_from(data)
        jpeg = data[CAPTURE_HEADER.size :]
        if not jpeg.startswith(b"\xff\xd8"):
            raise Refused("not_jpeg", "frames must be JPEG images")
        try:
            width, height = image_size(jpeg)
        except BadImage as exc:
            raise Refused("not_jpeg", f"not a whole JPEG: {exc}") from exc
        if not state.started:
            raise Refused("not_started", 'send {"action": "start"} first')
        if not self.frame_rate.take():
            raise Refused("too_many_frames", f"at most {MAX_FPS} frames a second")
        now_ms = time.time() * 1000.0
        if page_ms != page_ms or abs(now_ms - page_ms) > 86_400_000:  # NaN, or a clock a day off: not a time
            raise Refused("bad_frame", "the capture time is not a time")
        # The page's clock is not ours: map it with the offset of the least delayed frame so far (skew plus the
        # smallest network delay seen), so capture times keep the page's spacing and never lie in the future.
        state.offset_ms = min(state.offset_ms, now_ms - page_ms)
        message = Frame(
            session_id=self.session_id,
            sequence=sequence,
            capture_time_unix_us=int((page_ms + state.offset_ms) * 1000),
            camera_id="browser",
            image=jpeg,
            format=IMAGE_FORMAT_JPEG,
            width=width,
            height=height,
            item_id=state.item_id,
            session_token=self.token,
            reply_partition=self.gateway.relay.partition,
        )
        traceparent = tracing.new_traceparent()
        try:
            self.gateway.relay.publish(
                settings.frames_topic,
                self.session_id.encode(),
                message.SerializeToString(),
                [(tracing.HEADER, traceparent.encode())],  # the page's frame starts its trace here
            )
        except BufferError as exc:
            raise Refused("busy", "the gateway is busy: frames are skipped for a moment") from exc
        state.page_ms[sequence] = page_ms
        while len(state.page_ms) > PAGE_TIMES:
            state.page_ms.popitem(last=False)
        self.gateway.metrics.frames_in.inc()
        self.gateway.metrics.gateway_seconds.observe(time.perf_counter() - started)

    def control(self, text: str) -> None:
        if len(text) > MAX_TEXT_BYTES:
            raise Refused("malformed_json", f"control messages are at most {MAX_TEXT_BYTES} bytes")
        if not self.control_rate.take():
            raise Refused("too_many_messages", f"at most {MAX_CONTROLS_PER_S:g} control messages a second")
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise Refused("malformed_json", f"control messages are JSON objects: {exc}") from exc
        if not isinstance(body, dict):
            raise Refused("malformed_json", "control messages are JSON objects")
        actions = {
            "start": SessionControl.ACTION_START,
            "select_item": SessionControl.ACTION_SELECT_ITEM,
            "end": SessionControl.ACTION_END,
            **COMMERCE,
        }
        action = actions.get(body.get("action"))  # type: ignore[arg-type]
        if action is None:
            raise Refused("unknown_action", f"action must be one of {', '.join(actions)}")
        commerce = action in COMMERCE.values()
        if commerce and not self.state.started:
            raise Refused("not_started", 'send {"action": "start"} first')
        item_id = str(body.get("item_id") or "")
        if item_id and self.gateway.catalogue.get(item_id) is None:
            raise Refused("unknown_item", f"item {item_id!r} is not in the catalogue")
        if action == SessionControl.ACTION_SELECT_ITEM and not item_id:
            raise Refused("unknown_item", "select_item needs an item_id")
        if commerce:
            # The cart or purchase of the item named, else of the one being tried on; it does not change that one.
            self._send_control(self._commerce_message(action, body, item_id or self.state.item_id))
            return
        restart = action == SessionControl.ACTION_START and self.state.started
        if restart:
            # A page starts again after reconnecting, or with a new height or fit: the session goes on (a START
            # would restart its tracking); its item and fit profile change.
            action = SessionControl.ACTION_SET_FIT_PROFILE
        message = self._control_message(action, item_id)
        if action in (SessionControl.ACTION_START, SessionControl.ACTION_SET_FIT_PROFILE):
            try:
                message.height_cm = float(body.get("height_cm") or 0.0)
                message.fit = FitPreference.Value(f"FIT_PREFERENCE_{str(body.get('fit') or 'regular').upper()}")
            except (TypeError, ValueError) as exc:
                raise Refused("malformed_json", f"height_cm is a number, fit regular, loose or tight: {exc}") from exc
        if restart and item_id:
            self._send_control(self._control_message(SessionControl.ACTION_SELECT_ITEM, item_id))
        if item_id:
            self.state.item_id = item_id
        self.state.started = action != SessionControl.ACTION_END
        self._send_control(message)

    def _commerce_message(
        self, action: SessionControl.Action.ValueType, body: dict[str, Any], item_id: str
    ) -> SessionControl:
        if not item_id:
            raise Refused("unknown_item", f"{body['action']} needs an item_id, or an item selected first")
        size = "" if body.get("size") is None else body["size"]  # absent or null: none chosen
        quantity = 1 if body.get("quantity") is None else body["quantity"]
        if not isinstance(size, str) or len(size) > MAX_SIZE_CHARS:
            raise Refused("bad_commerce", f"size is a string of at most {MAX_SIZE_CHARS} characters")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
            raise Refused("bad_commerce", f"quantity is an integer from 1 to {MAX_QUANTITY}")
        message = self._control_message(action, item_id)
        message.size, message.quantity = size, quantity
        return message

    def _control_message(self, action: SessionControl.Action.ValueType, item_id: str) -> SessionControl:
        return SessionControl(
            session_id=self.session_id,
            action=action,
            item_id=item_id,
            time_unix_us=time.time_ns() // 1000,
            session_token=self.token,
        )

    def _send_control(self, message: SessionControl) -> None:
        try:
            self.gateway.relay.publish(
                self.gateway.settings.control_topic, self.session_id.encode(), message.SerializeToString()
            )
        except BufferError as exc:
            raise Refused("busy", "the gateway is busy: try again") from exc

    # -- Kafka -> page -----------------------------------------------------------------------------------
    def rendered(self, value: bytes) -> None:
        frame = RenderedFrame.FromString(value)
        status = STATUS_NAMES.get(frame.status, "ok" if frame.status == RenderedFrame.STATUS_OK else "degraded")
        if status != "ok" or self.status != "ok":  # every notice, and the first frame after them: back to ok
            self.status = status
            self.text({"type": "status", "status": status, "detail": frame.status_detail})
        if frame.HasField("fit_advice"):
            advice = MessageToDict(frame.fit_advice, preserving_proto_field_name=True)
            encoded = json.dumps(advice, sort_keys=True)
            if encoded != self.advice:  # only when it changes
                self.advice = encoded
                self.text({"type": "advice", "item_id": frame.item_id, **advice})
        if not frame.image:
            return
        page_ms = self.state.page_ms.get(frame.sequence, 0.0)
        self.latencies.append(time.time() * 1000.0 - frame.capture_time_unix_us / 1000.0)
        if self.pending is not None:
            self.dropped += 1
            self.gateway.metrics.dropped_to_page.inc()
        self.pending = RENDERED_HEADER.pack(page_ms, frame.sequence) + frame.image
        self.wake.set()

    def text(self, body: dict[str, Any]) -> None:
        if self.texts.full():
            return  # a page that reads nothing gets no more notes; frames still skip to the newest
        self.texts.put_nowait(body)
        self.wake.set()

    def refuse(self, refused: Refused) -> None:
        self.gateway.metrics.refused.labels(refused.reason).inc()
        now = time.monotonic()
        if now - self.refused_at.get(refused.reason, 0.0) >= 1.0:
            self.refused_at[refused.reason] = now
            self.text({"type": "error", "error": refused.reason, "message": str(refused)})

    async def send_loop(self) -> None:
        """Texts in order, then the newest rendered frame; one write at a time."""
        try:
            await self._send_all()
        except (ConnectionError, RuntimeError) as exc:  # the page went away mid-write: the handler ends it
            log.info("page of %s gone while sending: %s", self.session_id, exc, extra={"session_id": self.session_id})

    async def _send_all(self) -> None:
        while not self.ws.closed:
            await self.wake.wait()
            self.wake.clear()
            while not self.texts.empty():
                await self.ws.send_str(json.dumps(self.texts.get_nowait()))
            if self.pending is not None:
                data, self.pending = self.pending, None
                started = time.perf_counter()
                await self.ws.send_bytes(data)
                self.gateway.metrics.send_seconds.observe(time.perf_counter() - started)
                self.gateway.metrics.frames_out.inc()
                self.sent_frames += 1

    async def stats_loop(self) -> None:
        """Every STATS_INTERVAL_S: what the gateway counted for this page, and the latency it sees from the
        frame's capture (on the gateway's clock) to its rendered frame back at the gateway."""
        while not self.ws.closed:
            await asyncio.sleep(STATS_INTERVAL_S)
            latency = round(statistics.median(self.latencies), 1) if self.latencies else None
            self.text(
                {
                    "type": "stats",
                    "frames_in": self.state.next_sequence,
                    "frames_out": self.sent_frames,
                    "dropped_to_page": self.dropped,
                    "server_latency_ms": latency,
                }
            )


class Gateway:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.key = settings.session_key()
        self.metrics = GatewayMetrics(registry or CollectorRegistry())
        self.catalogue = Catalogue(settings.catalogue_dir)
        self.thumbnails: dict[str, bytes] = {}
        self.sessions: dict[str, Connection] = {}
        self.page_sessions: OrderedDict[str, PageSession] = OrderedDict()  # the most recently used, bounded
        self.opened: OrderedDict[str, list[float]] = OrderedDict()  # address -> when it opened sessions lately
        self.tasks: set[asyncio.Task[None]] = set()
        self.relay: Relay  # started with the app (it needs the running loop)

    def page_session(self, session_id: str) -> PageSession:
        state = self.page_sessions.pop(session_id, None) or PageSession()
        self.page_sessions[session_id] = state
        while len(self.page_sessions) > MAX_PAGE_SESSIONS:
            self.page_sessions.popitem(last=False)
        return state

    def deliver(self, session_id: str, value: bytes) -> None:
        connection = self.sessions.get(session_id)
        if connection is None:
            self.metrics.unrouted.inc()
            return
        try:
            connection.rendered(value)
        except Exception:  # a record the gateway cannot read must not stop the relay
            log.exception("unreadable rendered frame for session %s", session_id, extra={"session_id": session_id})

    # -- HTTP ------------------------------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def catalogue_index(self, request: web.Request) -> web.Response:
        if self.catalogue.reload_if_changed():
            self.thumbnails.clear()  # an item's picture may have changed
        items = [
            {
                "id": item.id,
                "name": item.name,
                "category": item.category,
                "sized": bool(item.size_chart),
                "image": f"/api/catalogue/{item.id}/image",
            }
            for item in self.catalogue.items()
        ]
        return web.json_response({"items": items})

    async def item_image(self, request: web.Request) -> web.Response:
        item_id = request.match_info["item_id"]
        item = self.catalogue.get(item_id)
        if item is None:
            return web.json_response({"error": "unknown_item", "message": f"no item {item_id!r}"}, status=404)
        if item_id not in self.thumbnails:
            image = item.image
            scale = min(1.0, 256 / max(image.shape[:2]))
            if scale < 1.0:
                image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            self.thumbnails[item_id] = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA))[1].tobytes()
        return web.Response(body=self.thumbnails[item_id], content_type="image/png")

    async def new_session(self, request: web.Request) -> web.Response:
        if not self._may_open_session(request.remote or ""):
            self.metrics.refused.labels("too_many_sessions").inc()
            return web.json_response(
                {"error": "too_many_sessions", "message": "too many new sessions from this address: try later"},
                status=429,
            )
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("consent") is not True:
            return web.json_response(
                {
                    "error": "consent_required",
                    "message": "the try-on processes camera frames only with the shopper's consent",
                },
                status=403,
            )
        session_id = f"web-{uuid.uuid4().hex}"
        ttl = self.settings.session_token_ttl_s
        token = tokens.mint(self.key, session_id, ttl_s=ttl)
        return web.json_response(
            {"session_id": session_id, "token": token, "expires_unix": int(time.time()) + ttl}, status=201
        )

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self.tasks.discard)

    def _may_open_session(self, address: str) -> bool:
        """At most SESSIONS_PER_IP_PER_MINUTE new sessions a minute per address (a bounded table of addresses)."""
        now = time.monotonic()
        opened = [t for t in self.opened.pop(address, []) if now - t < 60.0]
        allowed = len(opened) < SESSIONS_PER_IP_PER_MINUTE
        self.opened[address] = [*opened, now] if allowed else opened
        while len(self.opened) > 10_000:
            self.opened.popitem(last=False)
        return allowed

    async def healthz(self, request: web.Request) -> web.Response:
        alive = hasattr(self, "relay") and self.relay.thread.is_alive()
        body = {"status": "ok" if alive else "relay stopped", "instance": self.settings.gateway_instance}
        return web.json_response(body, status=200 if alive else 503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # -- WebSocket -------------------------------------------------------------------------------------------
    async def socket(self, request: web.Request) -> web.WebSocketResponse:
        # No compression: rendered frames are JPEGs (deflating them costs CPU and saves nothing).
        ws = web.WebSocketResponse(max_msg_size=self.settings.max_image_bytes + 4096, heartbeat=20, compress=False)
        await ws.prepare(request)
        session_id, token = request.query.get("session", ""), request.query.get("token", "")
        if len(self.sessions) >= MAX_CONNECTIONS:
            self.metrics.refused.labels("busy").inc()
            await ws.send_str(json.dumps({"type": "error", "error": "busy", "message": "try again in a moment"}))
            await ws.close(code=1013, message=b"try again later")
            return ws
        try:
            expires = tokens.verify(self.key, token, session_id)
        except BadInput as exc:
            self.metrics.refused.labels("bad_token").inc()
            await ws.send_str(json.dumps({"type": "error", "error": "bad_token", "message": str(exc)}))
            await ws.close(code=UNAUTHORIZED, message=b"bad token")
            return ws
        previous = self.sessions.get(session_id)
        connection = Connection(self, ws, session_id, token)
        self.sessions[session_id] = connection  # the newest socket holds the session
        if previous is not None:  # closed in the background: a dead socket's close can take long
            self._background(_close(previous.ws, 4409, b"session opened elsewhere"))
        # The token's expiry ends the socket (4401: the page opens a new session), not a silent stream of frames
        # the workers would refuse.
        expiry = asyncio.get_running_loop().call_later(
            max(expires - time.time(), 0.0), lambda: self._background(_close(ws, UNAUTHORIZED, b"token expired"))
        )
        self.metrics.connections.inc()
        sender = asyncio.ensure_future(connection.send_loop())
        stats = asyncio.ensure_future(connection.stats_loop())
        connection.text({"type": "hello", "session_id": session_id, "max_fps": PAGE_FPS})
        try:
            async for msg in ws:
                try:
                    if msg.type == WSMsgType.BINARY:
                        connection.frame(msg.data)
                    elif msg.type == WSMsgType.TEXT:
                        connection.control(msg.data)
                except Refused as refused:
                    connection.refuse(refused)
        finally:
            self.metrics.connections.dec()
            if self.sessions.get(session_id) is connection:
                del self.sessions[session_id]
            connection.wake.set()
            expiry.cancel()
            sender.cancel()
            stats.cancel()
            await asyncio.gather(sender, stats, return_exceptions=True)
        return ws

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_TEXT_BYTES)  # HTTP bodies are small JSON; frames go by WebSocket
        app.router.add_get("/", self.page)
        app.router.add_static("/static/", STATIC)
        app.router.add_get("/api/catalogue", self.catalogue_index)
        app.router.add_get("/api/catalogue/{item_id}/image", self.item_image)
        app.router.add_post("/api/sessions", self.new_session)
        app.router.add_get("/ws", self.socket)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics_page)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._stop)
        return app

    async def _start(self, app: web.Application) -> None:
        self.relay = Relay(self.settings, asyncio.get_running_loop(), self.deliver)
        self.relay.start()

    async def _stop(self, app: web.Application) -> None:
        closing = [_close(c.ws, 1001, b"gateway going away") for c in list(self.sessions.values())]
        await asyncio.gather(*closing, return_exceptions=True)
        if hasattr(self, "relay"):
            await asyncio.get_running_loop().run_in_executor(None, self.relay.close)


async def _close(ws: web.WebSocketResponse, code: int, message: bytes) -> None:
    """Close a socket within 2 s (aiohttp waits for unsent data, which a dead peer never takes)."""
    with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
        await asyncio.wait_for(ws.close(code=code, message=message), 2.0)


def main() -> None:
    """`vto gateway`: serve until SIGTERM (open sockets are closed with 1001: pages reconnect elsewhere)."""
    settings = get_settings()
    logging.config.dictConfig(logging_config(settings.log_format, settings.log_level, "gateway"))
    gateway = Gateway(settings)
    # No access log: the WebSocket's query string carries the session token.
    web.run_app(gateway.app(), host=settings.bind_address, port=settings.gateway_port, print=None, access_log=None)
