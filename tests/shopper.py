"""A shopper for fault tests: one session sending a photo as camera frames at a steady rate from a thread, through
whatever the test does to the services, until told to stop (then END)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import cv2
from confluent_kafka import Producer

from streams import kafka_client, tokens
from streams.proto.vto.v1.common_pb2 import IMAGE_FORMAT_JPEG
from streams.proto.vto.v1.frame_pb2 import Frame
from streams.proto.vto.v1.session_control_pb2 import SessionControl
from streams.settings import Settings


class Shopper:
    def __init__(
        self, settings: Settings, photo: Path, name: str, fps: float, item: str = "", session: str = ""
    ) -> None:
        self.settings, self.fps, self.item = settings, fps, item
        self.session = session or f"{name}-{uuid.uuid4().hex[:8]}"
        self.token = tokens.mint(settings.session_key(), self.session, ttl_s=600)
        image = cv2.resize(cv2.imread(str(photo)), (500, 334))
        self.image = cv2.imencode(".jpg", image)[1].tobytes()
        # Idempotent and patient: frames sent while the broker is away wait in the client and go when it is back.
        self.producer = Producer(
            kafka_client.confluent(settings, **{"enable.idempotence": True, "linger.ms": 1, "log_level": 2})
        )
        self.sent: list[int] = []  # capture time of each frame sent (unix us), by sequence
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._send, daemon=True)

    def _control(self, action: SessionControl.Action.ValueType) -> None:
        msg = SessionControl(
            session_id=self.session, action=action, time_unix_us=time.time_ns() // 1000, session_token=self.token
        )
        self.producer.produce(self.settings.control_topic, key=self.session.encode(), value=msg.SerializeToString())

    def _send(self) -> None:
        while not self.stopping.is_set():
            now = time.time_ns() // 1000
            frame = Frame(
                session_id=self.session,
                sequence=len(self.sent),
                capture_time_unix_us=now,
                image=self.image,
                format=IMAGE_FORMAT_JPEG,
                width=500,
                height=334,
                item_id=self.item,
                session_token=self.token,
            )
            self.producer.produce(
                self.settings.frames_topic, key=self.session.encode(), value=frame.SerializeToString()
            )
            self.producer.poll(0)
            self.sent.append(now)
            time.sleep(1 / self.fps)

    def start(self) -> None:
        self._control(SessionControl.ACTION_START)
        assert self.producer.flush(30) == 0
        self.thread.start()

    def stop(self, end: bool = True) -> None:
        self.stopping.set()
        self.thread.join(10)
        if end:
            self._control(SessionControl.ACTION_END)
        assert self.producer.flush(60) == 0, "frames the broker never took"
