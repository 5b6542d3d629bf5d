"""The real Triton server (pytriton's tritonserver) serving triton_repo/ with the converted MediaPipe models."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpc
from tritonclient.utils import InferenceServerException

from streams.inference import TryOnRequest, tryon_inputs, tryon_result
from streams.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(triton_client: grpc.InferenceServerClient) -> grpc.InferenceServerClient:
    return triton_client


def tryon(client: grpc.InferenceServerClient, data: bytes, render: bool = True) -> grpc.InferResult:
    image = grpc.InferInput("IMAGE", [1, 1], "BYTES")
    image.set_data_from_numpy(np.array([[data]], dtype=np.object_))
    flag = grpc.InferInput("RENDER", [1, 1], "BOOL")
    flag.set_data_from_numpy(np.array([[render]]))
    return client.infer("tryon", [image, flag])


def test_yoga_keypoints_match_mediapipe_golden_output(client: grpc.InferenceServerClient, data_dir: Path) -> None:
    folder = data_dir / "keypoints" / "tfjs_pose_yoga"
    ref = json.loads((folder / "pose_blazepose33.json").read_text())
    expected = np.array(
        [
            [p["x"] * ref["width"], p["y"] * ref["height"]]
            for p in ref["mediapipe_expected_pose_landmarks_normalized"]["landmarks"]
        ]
    )
    res = tryon(client, (folder / "pose.jpg").read_bytes())
    assert res.as_numpy("POSE_SCORE")[0][0] > 0.9
    assert res.as_numpy("IMAGE_SIZE")[0].tolist() == [ref["height"], ref["width"]]
    error = np.linalg.norm(res.as_numpy("KEYPOINTS")[0][:, :2] - expected, axis=1)
    # The reference file's own tolerance: 15 px on a 1000x667 photo (measured: max 13.1, median 9.4).
    assert error.max() < ref["tfjs_expected_landmarks_px"]["tolerance_px"]


def test_sitting_keypoints_match_pose_landmarker_full(client: grpc.InferenceServerClient, data_dir: Path) -> None:
    folder = data_dir / "keypoints" / "mps_pose_sitting"
    ref = json.loads((folder / "test_image_blazepose33.json").read_text())
    expected = np.array(
        [[p["x"] * ref["width"], p["y"] * ref["height"]] for p in ref["results"]["pose_landmarker_full"]]
    )
    error = np.linalg.norm(
        tryon(client, (folder / "test_image.jpg").read_bytes()).as_numpy("KEYPOINTS")[0][:, :2] - expected, axis=1
    )
    # The reference is the newer Tasks model; ours is the 0.10.14 graph (measured: median 7.8, max 31.2 px).
    assert np.median(error) < 10
    assert error.max() < 40


def test_rendered_frame_wears_the_item_only_when_one_is_asked(
    client: grpc.InferenceServerClient, data_dir: Path
) -> None:
    data = (data_dir / "keypoints" / "tfjs_pose_yoga" / "pose.jpg").read_bytes()
    original = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).astype(int)

    def rendered(**kwargs: object) -> np.ndarray:
        result = tryon_result(client.infer("tryon", tryon_inputs(TryOnRequest(data, mask=True, **kwargs))))  # type: ignore[arg-type]
        image = cv2.imdecode(np.frombuffer(result.rendered, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[:2] == (667, 1000)
        return image.astype(int)

    keypoints = tryon_result(client.infer("tryon", tryon_inputs(TryOnRequest(data, render=False)))).keypoints
    torso = keypoints[[11, 12, 23, 24], :2].mean(axis=0).astype(int)  # between the shoulders and hips
    changed = np.abs(rendered(item_id="tee-breton-stripes") - original).max(axis=2)
    assert changed[torso[1] - 5 : torso[1] + 5, torso[0] - 5 : torso[0] + 5].mean() > 40  # the top is on the torso
    assert changed[:50, :50].max() < 20  # the background is untouched (JPEG noise only)
    assert np.abs(rendered() - original).max(axis=2).mean() < 3  # no item: the frame as captured
    assert tryon_result(client.infer("tryon", tryon_inputs(TryOnRequest(data, render=False)))).rendered == b""


def test_photo_without_a_person_has_no_pose(client: grpc.InferenceServerClient, data_dir: Path) -> None:
    res = tryon(client, (data_dir / "garments" / "photos" / "cc0_t-shirt_172950bd.jpg").read_bytes())
    assert res.as_numpy("POSE_SCORE")[0][0] < 0.5
    assert not res.as_numpy("KEYPOINTS").any()


def test_undecodable_image_gets_its_own_error(client: grpc.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="bad image: JPEG without a frame header"):
        tryon(client, b"\xff\xd8\xff definitely not a jpeg")
    png = cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    bomb = png[:16] + (16000).to_bytes(4, "big") * 2 + png[24:]
    with pytest.raises(InferenceServerException, match="bad image: 16000x16000 is larger than 4096 px"):
        tryon(client, bomb)  # refused from its header: no 768 MB decode buffer


def test_concurrent_requests_are_batched_and_equal_single_ones(client: grpc.InferenceServerClient) -> None:
    """Requests sent at once (as the workers' sessions do) share executions of the model, and batching changes
    no result."""
    rng = np.random.default_rng(0)
    frames = rng.uniform(-1, 1, size=(8, 224, 224, 3)).astype(np.float32)

    def inputs(x: np.ndarray) -> list[grpc.InferInput]:
        tensor = grpc.InferInput("input_1", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        return [tensor]

    def counts() -> tuple[int, int]:
        stats = client.get_inference_statistics("pose_detection").model_stats[0]
        return int(stats.inference_count), int(stats.execution_count)

    singles = [client.infer("pose_detection", inputs(frames[i : i + 1])).as_numpy("Identity_1") for i in range(8)]
    before = counts()
    results: dict[int, np.ndarray] = {}
    done = threading.Semaphore(0)

    def collect(index: int) -> Any:
        def callback(result: grpc.InferResult, error: InferenceServerException | None) -> None:
            assert error is None, error
            results[index] = result.as_numpy("Identity_1")
            done.release()

        return callback

    for i in range(8):  # all in flight together, one frame each
        client.async_infer("pose_detection", inputs(frames[i : i + 1]), collect(i))
    for _ in range(8):
        assert done.acquire(timeout=60)
    inferences, executions = (after - earlier for after, earlier in zip(counts(), before, strict=True))
    assert inferences == 8 and executions < 8, (inferences, executions)  # some requests shared an execution
    for i in range(8):
        assert np.abs(results[i] - singles[i]).max() < 1e-4


def test_triton_exposes_prometheus_metrics(stack: Settings, client: grpc.InferenceServerClient) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.triton_metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert 'nv_inference_request_success{model="tryon"' in text


def test_a_flood_is_refused_beyond_the_bounded_queue_not_queued_forever(client: grpc.InferenceServerClient) -> None:
    """120 requests at once against a queue of 64: the excess is rejected at once (the worker counts those as
    inference_unavailable), the rest are served."""
    image = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))[1].tobytes()
    request = tryon_inputs(TryOnRequest(image, render=False))
    outcomes: list[str] = []
    done = threading.Semaphore(0)

    def callback(result: grpc.InferResult, error: InferenceServerException | None) -> None:
        outcomes.append("ok" if error is None else (error.message() or str(error)))
        done.release()

    for _ in range(120):
        client.async_infer("tryon", request, callback)
    for _ in range(120):
        assert done.acquire(timeout=120)
    served = outcomes.count("ok")
    refused = [o for o in outcomes if o != "ok"]
    assert served >= 64 and refused, (served, refused[:1])
    assert all("queue" in o.lower() for o in refused), refused[:3]
