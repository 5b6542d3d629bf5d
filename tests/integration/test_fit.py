"""Size advice through the real Triton `tryon` model on real media: a video session converges and holds its
advice, measurements do not depend on the image's resolution or framing, the two eye references agree, and the
fit measurements travel in the session's tracking state."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpc

from streams.fit.scale import scale_from_iris
from streams.inference import TryOnResult, session_results
from streams.proto.vto.v1.fit_advice_pb2 import FitAdvice, ScaleMethod
from streams.proto.vto.v1.session_state_pb2 import PerceptionState
from streams.sender import frames_of
from streams.serving.state_codec import face_points, parse_perception

pytestmark = pytest.mark.integration

TOP = "tee-navy"


def session(
    client: grpc.InferenceServerClient, images: list[bytes], video: bool, **fields: object
) -> list[TryOnResult]:
    fields = {"render": False, "item_id": TOP, "face": True, "mask": True, **fields}
    return list(session_results(client, "tryon", images, 30.0 if video else None, **fields))


def advice(result: TryOnResult) -> FitAdvice:
    assert result.advice, "no size advice"
    return FitAdvice.FromString(result.advice)


def jpeg(bgr: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def test_a_video_session_converges_and_holds_its_advice(
    triton_client: grpc.InferenceServerClient, data_dir: Path
) -> None:
    video = data_dir / "people" / "videos" / "mediapipe_selfie_upper_body.mp4"
    images = [data for data, *_ in frames_of(video)][:90]  # three seconds of a webcam shopper
    results = session(triton_client, images, video=True)
    first = next(i for i, r in enumerate(results) if r.advice)
    # Her forearms are up at first (the upper arms out: no bideltoid breadth, so no chest yet); then they hang.
    assert first < 45, "no advice in the first second and a half"
    advised = [advice(r) for r in results[first:]]
    assert advised[0].scale == ScaleMethod.SCALE_METHOD_IRIS  # no height given: the eyes give the centimetres
    counts = [a.frames for a in advised]
    assert counts == sorted(counts) and counts[-1] >= 80  # the fit state travels with the tracking state
    last_second = advised[-30:]
    assert len({a.size for a in last_second}) == 1, "the advice flickers once the session has seen two seconds"
    shoulders = [a.measurements["shoulder_width"].value_cm for a in last_second]
    assert (max(shoulders) - min(shoulders)) / np.median(shoulders) < 0.05
    assert advised[-1].confidence > advised[0].confidence  # a few seconds of video beat one frame
    state = PerceptionState.FromString(results[-1].state)
    assert state.fit.series["shoulder_width"].count == advised[-1].frames


@pytest.mark.parametrize("photo", ["fr_two_people_upper_body.jpg", "skimage_astronaut.png", "fr_biden_full_body.jpg"])
def test_measurements_do_not_depend_on_resolution_or_framing(
    triton_client: grpc.InferenceServerClient, data_dir: Path, photo: str
) -> None:
    bgr = cv2.imread(str(data_dir / "people" / "images" / photo))
    h, w = bgr.shape[:2]
    variants = {
        "original": bgr,
        "downscaled to 60 %": cv2.resize(bgr, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA),
        "framed 20 % wider": cv2.copyMakeBorder(bgr, h // 5, h // 5, w // 5, w // 5, cv2.BORDER_REPLICATE),
        "cropped 10 % at the top": bgr[h // 10 :],
    }
    measured = {name: advice(session(triton_client, [jpeg(image)], video=False)[0]) for name, image in variants.items()}
    base = measured.pop("original")
    assert {"head_circumference", "shoulder_width", "chest"} <= set(base.measurements)
    # The silhouette and the face mesh hold to a few per cent; the shoulder keypoints move with the pose model's
    # crop (measured up to ~10 %), which is why the chest comes from the silhouette when there is one.
    bounds = {"bideltoid_width": 0.08, "head_circumference": 0.03, "shoulder_width": 0.15}
    for name, got in measured.items():
        assert got.scale == base.scale, f"{photo} {name}: another scale"
        assert {"head_circumference", "shoulder_width"} <= set(got.measurements), f"{photo} {name}"
        # Near a boundary between two sizes a few per cent may tip it, but never past the runner-up.
        assert got.size in (base.size, base.runner_up) or base.size == got.runner_up, f"{photo} {name}: {got.size}"
        for key, bound in bounds.items():
            if key not in base.measurements or key not in got.measurements:
                continue  # the arms held out: no bideltoid breadth in this photo
            change = abs(got.measurements[key].value_cm / base.measurements[key].value_cm - 1)
            assert change < bound, f"{photo} {name}: {key} changed by {change:.1%}"


def test_iris_and_inter_pupillary_distance_agree_on_real_faces(
    triton_client: grpc.InferenceServerClient, data_dir: Path
) -> None:
    ratios = []
    for photo in sorted((data_dir / "people" / "images").iterdir()):
        images = [data for data, *_ in frames_of(photo)]
        perception = parse_perception(session(triton_client, images, video=False, item_id="")[0].perception)
        iris = scale_from_iris(face_points(perception.face)) if perception.HasField("face") else None
        if iris is not None and iris.iris_px >= 8:  # the iris big enough to be measured to ~12 %
            ratios.append(iris.cm_per_px_iris / iris.cm_per_px_ipd)
    assert len(ratios) >= 5
    # Population spread alone (iris ~4 %, IPD ~5.5 %) puts ~95 % of people within +-14 %.
    assert np.median(np.abs(np.log(ratios))) < 0.1 and max(np.abs(np.log(ratios))) < 0.25


BODIES = Path(__file__).resolve().parents[1] / "data" / "fit_bodies"
TRUTH_NAMES = {"chest": "chest_girth", "waist": "waist_girth_narrowest", "hips": "hip_girth_max"}


def test_synthetic_bodies_of_known_measurements_are_measured_within_tolerance(
    triton_client: grpc.InferenceServerClient,
) -> None:
    """Eight rendered bodies (tests/data/fit_bodies) with their stated height: every girth within 10 % (the
    inseam 12 %), the mean error within 6 %. The front views of m1, m2, f1, f2 calibrated the factors, the
    other four are held out (loadtest/results/fit-*.json)."""
    truth = json.loads((BODIES / "truth.json").read_text())
    errors: dict[str, list[float]] = {name: [] for name in (*TRUTH_NAMES, "shoulder_width", "inseam")}
    front_side_waist, front_waist = [], []
    for body in truth["bodies"]:
        known = {ours: body["measurements"][theirs] for ours, theirs in TRUTH_NAMES.items()}
        known |= {"shoulder_width": body["measurements"]["shoulder_width"], "inseam": body["measurements"]["inseam"]}
        images = {view["view"]: (BODIES / view["file"]).read_bytes() for view in body["images"]}
        height = body["measurements"]["stature"]
        front = advice(session(triton_client, [images["front"]], video=False, height_cm=height)[0])
        assert front.scale == ScaleMethod.SCALE_METHOD_HEIGHT
        for name, value in known.items():
            if name in front.measurements:  # a heavy body's arms against its chest: no chest width, no chest
                errors[name].append(front.measurements[name].value_cm / value - 1)
        turned = advice(session(triton_client, [images["front"], images["side"]], video=True, height_cm=height)[-1])
        front_waist.append(abs(front.measurements["waist"].value_cm / known["waist"] - 1))
        front_side_waist.append(abs(turned.measurements["waist"].value_cm / known["waist"] - 1))
    for name, values in errors.items():
        assert len(values) >= 6, f"{name} measured on {len(values)} of 8 bodies"
        bound = 0.12 if name == "inseam" else 0.1  # the inseam comes from leg proportions (heavy thighs: +10 %)
        assert max(np.abs(values)) < bound, f"{name}: {np.round(values, 3).tolist()}"
        assert np.mean(np.abs(values)) < 0.06, f"{name}: {np.round(values, 3).tolist()}"
    # Turning sideways measures the waist's depth instead of assuming the population's depth/width ratio.
    assert np.mean(front_side_waist) < np.mean(front_waist)
