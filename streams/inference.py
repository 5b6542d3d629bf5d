"""The worker's only way to Triton: the `tryon` model over async gRPC, with bounded retries.

A frame Triton refuses because of its content is BadInput (dead-lettered); a server that is absent,
overloaded or slow is InferenceUnavailable (backpressure: retried with backoff, then the frame is dropped).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.grpc.aio as triton
from tritonclient.utils import InferenceServerException

from streams.errors import BadInput, InferenceUnavailable
from streams.vision.blazepose import MIN_POSE_PRESENCE

SERVER_STAGES = ("decode", "pose_detection", "pose_landmark", "face", "hands", "mask", "fit", "render", "encode")
BAD_IMAGE_PREFIX = "bad image: "  # how the tryon model marks errors caused by the request's image
FRAME_FAILED_PREFIX = "frame failed: "  # ... and a frame that broke perception (streams/serving/tryon.py)


@dataclass(frozen=True)
class TryOnRequest:
    """One frame for the `tryon` model, with what perception to run and the session's tracking state."""

    image: bytes
    render: bool = True
    capture_time_us: int = 0  # 0: a still photo (no tracking, no smoothing)
    state: bytes = b""  # serialized PerceptionState returned with the session's previous frame
    face: bool = False
    hands: bool = False
    mask: bool = False
    max_people: int = 1
    client_keypoints: np.ndarray | None = None  # (33, 4): skips the pose models
    item_id: str = ""  # catalogue item to render (empty: the frame as captured)
    height_cm: float = 0.0  # the shopper's stated height for size advice (0: not given)
    fit: int = 0  # vto.v1.FitPreference (0: regular)


@dataclass(frozen=True)
class TryOnResult:
    keypoints: np.ndarray  # (33, 4): x, y px, visibility, presence
    pose_score: float
    width: int
    height: int
    rendered: bytes  # JPEG; empty when rendering was not asked for
    stage_seconds: dict[str, float]  # server-side stages of this frame's batch
    perception: bytes = b""  # serialized vto.v1.Perception
    state: bytes = b""  # serialized vto.v1.PerceptionState for the session's next frame
    advice: bytes = b""  # serialized vto.v1.FitAdvice; empty without advice

    @property
    def pose_found(self) -> bool:
        return self.pose_score >= MIN_POSE_PRESENCE


def perception_flags(features: Iterable[str]) -> dict[str, Any]:
    """TryOnRequest's face/hands/mask flags for a set of perception features (e.g. categories.FEATURES[c])."""
    wanted = set(features)
    return {"face": "face" in wanted, "hands": "hands" in wanted, "mask": "mask" in wanted}


def session_results(
    client: Any, model: str, images: Iterable[bytes], fps: float | None, **fields: Any
) -> Iterator[TryOnResult]:
    """One shopper's frames through `model` with the synchronous client (CLI, tools, benchmarks, tests). With `fps`
    a video in tracking mode: capture times at `fps`, each frame carrying the state its predecessor left; without
    it, stills, each on its own. `fields` are the other TryOnRequest fields, the same for every frame."""
    state = b""
    for index, image in enumerate(images):
        time_us = int(1_000_000 + index * 1e6 / fps) if fps else 0
        request = TryOnRequest(image, capture_time_us=time_us, state=state, **fields)
        result = tryon_result(client.infer(model, tryon_inputs(request)))
        state = result.state if fps else b""
        yield result


def _input(name: str, array: np.ndarray, datatype: str) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def tryon_inputs(request: TryOnRequest) -> list[triton.InferInput]:
    """The `tryon` request for one encoded frame (the same classes serve the sync and the aio client)."""
    inputs = [
        _input("IMAGE", np.array([[request.image]], dtype=np.object_), "BYTES"),
        _input("RENDER", np.array([[request.render]], dtype=np.bool_), "BOOL"),
        _input("STATE", np.array([[request.state]], dtype=np.object_), "BYTES"),
        _input("CAPTURE_TIME_US", np.array([[request.capture_time_us]], dtype=np.int64), "INT64"),
        _input("FEATURES", np.array([[request.face, request.hands, request.mask]], dtype=np.bool_), "BOOL"),
        _input("MAX_PEOPLE", np.array([[request.max_people]], dtype=np.int32), "INT32"),
        _input("ITEM_ID", np.array([[request.item_id.encode()]], dtype=np.object_), "BYTES"),
        _input("HEIGHT_CM", np.array([[request.height_cm]], dtype=np.float32), "FP32"),
        _input("FIT_PREFERENCE", np.array([[request.fit]], dtype=np.int32), "INT32"),
    ]
    if request.client_keypoints is not None:
        keypoints = np.asarray(request.client_keypoints, dtype=np.float32).reshape(1, 33, 4)
        inputs.append(_input("CLIENT_KEYPOINTS", keypoints, "FP32"))
    return inputs


def tryon_result(res: triton.InferResult) -> TryOnResult:
    """Parse a `tryon` response."""
    height, width = (int(v) for v in res.as_numpy("IMAGE_SIZE")[0])
    timings = res.as_numpy("TIMINGS")[0]
    return TryOnResult(
        keypoints=res.as_numpy("KEYPOINTS")[0],
        pose_score=float(res.as_numpy("POSE_SCORE")[0][0]),
        width=width,
        height=height,
        rendered=bytes(res.as_numpy("RENDERED")[0][0]),
        stage_seconds={stage: float(t) for stage, t in zip(SERVER_STAGES, timings, strict=True)},
        perception=bytes(res.as_numpy("PERCEPTION")[0][0]),
        state=bytes(res.as_numpy("STATE")[0][0]),
        advice=bytes(res.as_numpy("ADVICE")[0][0]),
    )


def status_name(exc: InferenceServerException) -> str:
    """A failed call's gRPC status as a metric label: UNAVAILABLE, DEADLINE_EXCEEDED, ... (a bounded set)."""
    return str(exc.status() or "UNKNOWN").removeprefix("StatusCode.")


def channel_args() -> list[tuple[str, int | str]]:
    """tritonclient's channel defaults, but reconnecting to a Triton that went away at least once a second: gRPC's
    default backoff grows to minutes, so a Triton back after a few seconds would stay unused for as long again. With
    several Triton addresses (a `dns:///` target naming a headless Service, as in k8s/), requests go round-robin
    over all of them instead of all to the first."""
    keepalive = triton.KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", 2**31 - 1),
        ("grpc.max_receive_message_length", 2**31 - 1),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", int(keepalive.keepalive_permit_without_calls)),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.lb_policy_name", "round_robin"),
    ]


CHANNEL_MAX_AGE_S = 60.0  # a channel's addresses are resolved again this often: Triton pods added since get traffic


class TritonTryOn:
    def __init__(
        self,
        url: str,
        model: str,
        timeout_s: float,
        retries: int,
        on_retry: Callable[[], object] = lambda: None,
        on_error: Callable[[str], object] = lambda code: None,
    ) -> None:
        self.url = url
        self.client = triton.InferenceServerClient(url, channel_args=channel_args())
        self.created = time.monotonic()
        self.retired: dict[asyncio.Task[None], triton.InferenceServerClient] = {}  # old channels, closing soon
        self.model = model
        self.timeout_s = timeout_s
        self.retries = retries
        self.on_retry = on_retry  # accounting hooks: the worker counts retries in vto_inference_retries_total,
        self.on_error = on_error  # and failed calls by gRPC status in vto_inference_errors_total

    async def close(self) -> None:
        for task, old in list(self.retired.items()):
            task.cancel()
            await old.close()
        await self.client.close()

    async def ready(self) -> bool:
        try:
            return bool(await self.client.is_model_ready(self.model))
        except InferenceServerException:
            return False

    def _renewed(self) -> triton.InferenceServerClient:
        """The client, on a new channel once the current one is CHANNEL_MAX_AGE_S old: gRPC resolves a channel's
        DNS name again only when a connection breaks, so Triton replicas added by the autoscaler would otherwise
        wait for a failure to get any request. The old channel closes once its calls are done."""
        if time.monotonic() - self.created > CHANNEL_MAX_AGE_S:
            old = self.client
            self.client = triton.InferenceServerClient(self.url, channel_args=channel_args())
            self.created = time.monotonic()

            async def close_later() -> None:
                await asyncio.sleep(2 * self.timeout_s * (self.retries + 1))  # its calls have ended by then
                await old.close()

            task = asyncio.get_running_loop().create_task(close_later())
            self.retired[task] = old
            task.add_done_callback(lambda done: self.retired.pop(done, None))
        return self.client

    async def infer(self, request: TryOnRequest) -> TryOnResult:
        client = self._renewed()
        inputs = tryon_inputs(request)
        delay = 0.05
        for attempt in range(self.retries + 1):
            try:
                res = await client.infer(self.model, inputs, client_timeout=self.timeout_s)
                break
            except InferenceServerException as exc:
                message = exc.message() or str(exc)
                if BAD_IMAGE_PREFIX in message:
                    raise BadInput("corrupt_image", message.split(BAD_IMAGE_PREFIX, 1)[1]) from exc
                if FRAME_FAILED_PREFIX in message:  # deterministic: retrying would fail the same way
                    raise BadInput("inference_failed", message.split(FRAME_FAILED_PREFIX, 1)[1]) from exc
                self.on_error(status_name(exc))
                if attempt == self.retries:
                    raise InferenceUnavailable(f"{self.model}: {exc.status()} {message}") from exc
                self.on_retry()
                await asyncio.sleep(delay)
                delay *= 2
        return tryon_result(res)
