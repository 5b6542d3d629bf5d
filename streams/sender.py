"""`vto send`: publish a real video, image folder or photo as one shopper session, paced at a frame rate."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from confluent_kafka import Producer

from streams import kafka_client, tokens, tracing
from streams.errors import VTOError
from streams.proto.vto.v1.common_pb2 import IMAGE_FORMAT_JPEG, IMAGE_FORMAT_PNG, ImageFormat
from streams.proto.vto.v1.frame_pb2 import Frame
from streams.proto.vto.v1.session_control_pb2 import SessionControl
from streams.settings import Settings

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
# The benchmarks' clips in VTO_DATA_DIR/people/videos, 600x600 to 1280x720 (loadtest/bench.py, triton_load.py).
SAMPLE_VIDEOS = ("mediapipe_full_body_dance.mp4", "mediapipe_selfie_upper_body.mp4", "mmpose_street_walking.mp4")
EncodedFrame = tuple[bytes, ImageFormat.ValueType, int, int]  # image, format, width, height


@dataclass(frozen=True)
class Sent:
    sequence: int
    capture_time_unix_us: int
    traceparent: str  # the W3C trace context sent in the frame's `traceparent` header (streams/tracing.py)


def _encoded(path: Path) -> EncodedFrame:
    data = path.read_bytes()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise VTOError(f"{path} is not a readable image")
    fmt = IMAGE_FORMAT_PNG if data.startswith(b"\x89PNG") else IMAGE_FORMAT_JPEG
    if not data.startswith((b"\x89PNG", b"\xff\xd8\xff")):  # e.g. WebP: re-encode as JPEG
        data, fmt = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes(), IMAGE_FORMAT_JPEG
    return data, fmt, image.shape[1], image.shape[0]


def sample_clips(data_dir: Path) -> list[list[EncodedFrame]]:
    """The frames of each of SAMPLE_VIDEOS, encoded once as a client would."""
    return [list(frames_of(data_dir / "people" / "videos" / name)) for name in SAMPLE_VIDEOS]


def frames_of(path: Path, jpeg_quality: int = 90) -> Iterator[EncodedFrame]:
    """(encoded image, format, width, height) for each frame of a video, an image folder or one image."""
    if path.is_dir():
        for p in sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            yield _encoded(p)
        return
    if path.suffix.lower() in IMAGE_SUFFIXES:
        yield _encoded(path)
        return
    video = cv2.VideoCapture(str(path))
    if not video.isOpened():
        raise VTOError(f"{path} is not a readable video or image")
    try:
        while True:
            ok, bgr = video.read()
            if not ok:
                return
            data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])[1].tobytes()
            yield data, IMAGE_FORMAT_JPEG, bgr.shape[1], bgr.shape[0]
    finally:
        video.release()


def producer(settings: Settings) -> Producer:
    """An idempotent producer: a session's frames keep their order even when sends are retried."""
    return Producer(
        kafka_client.confluent(
            settings,
            **{"enable.idempotence": True, "linger.ms": 1, "message.max.bytes": settings.max_message_bytes + 65536},
        )
    )


def send(
    settings: Settings,
    frames: Iterable[EncodedFrame],
    session: str,
    fps: float,
    item: str | Sequence[str] = "",
    camera: str = "cam0",
    profile: Mapping[str, object] | None = None,
    token: str = "",
) -> list[Sent]:
    """Publish START, each (image, format, width, height) at `fps` (0 = at once), then END; return what was sent.

    `profile` is the shopper's fit profile sent with START (SessionControl height_cm, fit, share_measurements).
    `token` is the session token the shop's backend issued (streams/tokens.py); empty: minted here from the
    session-token key, with consent, as the shop's backend would.

    `item` is the catalogue item tried on; a list of items splits the frames into equal runs, one per item
    (each frame names its item, so the session switches items as a shopper picking from the page would)."""
    frames = list(frames)
    items = [item] if isinstance(item, str) else list(item) or [""]
    per_item = max(1, -(-len(frames) // len(items)))
    token = token or tokens.mint(settings.session_key(), session, settings.session_token_ttl_s)
    prod = producer(settings)
    errors: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    def control(action: SessionControl.Action.ValueType) -> None:
        msg = SessionControl(
            session_id=session,
            action=action,
            item_id=items[0],
            time_unix_us=time.time_ns() // 1000,
            session_token=token,
        )
        if action == SessionControl.ACTION_START:
            for name, value in (profile or {}).items():
                setattr(msg, name, value)
        prod.produce(settings.control_topic, key=session.encode(), value=msg.SerializeToString(), on_delivery=delivered)

    control(SessionControl.ACTION_START)
    # Wait until START is acknowledged: a new producer's connection, metadata and producer id (~0.5 s for
    # librdkafka's first idempotent message) are paid by the handshake, not by the shopper's first frame.
    if prod.flush(30) != 0 or errors:
        raise VTOError(f"Kafka did not acknowledge the session start: {errors[:1] or 'flush timed out'}")
    sent: list[Sent] = []
    start = time.monotonic()
    for seq, (data, fmt, width, height) in enumerate(frames):
        if fps > 0:
            time.sleep(max(0.0, start + seq / fps - time.monotonic()))
        now = time.time_ns() // 1000
        frame = Frame(
            session_id=session,
            sequence=seq,
            capture_time_unix_us=now,
            camera_id=camera,
            image=data,
            format=fmt,
            width=width,
            height=height,
            item_id=items[min(seq // per_item, len(items) - 1)],
            session_token=token,
        )
        traceparent = tracing.new_traceparent()
        prod.produce(
            settings.frames_topic,
            key=session.encode(),
            value=frame.SerializeToString(),
            headers=[(tracing.HEADER, traceparent.encode())],
            on_delivery=delivered,
        )
        prod.poll(0)
        sent.append(Sent(seq, now, traceparent))
    control(SessionControl.ACTION_END)
    if prod.flush(30) != 0 or errors:
        raise VTOError(f"Kafka did not take every frame: {errors[:3] or 'flush timed out'}")
    return sent


def control(
    settings: Settings, session: str, action: SessionControl.Action.ValueType, token: str = "", **fields: object
) -> None:
    """One SessionControl record of the session, now (`vto erase`, `vto commerce`); raises if Kafka did not take it."""
    token = token or tokens.mint(settings.session_key(), session, settings.session_token_ttl_s)
    msg = SessionControl(session_id=session, action=action, time_unix_us=time.time_ns() // 1000, session_token=token)
    for name, value in fields.items():
        setattr(msg, name, value)
    prod = producer(settings)
    prod.produce(settings.control_topic, key=session.encode(), value=msg.SerializeToString())
    if prod.flush(30) != 0:
        raise VTOError(f"Kafka did not acknowledge the {SessionControl.Action.Name(action)} record")


def erase(settings: Settings, session: str, token: str = "") -> None:
    """`vto erase`: ask for a session's erasure (SessionControl ACTION_ERASE; docs/privacy.md)."""
    control(settings, session, SessionControl.ACTION_ERASE, token)


def commerce(
    settings: Settings, session: str, purchase: bool, item: str, size: str = "", quantity: int = 1, token: str = ""
) -> None:
    """`vto commerce`: what the shop reports of the session's shopper: an item added to the cart, or bought."""
    action = SessionControl.ACTION_PURCHASE if purchase else SessionControl.ACTION_ADD_TO_CART
    control(settings, session, action, token, item_id=item, size=size, quantity=quantity)
