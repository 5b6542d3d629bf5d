"""A frame's journey through a worker, one function per stage:

    ingest (streams/app.py: Faust hands over a micro-batch of records)
      -> validate  (`validate`: bytes -> Frame, or BadInput with a reason)
      -> infer + render (`TritonTryOn.infer`: the `tryon` model on Triton)
      -> publish   (`Outputs`: RenderedFrame, TryOnEvents, DeadLetters and SessionStates, for the app to send)
      -> account   (`Metrics`, here and nowhere else)

Frames of one session are handled in order, each with the tracking state its predecessor left; different
sessions in a batch run concurrently, so Triton's dynamic batcher sees many sessions at once. A session's state
(item, events already sent, perception tracking state) goes out with every batch to a compacted topic, so the
worker that takes over a partition continues the session where it was. Nothing here knows about Faust, which
keeps it unit-testable.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from streams import tokens, tracing
from streams.codec import decode
from streams.errors import BadInput, InferenceUnavailable, SerializationError
from streams.fit.scale import MAX_HEIGHT_CM, MIN_HEIGHT_CM
from streams.imageheader import BadImage, image_size
from streams.inference import TryOnRequest, TryOnResult, perception_flags
from streams.metrics import Metrics
from streams.proto.vto.v1.common_pb2 import IMAGE_FORMAT_JPEG, IMAGE_FORMAT_PNG, Keypoint
from streams.proto.vto.v1.dead_letter_pb2 import DeadLetter
from streams.proto.vto.v1.fit_advice_pb2 import FitAdvice, FitPreference
from streams.proto.vto.v1.frame_outcome_pb2 import FrameOutcome
from streams.proto.vto.v1.frame_pb2 import Frame
from streams.proto.vto.v1.perception_pb2 import PoseSource
from streams.proto.vto.v1.rendered_frame_pb2 import RenderedFrame
from streams.proto.vto.v1.session_control_pb2 import SessionControl
from streams.proto.vto.v1.session_state_pb2 import SessionState as SessionStateMessage
from streams.proto.vto.v1.tryon_event_pb2 import TryOnEvent
from streams.settings import Settings
from streams.tryon.categories import FEATURES, FIT_FEATURES

log = logging.getLogger(__name__)

# What became of a frame sent to inference: its result, the error it met, or why it was not sent (a drop reason).
Inferred = TryOnResult | BadInput | InferenceUnavailable | str

MAGIC = {IMAGE_FORMAT_JPEG: b"\xff\xd8\xff", IMAGE_FORMAT_PNG: b"\x89PNG\r\n\x1a\n"}
NUM_KEYPOINTS = 33
KNOWN_ACTIONS = (
    SessionControl.ACTION_START,
    SessionControl.ACTION_SELECT_ITEM,
    SessionControl.ACTION_END,
    SessionControl.ACTION_SET_FIT_PROFILE,
    SessionControl.ACTION_ADD_TO_CART,
    SessionControl.ACTION_PURCHASE,
    SessionControl.ACTION_ERASE,
)
ACTIVE_WINDOW_US = 30_000_000  # a session with a frame in the last 30 s counts against max_active_sessions
NOTICE_INTERVAL_US = 1_000_000  # at most one refusal notice a second per session
ADVICE_CONFIDENCE_STEP = 0.1  # a TYPE_FIT_ADVICE event when the confidence moved this much (or the size changed)
ADVICE_KEY_SEPARATOR = "\x1f"  # ASCII unit separator: cannot appear in an item id or a size
# Per worker; least recently seen sessions are forgotten first (their state is on the state topic). A session's
# state is ~32 KB with face tracking, so 10 000 sessions bound it to ~320 MB.
MAX_SESSIONS = 10_000
# Sessions that left memory (ended, or evicted) keep how many events they sent, ~100 bytes each: erasure needs it,
# and so does the numbering of their next events (keys must never repeat on the compacted topic). 200 000: ~20 MB.
MAX_COUNTS = 200_000
DWELL_MAX_GAP_US = 1_000_000  # frames further apart than this do not add to the dwell (the stream paused)
MAX_SIZE_CHARS = 16  # SessionControl.size of a cart or purchase
MAX_QUANTITY = 1000


@dataclass(frozen=True)
class Record:
    """A Kafka record as the pipeline sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tracing.Headers = ()

    def traceparent(self) -> str:
        """The trace context the worker writes on everything about this record (streams/tracing.py)."""
        return tracing.continue_trace(self.headers, self.topic, self.partition, self.offset)

    def log_fields(self, frame: Frame | None = None) -> dict[str, object]:
        """What a log line about this record carries (streams/logs.py writes them as JSON fields)."""
        session = frame.session_id if frame is not None else (self.key or b"").decode(errors="replace")
        fields: dict[str, object] = {"session_id": session, "partition": self.partition, "offset": self.offset}
        if frame is not None:
            fields["seq"] = frame.sequence
        fields["trace_id"] = tracing.trace_id(self.traceparent())
        return fields


@dataclass
class Outputs:
    """What a batch produced, by destination topic: (key, value) pairs in the order they must be sent."""

    rendered: list[tuple[bytes, bytes]] = field(default_factory=list)
    # (partition of the gateway replies topic, session key, RenderedFrame): browser sessions' frames
    replies: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    # (partition, key <session_id>/<n>, TryOnEvent or None for a tombstone): the session's frames partition
    events: list[tuple[int, bytes, bytes | None]] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    # (partition, key, SessionState or None for a tombstone): written to the state topic's same partition
    states: list[tuple[int, bytes, bytes | None]] = field(default_factory=list)
    outcomes: list[tuple[bytes | None, bytes]] = field(default_factory=list)  # a FrameOutcome per frames record
    # Capture times of the frames rendered: the worker observes their end-to-end latency once they are sent
    captured: list[int] = field(default_factory=list)
    # The traceparent header of the record at (list name, index): what is written about a frame carries its trace
    traces: dict[tuple[str, int], str] = field(default_factory=dict)

    def trace(self, kind: str, traceparent: str) -> None:
        """Attach a trace context to the record just appended to the list `kind` (rendered, outcomes, ...)."""
        self.traces[(kind, len(getattr(self, kind)) - 1)] = traceparent


class TryOn(Protocol):
    async def infer(self, request: TryOnRequest) -> TryOnResult: ...


class Categories(Protocol):
    """What the worker needs of the catalogue: an item's category (None for an unknown item), and whether it has a
    size chart (then Triton also runs what size advice needs)."""

    def category(self, item_id: str) -> str | None: ...

    def sized(self, item_id: str) -> bool: ...


@dataclass
class SessionState:
    item_id: str = ""
    pose_found: bool | None = None
    rendered_items: set[str] = field(default_factory=set)
    perception: bytes = b""  # opaque tracking state from Triton, handed back with the next frame
    sequence: int = 0
    capture_time_unix_us: int = 0
    height_cm: float = 0.0  # the shopper's fit profile (SessionControl): 0 = height not given
    fit: int = FitPreference.FIT_PREFERENCE_UNSPECIFIED
    share_measurements: bool = False
    advised: str = ""  # the last advice sent as an event: item, size, runner-up, consent, confidence
    dwell_item: str = ""  # the item the shopper wears now: its dwell so far, frames and last frame (ITEM_DWELL)
    dwell_us: int = 0
    dwell_frames: int = 0
    dwell_last_us: int = 0  # capture time of its last frame with a pose; 0: the next frame starts a new stretch
    events_sent: int = 0  # its events are keyed <session_id>/<n>, n < events_sent: what erasure tombstones
    ended_us: int = 0  # time of the session's END (0: open)
    erased: bool = False  # erasure was asked for: nothing more of it is handled or written (in memory only)
    partition: int = 0  # its frames partition, where its events and state go (in memory only)
    seen_us: int = 0  # when its last frame was admitted (in memory only)
    tokens: float = 0.0  # rate limit: frames it may still send now, refilled at max_session_fps
    tokens_us: int = 0

    def set_profile(self, control: SessionControl) -> None:
        """The shopper's fit profile as a START or SET_FIT_PROFILE carries it (checked by check_fit_profile)."""
        self.height_cm, self.fit, self.share_measurements = control.height_cm, control.fit, control.share_measurements

    def to_message(self, session_id: str) -> SessionStateMessage:
        return SessionStateMessage(
            session_id=session_id,
            sequence=self.sequence,
            capture_time_unix_us=self.capture_time_unix_us,
            item_id=self.item_id,
            pose_found=bool(self.pose_found),
            pose_seen=self.pose_found is not None,
            rendered_items=sorted(self.rendered_items),
            perception=self.perception,
            updated_unix_us=now_us(),
            height_cm=self.height_cm,
            fit=self.fit,  # type: ignore[arg-type]
            share_measurements=self.share_measurements,
            advised=self.advised,
            events_sent=self.events_sent,
            dwell_item=self.dwell_item,
            dwell_us=self.dwell_us,
            dwell_frames=self.dwell_frames,
            dwell_last_us=self.dwell_last_us,
        )

    def ended_message(self, session_id: str) -> SessionStateMessage:
        """What an ended session leaves on the state topic: enough to refuse its late frames and to erase its
        events; no tracking state, no profile, no measurements."""
        return SessionStateMessage(
            session_id=session_id,
            item_id=self.item_id,
            rendered_items=sorted(self.rendered_items),
            events_sent=self.events_sent,
            ended_unix_us=self.ended_us,
            updated_unix_us=now_us(),
        )

    @classmethod
    def from_message(cls, msg: SessionStateMessage) -> SessionState:
        return cls(
            item_id=msg.item_id,
            pose_found=msg.pose_found if msg.pose_seen else None,
            rendered_items=set(msg.rendered_items),
            perception=msg.perception,
            sequence=msg.sequence,
            capture_time_unix_us=msg.capture_time_unix_us,
            height_cm=msg.height_cm,
            fit=msg.fit,
            share_measurements=msg.share_measurements,
            advised=msg.advised,
            events_sent=msg.events_sent,
            ended_us=msg.ended_unix_us,
            dwell_item=msg.dwell_item,
            dwell_us=msg.dwell_us,
            dwell_frames=msg.dwell_frames,
            dwell_last_us=msg.dwell_last_us,
        )


def now_us() -> int:
    return time.time_ns() // 1000


def age_s(frame: Frame) -> float:
    """Seconds since the frame was captured, by the worker's clock (negative: a client clock ahead)."""
    return now_us() / 1e6 - frame.capture_time_unix_us / 1e6


def validate(record: Record, settings: Settings, key: bytes) -> Frame:
    """Stage 'validate': the record must be a well-formed Frame of the session its token was signed for (with `key`,
    the session-token key), with the shopper's consent, that we can render; else BadInput(reason)."""
    try:
        frame = decode(Frame, record.value)
    except SerializationError as exc:
        raise BadInput("undecodable", str(exc)) from exc
    if not frame.session_id:
        raise BadInput("missing_session_id", "Frame.session_id is empty")
    if record.key != frame.session_id.encode():
        raise BadInput("key_mismatch", "record key must be the session id (keeps a session's frames in order)")
    tokens.verify(key, frame.session_token, frame.session_id)  # before anything looks at the image
    if frame.capture_time_unix_us <= 0:
        raise BadInput("missing_capture_time", "Frame.capture_time_unix_us must be set")
    if -age_s(frame) > settings.max_clock_skew_s:
        # A clock in the future would pass every freshness check: refused, not trusted.
        raise BadInput("future_capture_time", f"capture time is {-age_s(frame):.1f} s ahead of the worker's clock")
    if not frame.image:
        raise BadInput("empty_image", "Frame.image is empty")
    if len(frame.image) > settings.max_image_bytes:
        raise BadInput("image_too_large", f"{len(frame.image)} bytes > {settings.max_image_bytes}")
    magic = MAGIC.get(frame.format)
    if magic is None:
        raise BadInput("unsupported_format", f"format {frame.format} is not JPEG or PNG")
    if not frame.image.startswith(magic):
        raise BadInput("format_mismatch", "image bytes do not start with the signature of the declared format")
    if not (0 < frame.width <= settings.max_image_side and 0 < frame.height <= settings.max_image_side):
        raise BadInput("bad_dimensions", f"{frame.width}x{frame.height} outside 1..{settings.max_image_side}")
    try:
        width, height = image_size(frame.image)
    except BadImage as exc:
        raise BadInput("corrupt_image", str(exc)) from exc
    if (width, height) != (frame.width, frame.height):
        raise BadInput(
            "dimension_mismatch", f"declared {frame.width}x{frame.height}, the image's header says {width}x{height}"
        )
    if len(frame.client_keypoints) not in (0, NUM_KEYPOINTS):
        raise BadInput("bad_client_keypoints", f"{len(frame.client_keypoints)} client keypoints, expected 0 or 33")
    for i, kp in enumerate(frame.client_keypoints):
        values = (kp.x, kp.y, kp.visibility, kp.presence)
        if not all(math.isfinite(v) for v in values):
            raise BadInput("bad_client_keypoints", f"client keypoint {i} is not finite: {values}")
        if not (0.0 <= kp.x <= frame.width and 0.0 <= kp.y <= frame.height):
            raise BadInput(
                "bad_client_keypoints",
                f"client keypoint {i} ({kp.x}, {kp.y}) is outside the {frame.width}x{frame.height} frame",
            )
        if not (0.0 <= kp.visibility <= 1.0 and 0.0 <= kp.presence <= 1.0):
            raise BadInput("bad_client_keypoints", f"client keypoint {i} visibility/presence outside 0..1")
    if frame.HasField("reply_partition") and not 0 <= frame.reply_partition < settings.gateway_reply_partitions:
        raise BadInput(
            "bad_reply_partition",
            f"reply partition {frame.reply_partition} outside 0..{settings.gateway_reply_partitions - 1}",
        )
    return frame


COMMERCE = {
    SessionControl.ACTION_ADD_TO_CART: TryOnEvent.TYPE_ADD_TO_CART,
    SessionControl.ACTION_PURCHASE: TryOnEvent.TYPE_PURCHASE,
}


def check_commerce(control: SessionControl) -> None:
    """A cart or purchase names an item, a short size and a sane quantity, else BadInput("bad_commerce")."""
    if not control.item_id:
        raise BadInput("bad_commerce", f"{SessionControl.Action.Name(control.action)} needs an item_id")
    if len(control.size) > MAX_SIZE_CHARS:
        raise BadInput("bad_commerce", f"size {control.size[:32]!r} is longer than {MAX_SIZE_CHARS} characters")
    if control.quantity > MAX_QUANTITY:
        raise BadInput("bad_commerce", f"quantity {control.quantity} is over {MAX_QUANTITY}")


def check_fit_profile(control: SessionControl) -> None:
    """The shopper's fit profile on a SessionControl must be usable, else BadInput("bad_fit_profile")."""
    height = control.height_cm
    if height and not (math.isfinite(height) and MIN_HEIGHT_CM <= height <= MAX_HEIGHT_CM):
        raise BadInput(
            "bad_fit_profile", f"height_cm {height} is outside {MIN_HEIGHT_CM:.0f}..{MAX_HEIGHT_CM:.0f} (0 = not given)"
        )
    if control.fit not in FitPreference.values():
        raise BadInput("bad_fit_profile", f"fit {control.fit} is not a FitPreference")


class FramePipeline:
    def __init__(
        self, settings: Settings, tryon: TryOn, metrics: Metrics, worker_id: str, catalogue: Categories | None = None
    ) -> None:
        self.settings = settings
        self.key = settings.session_key()  # ConfigError without one: a worker never runs without tokens
        self.catalogue = catalogue
        self.tryon = tryon
        self.metrics = metrics
        self.worker_id = worker_id
        self.sessions: OrderedDict[str, SessionState] = OrderedDict()
        self.noticed: OrderedDict[str, int] = OrderedDict()  # session -> when its last refusal notice went out
        self.active_count = 0  # sessions with a frame in ACTIVE_WINDOW_US when last counted, plus admitted since
        self.active_counted_us = 0
        self.forgotten_at = 0  # when ended sessions were last cleared out
        self.counts: OrderedDict[str, int] = OrderedDict()  # session not in memory -> events it sent
        # session -> done once the batch in flight with its frames has made its outputs (the worker overlaps batches)
        self.busy: dict[str, asyncio.Future[None]] = {}
        self.newest_taken: dict[str, int] = {}  # busy session -> sequence of its newest frame taken into a batch

    # -- state ------------------------------------------------------------------------------------------
    def _session(self, session_id: str) -> SessionState:
        state = self.sessions.pop(session_id, None)
        if state is None:  # new, or back after leaving memory: its events go on numbering where they stopped
            state = SessionState(events_sent=self.counts.pop(session_id, 0))
        self.sessions[session_id] = state
        self._evict()
        return state

    def _evict(self) -> None:
        """Least recently seen sessions leave memory beyond MAX_SESSIONS (their state is on the state topic);
        their event counts stay, so their next events and an erasure number them right."""
        while len(self.sessions) > MAX_SESSIONS:
            evicted, old = self.sessions.popitem(last=False)
            if not old.erased:
                self._remember_count(evicted, old.events_sent)

    def _ended_long_ago(self, state: SessionState) -> bool:
        """Ended before any frame that could still be rendered was captured: nothing of it can arrive any more."""
        return bool(state.ended_us) and state.ended_us < now_us() - int((self.settings.frame_max_age_s + 1.0) * 1e6)

    def _free_place(self, state: SessionState) -> None:
        """An admitted session that ends or is erased frees its place under max_active_sessions at once."""
        if state.seen_us and not state.ended_us:
            self.active_count = max(0, self.active_count - 1)

    def _event(
        self,
        out: Outputs,
        session_id: str,
        item_id: str,
        kind: TryOnEvent.Type.ValueType,
        frame: Frame | None = None,
        advice: FitAdvice | None = None,
        time_us: int = 0,
        **fields: Any,
    ) -> None:
        """A try-on event of the session, keyed <session_id>/<n>. Its event time: the capture time of the frame that
        caused it, else `time_us` (the SessionControl record's time), else now."""
        event = TryOnEvent(session_id=session_id, item_id=item_id, type=kind, event_time_unix_us=time_us or now_us())
        if advice is not None:
            event.fit_advice.CopyFrom(advice)
        if frame is not None:
            event.capture_time_unix_us = event.event_time_unix_us = frame.capture_time_unix_us
            event.sequence = frame.sequence
        for name, value in fields.items():
            setattr(event, name, value)
        state = self._session(session_id)
        out.events.append((state.partition, f"{session_id}/{state.events_sent}".encode(), event.SerializeToString()))
        state.events_sent += 1
        self.metrics.events.labels(TryOnEvent.Type.Name(kind)).inc()

    def _dead_letter(self, out: Outputs, record: Record, error: BadInput, frame: Frame | None = None) -> None:
        log.warning(
            "dead-lettering %s[%d]@%d: %s",
            record.topic,
            record.partition,
            record.offset,
            error,
            extra=record.log_fields(frame),
        )
        letter = DeadLetter(
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key or b"",
            # Without the shopper's consent nothing of the frame is kept, not even for triage.
            value=b"" if error.reason == "no_consent" else record.value or b"",
            reason=error.reason,
            detail=error.detail,
            worker_id=self.worker_id,
            time_unix_us=now_us(),
        )
        out.dead_letters.append((record.key, letter.SerializeToString()))
        out.trace("dead_letters", record.traceparent())
        self.metrics.dead_letters.labels(error.reason).inc()

    # -- frames -----------------------------------------------------------------------------------------
    async def handle_frames(self, records: list[Record]) -> Outputs:
        """Run a micro-batch of frame records through every stage; never raises for a bad record.

        Every fresh frame of the batch is inferred concurrently (Triton batches them); results are then
        published and accounted strictly in record order, so each session's frames stay in order. Batches may
        overlap (the worker takes the next while one is at Triton): a session's frames wait until the earlier batch
        holding its frames has made its outputs, so they start from the tracking state and the saved state that
        batch left.
        """
        self.metrics.batch_frames.observe(len(records))
        self._forget_ended()
        out = Outputs()
        fresh: list[tuple[Record, Frame]] = []
        for record in records:
            started = time.perf_counter()
            try:
                frame = validate(record, self.settings, self.key)
            except BadInput as exc:
                self._reject(out, record, exc)
                continue
            finally:
                self.metrics.stage_seconds.labels("validate").observe(time.perf_counter() - started)
            age = age_s(frame)
            if age > self.settings.frame_max_age_s:
                self._drop(out, record, frame, "stale")
                continue
            known = self.sessions.get(frame.session_id)
            if known is not None and known.erased:
                self._drop(out, record, frame, "session_erased")  # in flight when erasure was asked: not handled
                continue
            if known is not None and known.ended_us and frame.capture_time_unix_us > known.ended_us:
                # Captured after its session's END, with no new START: nothing is open to render it into.
                self._drop(out, record, frame, "session_ended")
                continue
            if self._replayed(frame):
                # Already folded into the session's state (its worker died before committing the offset):
                # it was rendered then; rendering it again would replay it into the tracking filters.
                self._drop(out, record, frame, "replayed")
                continue
            self.metrics.stage_seconds.labels("queue").observe(max(age, 0.0))
            if frame.item_id and self._category(frame.item_id) is None:
                unknown = BadInput("unknown_item", f"item {frame.item_id!r} is not in the catalogue")
                self._reject(out, record, unknown, frame)
                continue
            fresh.append((record, frame))
        # Superseded first: a frame that will not be rendered must not use up its session's rate.
        fresh = [(record, frame) for record, frame in self._latest_wins(out, fresh) if self._admit(out, record, frame)]
        by_session: dict[str, list[int]] = {}
        for index, (_, frame) in enumerate(fresh):
            by_session.setdefault(frame.session_id, []).append(index)
        results: list[tuple[Inferred, float]] = [("", 0.0)] * len(fresh)
        earlier = {session_id: self.busy[session_id] for session_id in by_session if session_id in self.busy}
        made = asyncio.get_running_loop().create_future()
        self.busy.update(dict.fromkeys(by_session, made))
        for _, frame in fresh:
            self.newest_taken[frame.session_id] = max(self.newest_taken.get(frame.session_id, -1), frame.sequence)

        async def session_chain(session_id: str, indices: list[int]) -> None:
            # A session's frames one after the other: each needs the tracking state its predecessor left.
            if session_id in earlier:
                await earlier[session_id]
            for index in indices:
                frame = fresh[index][1]
                if self._replayed(frame):  # handled by an earlier batch (the same record sent twice)
                    results[index] = ("replayed", 0.0)
                elif frame.sequence < self.newest_taken[session_id] and age_s(frame) > self.settings.supersede_after_s:
                    results[index] = ("superseded", 0.0)  # behind, and a newer frame of its session is taken
                else:
                    results[index] = await self._infer(frame)

        try:
            # Every chain ends before the batch lets go of its sessions, even when one of them failed.
            ended = await asyncio.gather(*(session_chain(s, i) for s, i in by_session.items()), return_exceptions=True)
            for failure in ended:
                if isinstance(failure, BaseException):
                    raise failure
            return self._outputs(out, fresh, results)
        finally:
            made.set_result(None)
            for session_id in by_session:
                if self.busy.get(session_id) is made:  # no later batch holds its frames
                    del self.busy[session_id], self.newest_taken[session_id]

    def _outputs(
        self,
        out: Outputs,
        fresh: list[tuple[Record, Frame]],
        results: list[tuple[Inferred, float]],
    ) -> Outputs:
        """A batch's inferred frames, in record order: rendered, refused, dropped or dead-lettered; then the states
        of its sessions."""
        touched: dict[str, None] = {}  # sessions whose state goes out with the batch, in order
        for (record, frame), (result, infer_s) in zip(fresh, results, strict=True):
            if isinstance(result, str):  # not sent to Triton (session_chain says why)
                if result == "replayed":
                    self._drop(out, record, frame, "replayed")
                else:
                    self._drop(out, record, frame, "superseded")
                continue
            if self.sessions.get(frame.session_id, SessionState()).erased:
                self._drop(out, record, frame, "session_erased")  # erased while it was being inferred
                continue
            self._session(frame.session_id).partition = record.partition
            touched[frame.session_id] = None
            if isinstance(result, BadInput):
                self._reject(out, record, result, frame)
            elif isinstance(result, InferenceUnavailable):
                log.error(
                    "dropping frame %s/%d: %s", frame.session_id, frame.sequence, result, extra=record.log_fields(frame)
                )
                detail = "the try-on is paused for a moment (inference unavailable); frames will render again"
                self._refuse(out, record, frame, RenderedFrame.STATUS_DEGRADED, "inference_unavailable", detail)
            elif age_s(frame) > self.settings.frame_max_age_s:
                # Inference (with its retries) took the frame past its budget: the shopper has moved on.
                self._drop(out, record, frame, "stale")
            elif (result.width, result.height) != (frame.width, frame.height):
                self._reject(
                    out,
                    record,
                    BadInput(
                        "dimension_mismatch",
                        f"declared {frame.width}x{frame.height}, image is {result.width}x{result.height}",
                    ),
                    frame,
                )
            else:
                self._publish_frame(out, record, frame, result, infer_s)
        for session_id in touched:
            self._save_state(out, session_id)
        return out

    def _replayed(self, frame: Frame) -> bool:
        known = self.sessions.get(frame.session_id)
        return bool(
            known is not None
            and known.capture_time_unix_us
            and frame.sequence <= known.sequence
            and frame.capture_time_unix_us <= known.capture_time_unix_us
        )

    def _latest_wins(self, out: Outputs, fresh: list[tuple[Record, Frame]]) -> list[tuple[Record, Frame]]:
        """Freshness under overload: a session whose oldest frame in the batch has queued longer than
        VTO_SUPERSEDE_AFTER_S is behind, and only its newest frame is rendered; the others are dropped as
        `superseded`. A slow system shows fewer, fresh frames instead of a growing delay (and a backlog drains a
        batch per session at a time); a session keeping up, even one sending in bursts, loses nothing."""
        newest = {frame.session_id: index for index, (_, frame) in enumerate(fresh)}
        behind = {frame.session_id for _, frame in fresh if age_s(frame) > self.settings.supersede_after_s}
        kept = []
        for index, (record, frame) in enumerate(fresh):
            if index != newest[frame.session_id] and frame.session_id in behind:
                self._drop(out, record, frame, "superseded")
            else:
                kept.append((record, frame))
        return kept

    def _request(self, frame: Frame) -> TryOnRequest:
        state = self._session(frame.session_id)
        client = None
        if frame.client_keypoints:
            client = np.array([[k.x, k.y, k.visibility, k.presence] for k in frame.client_keypoints], np.float32)
        item_id = frame.item_id or state.item_id
        category = self._category(item_id) if item_id else None
        # What the item's renderer needs, what its size advice needs, and what the operator asked for on every frame.
        features = self.settings.perception | FEATURES.get(category or "", frozenset())
        if category and self.catalogue is not None and self.catalogue.sized(item_id):
            features |= FIT_FEATURES.get(category, frozenset())
        return TryOnRequest(
            item_id=item_id if category is not None else "",
            image=frame.image,
            capture_time_us=frame.capture_time_unix_us,
            state=state.perception,
            max_people=self.settings.max_people,
            client_keypoints=client,
            height_cm=state.height_cm,
            fit=state.fit,
            **perception_flags(features),
        )

    async def _infer(self, frame: Frame) -> tuple[TryOnResult | BadInput | InferenceUnavailable, float]:
        """Stage 'infer + render' on Triton; errors are returned, not raised, so one frame cannot sink a batch."""
        started = time.perf_counter()
        try:
            result: TryOnResult | BadInput | InferenceUnavailable = await self.tryon.infer(self._request(frame))
        except (BadInput, InferenceUnavailable) as exc:
            result = exc
        infer_s = time.perf_counter() - started
        if isinstance(result, TryOnResult):
            state = self._session(frame.session_id)
            state.perception = result.state
            state.sequence, state.capture_time_unix_us = frame.sequence, frame.capture_time_unix_us
            self.metrics.stage_seconds.labels("infer").observe(infer_s)
            for stage, seconds in result.stage_seconds.items():
                self.metrics.stage_seconds.labels(stage).observe(seconds)
        return result, infer_s

    def _category(self, item_id: str) -> str | None:
        if self.catalogue is None:  # no catalogue configured: items are passed through unchecked
            return "" if item_id else None
        return self.catalogue.category(item_id)

    def _outcome(
        self,
        out: Outputs,
        record: Record,
        outcome: FrameOutcome.Outcome.ValueType,
        reason: str = "",
        frame: Frame | None = None,
    ) -> None:
        """Stage 'account', on Kafka: what became of this frames record (exactly one outcome per record)."""
        message = FrameOutcome(
            session_id=frame.session_id if frame is not None else (record.key or b"").decode(errors="replace"),
            sequence=frame.sequence if frame is not None else 0,
            outcome=outcome,
            reason=reason,
            partition=record.partition,
            offset=record.offset,
            time_unix_us=now_us(),
            worker_id=self.worker_id,
        )
        out.outcomes.append((record.key, message.SerializeToString()))
        out.trace("outcomes", record.traceparent())

    def _reject(self, out: Outputs, record: Record, error: BadInput, frame: Frame | None = None) -> None:
        self._dead_letter(out, record, error, frame)
        self.metrics.frames.labels("dead_letter").inc()
        self._outcome(out, record, FrameOutcome.OUTCOME_DEAD_LETTER, error.reason, frame)

    def _drop(self, out: Outputs, record: Record, frame: Frame, reason: str) -> None:
        self.metrics.dropped.labels(reason).inc()
        self.metrics.frames.labels("dropped").inc()
        self._outcome(out, record, FrameOutcome.OUTCOME_DROPPED, reason, frame)

    def _publish_frame(self, out: Outputs, record: Record, frame: Frame, result: TryOnResult, infer_s: float) -> None:
        found = result.pose_found
        rendered = RenderedFrame(
            session_id=frame.session_id,
            sequence=frame.sequence,
            capture_time_unix_us=frame.capture_time_unix_us,
            camera_id=frame.camera_id,
            item_id=frame.item_id or self._session(frame.session_id).item_id,
            image=result.rendered,
            format=IMAGE_FORMAT_JPEG,
            width=result.width,
            height=result.height,
            pose_score=result.pose_score,
            stage_seconds={"infer": infer_s, **result.stage_seconds},
            rendered_time_unix_us=now_us(),
            worker_id=self.worker_id,
        )
        if result.perception:
            rendered.perception.ParseFromString(result.perception)
        if result.advice:
            rendered.fit_advice.ParseFromString(result.advice)
        self.metrics.pose_source.labels(
            PoseSource.Name(rendered.perception.pose_source).removeprefix("POSE_SOURCE_").lower()
        ).inc()
        if found:
            rendered.keypoints.extend(
                Keypoint(x=float(x), y=float(y), visibility=float(v), presence=float(p))
                for x, y, v, p in result.keypoints
            )
        self._to_client(out, record, frame, rendered.SerializeToString())
        self.metrics.frames.labels("rendered" if found else "no_pose").inc()
        self._outcome(out, record, FrameOutcome.OUTCOME_RENDERED, "" if found else "no_pose", frame)
        out.captured.append(frame.capture_time_unix_us)

        state = self._session(frame.session_id)
        state.item_id = frame.item_id or state.item_id
        self._dwell(out, frame, state, found)
        if found and state.item_id not in state.rendered_items:
            state.rendered_items.add(state.item_id)
            self._event(out, frame.session_id, state.item_id, TryOnEvent.TYPE_TRY_ON_RENDERED, frame)
        if state.pose_found is not None and found != state.pose_found:
            kind = TryOnEvent.TYPE_POSE_FOUND if found else TryOnEvent.TYPE_POSE_LOST
            self._event(out, frame.session_id, state.item_id, kind, frame)
        state.pose_found = found
        if rendered.HasField("fit_advice"):
            self._advice_event(out, frame, state, rendered.fit_advice)

    def _dwell(self, out: Outputs, frame: Frame, state: SessionState, found: bool) -> None:
        """Dwell on the item the shopper wears: capture time between consecutive frames rendered with a pose (a gap
        over DWELL_MAX_GAP_US, or a frame without a pose, is not counted). Another item ends the last one's dwell."""
        if state.item_id != state.dwell_item:
            self._end_dwell(out, frame.session_id, state, frame.capture_time_unix_us)
            state.dwell_item = state.item_id
        if not found:
            state.dwell_last_us = 0
            return
        t = frame.capture_time_unix_us
        if state.dwell_last_us and 0 < t - state.dwell_last_us <= DWELL_MAX_GAP_US:
            state.dwell_us += t - state.dwell_last_us
        state.dwell_frames += 1
        state.dwell_last_us = max(t, state.dwell_last_us)

    def _end_dwell(self, out: Outputs, session_id: str, state: SessionState, time_us: int) -> None:
        """The ITEM_DWELL event of the item the shopper stops wearing, when it had frames with a pose; its time is
        that of what ended it (the first frame of another item, a SELECT_ITEM or the END)."""
        if state.dwell_item and state.dwell_frames:
            self._event(
                out,
                session_id,
                state.dwell_item,
                TryOnEvent.TYPE_ITEM_DWELL,
                time_us=time_us,
                dwell_us=state.dwell_us,
                frames=state.dwell_frames,
            )
        state.dwell_item, state.dwell_us, state.dwell_frames, state.dwell_last_us = "", 0, 0, 0

    def _advice_event(self, out: Outputs, frame: Frame, state: SessionState, advice: FitAdvice) -> None:
        """A TYPE_FIT_ADVICE event when the advice changed: another item, size or runner-up, a consent given or
        withdrawn, or a confidence ADVICE_CONFIDENCE_STEP away from the last one sent. The shopper's
        measurements (and the reasons, which name them) go to analytics only with their consent."""
        key = ADVICE_KEY_SEPARATOR.join(
            (advice.item_id, advice.size, advice.runner_up, str(state.share_measurements), f"{advice.confidence:.3f}")
        )
        last = state.advised.split(ADVICE_KEY_SEPARATOR)
        if last[:-1] == key.split(ADVICE_KEY_SEPARATOR)[:-1] and (
            abs(float(last[-1]) - advice.confidence) < ADVICE_CONFIDENCE_STEP
        ):
            return
        state.advised = key
        shared = FitAdvice()
        shared.CopyFrom(advice)
        if not state.share_measurements:
            shared.ClearField("measurements")
            shared.ClearField("reasons")
        self._event(out, frame.session_id, advice.item_id, TryOnEvent.TYPE_FIT_ADVICE, frame, shared)

    def _admit(self, out: Outputs, record: Record, frame: Frame) -> bool:
        """Admission: a new session only while the worker serves fewer than max_active_sessions, and each session
        at most max_session_fps (a token bucket holding one second of frames). A refused frame is dropped and
        counted, and the client gets a notice (a RenderedFrame with a status and no image) at most once a second
        (`_refuse`, which also tells the client when inference is unavailable)."""
        now = now_us()
        state = self.sessions.get(frame.session_id)
        if state is None or not state.seen_us:  # its first frame (after a START, or a takeover, or none)
            active = self.active_sessions(now)
            if active >= self.settings.max_active_sessions:
                detail = f"this worker serves {active} sessions, its limit: try again in a few seconds"
                self._refuse(out, record, frame, RenderedFrame.STATUS_OVER_CAPACITY, "over_capacity", detail)
                return False
            state = self._session(frame.session_id)
            self.active_count += 1
        rate = self.settings.max_session_fps
        state.tokens = min(rate, state.tokens + (now - state.tokens_us) / 1e6 * rate) if state.tokens_us else rate
        state.tokens_us = now
        if state.tokens < 1.0:
            detail = f"more than {rate:g} frames a second: send fewer (the extra ones are not rendered)"
            self._refuse(out, record, frame, RenderedFrame.STATUS_RATE_LIMITED, "rate_limited", detail)
            return False
        state.tokens -= 1.0
        state.seen_us = now
        return True

    def active_sessions(self, now: int) -> int:
        """Sessions with a frame in the last ACTIVE_WINDOW_US, counted at most once a second (a flood of new
        session ids must not cost a pass over every session each), plus those admitted since."""
        if now - self.active_counted_us > 1_000_000:
            horizon = now - ACTIVE_WINDOW_US
            self.active_count = sum(1 for s in self.sessions.values() if s.seen_us > horizon and not s.ended_us)
            self.active_counted_us = now
        return self.active_count

    def _refuse(
        self,
        out: Outputs,
        record: Record,
        frame: Frame,
        status: RenderedFrame.Status.ValueType,
        reason: str,
        detail: str,
    ) -> None:
        self._drop(out, record, frame, reason)
        last = self.noticed.get(frame.session_id, 0)
        if now_us() - last < NOTICE_INTERVAL_US:
            return
        self.noticed.pop(frame.session_id, None)
        self.noticed[frame.session_id] = now_us()
        while len(self.noticed) > MAX_SESSIONS:
            self.noticed.popitem(last=False)
        notice = RenderedFrame(
            session_id=frame.session_id,
            sequence=frame.sequence,
            capture_time_unix_us=frame.capture_time_unix_us,
            camera_id=frame.camera_id,
            status=status,
            status_detail=detail,
            rendered_time_unix_us=now_us(),
            worker_id=self.worker_id,
        )
        self._to_client(out, record, frame, notice.SerializeToString())

    def _to_client(self, out: Outputs, record: Record, frame: Frame, rendered: bytes) -> None:
        """A RenderedFrame (or notice) goes where the client reads: the partition of the gateway holding the
        session when the frame names one, else the rendered topic keyed by session."""
        if frame.HasField("reply_partition"):
            out.replies.append((frame.reply_partition, frame.session_id.encode(), rendered))
            out.trace("replies", record.traceparent())
        else:
            out.rendered.append((frame.session_id.encode(), rendered))
            out.trace("rendered", record.traceparent())

    def _forget_ended(self) -> None:
        """Sessions whose END is older than any frame that could still be rendered leave memory."""
        if now_us() - self.forgotten_at < 1_000_000:
            return  # at most once a second: a pass over every session
        self.forgotten_at = now_us()
        for sid in [sid for sid, state in self.sessions.items() if self._ended_long_ago(state)]:
            state = self.sessions.pop(sid)
            if not state.erased:
                self._remember_count(sid, state.events_sent)

    def _remember_count(self, session_id: str, events_sent: int) -> None:
        self.counts.pop(session_id, None)
        self.counts[session_id] = events_sent
        while len(self.counts) > MAX_COUNTS:
            self.counts.popitem(last=False)

    # -- session control --------------------------------------------------------------------------------
    def handle_control(self, record: Record) -> Outputs:
        """START / SELECT_ITEM / END of a session become analytics events; bad records are dead-lettered."""
        out = Outputs()
        try:
            control = decode(SessionControl, record.value)
            if not control.session_id:
                raise BadInput("missing_session_id", "SessionControl.session_id is empty")
            if record.key != control.session_id.encode():
                # Keyed otherwise it lands on another partition than the session's frames, maybe another worker.
                raise BadInput("key_mismatch", "record key must be the session id (same partition as its frames)")
            # Ending a session or erasing it must work with a token that records consent withdrawn.
            closing = control.action in (SessionControl.ACTION_END, SessionControl.ACTION_ERASE)
            tokens.verify(self.key, control.session_token, control.session_id, require_consent=not closing)
            if control.action not in KNOWN_ACTIONS:
                raise BadInput(
                    "unknown_action",
                    f"SessionControl.action {control.action} is not one of "
                    + ", ".join(SessionControl.Action.Name(a).removeprefix("ACTION_") for a in KNOWN_ACTIONS),
                )
            if control.action in (SessionControl.ACTION_START, SessionControl.ACTION_SET_FIT_PROFILE):
                check_fit_profile(control)
            if control.action in COMMERCE:
                check_commerce(control)
            ahead_s = control.time_unix_us / 1e6 - now_us() / 1e6
            if ahead_s > self.settings.max_clock_skew_s:
                # Its time becomes an event time: one far in the future would close every analytics window.
                raise BadInput(
                    "future_time", f"SessionControl.time_unix_us is {ahead_s:.1f} s ahead of the worker's clock"
                )
            if (
                control.item_id
                and control.action != SessionControl.ACTION_END
                and self._category(control.item_id) is None
            ):
                raise BadInput("unknown_item", f"item {control.item_id!r} is not in the catalogue")
        except SerializationError as exc:
            self._dead_letter(out, record, BadInput("undecodable", str(exc)))
            return out
        except BadInput as exc:
            self._dead_letter(out, record, exc)
            return out
        sid = control.session_id
        if control.action == SessionControl.ACTION_ERASE:
            self._erase(out, record.partition, sid)
            return out
        if self.sessions.get(sid, SessionState()).erased:
            self._dead_letter(out, record, BadInput("session_erased", "the session was erased; start a new one"))
            return out
        if control.action == SessionControl.ACTION_START:
            known = self.sessions.get(sid)
            # A (re)started session tracks afresh, unless this START is older than frames already handled (the
            # control and frame topics are consumed independently): wiping their state would replay the track.
            if known is not None and (not control.time_unix_us or control.time_unix_us >= known.capture_time_unix_us):
                self._end_dwell(out, sid, known, control.time_unix_us or now_us())
                del self.sessions[sid]
                self._remember_count(sid, known.events_sent)  # a restart numbers its events on
        self._session(sid).partition = record.partition
        at = control.time_unix_us  # the event time of what this record causes (0: now)
        if control.action == SessionControl.ACTION_START:
            state = self._session(sid)
            state.item_id = control.item_id
            state.set_profile(control)
            self._event(out, sid, control.item_id, TryOnEvent.TYPE_SESSION_STARTED, time_us=at)
            self._save_state(out, sid)
        elif control.action == SessionControl.ACTION_SET_FIT_PROFILE:
            self._session(sid).set_profile(control)
            self._save_state(out, sid)
        elif control.action == SessionControl.ACTION_SELECT_ITEM:
            state = self._session(sid)
            self._end_dwell(out, sid, state, at)
            state.item_id = control.item_id
            self._event(out, sid, control.item_id, TryOnEvent.TYPE_ITEM_SELECTED, time_us=at)
            self._save_state(out, sid)
        elif control.action in COMMERCE:
            kind = COMMERCE[control.action]
            quantity = control.quantity or 1
            self._event(out, sid, control.item_id, kind, time_us=at, size=control.size, quantity=quantity)
            self._save_state(out, sid)
        else:  # ACTION_END
            # END travels on its own topic and may overtake the session's last queued frames: those are still
            # rendered with the session's tracking and its record of events sent (no TRY_ON_RENDERED twice), but
            # write only the ended-session record (no tracking state, no profile), and the session leaves memory
            # once they cannot arrive any more.
            state = self._session(sid)
            self._free_place(state)
            state.ended_us = control.time_unix_us or now_us()
            self._end_dwell(out, sid, state, state.ended_us)
            self._event(out, sid, state.item_id, TryOnEvent.TYPE_SESSION_ENDED, time_us=state.ended_us)
            self._save_state(out, sid)  # its tracking state and profile are gone from the topic
        return out

    def _erase(self, out: Outputs, partition: int, session_id: str) -> None:
        """Erasure on request (GDPR art. 17): tombstones for every try-on event the session sent and for its
        state, on their compacted topics; a TYPE_SESSION_ERASED event tells analytics sinks to forget it too;
        frames of it still in flight are dropped (`session_erased`)."""
        counted = self.counts.pop(session_id, 0)  # a session no longer in memory left its count here
        state = self.sessions.pop(session_id, None)
        if state is not None:
            self._free_place(state)
        for n in range(state.events_sent if state is not None else counted):
            out.events.append((partition, f"{session_id}/{n}".encode(), None))
        erased = TryOnEvent(session_id=session_id, type=TryOnEvent.TYPE_SESSION_ERASED, event_time_unix_us=now_us())
        out.events.append((partition, f"{session_id}/erased".encode(), erased.SerializeToString()))
        self.metrics.events.labels("TYPE_SESSION_ERASED").inc()
        out.states.append((partition, session_id.encode(), None))
        self.sessions[session_id] = SessionState(ended_us=now_us(), erased=True, partition=partition)

    # -- state topic ------------------------------------------------------------------------------------
    def _save_state(self, out: Outputs, session_id: str) -> None:
        """To the state topic's partition with the number of the session's frames partition."""
        state = self._session(session_id)
        if state.erased:
            return  # its tombstone is the last record it has
        message = state.ended_message(session_id) if state.ended_us else state.to_message(session_id)
        out.states.append((state.partition, session_id.encode(), message.SerializeToString()))

    def restore(self, values: list[tuple[bytes, bytes | None]]) -> int:
        """Load session states read back from the state topic (in offset order; None = tombstone)."""
        restored = 0
        for key, value in values:
            session_id = key.decode(errors="replace")
            if value is None:
                self.sessions.pop(session_id, None)
                continue
            try:
                message = decode(SessionStateMessage, value)
            except SerializationError:
                log.warning("ignoring an unreadable session state for %s", session_id)
                continue
            self.sessions.pop(session_id, None)
            state = SessionState.from_message(message)
            if self._ended_long_ago(state):
                self._remember_count(session_id, state.events_sent)  # only erasure needs it
            else:
                self.sessions[session_id] = state
            restored += 1
        self._evict()
        self.metrics.sessions_restored.inc(restored)
        return restored
