"""Size advice evaluation through the real Triton `tryon` model (docs/fit.md quotes its result file).

Prints and writes loadtest/results/fit-<date>.json:
- people: the size advised for every person in ../shared/data/people (a top for everyone, a hat where the head
  is measured, shoes where the feet are), with confidence, scale and the measurements behind it;
- consistency: per video, the per-frame spread of the raw measurements, and how stable the session's advice is
  once it has seen two seconds;
- invariance: the same photo downscaled and padded (a wider framing): relative change of each measurement;
- scale: iris vs inter-pupillary distance on every face, and the stature the eye scale implies where the feet are
  seen too (no stated heights exist for these people);
- synthetic: bodies of known measurements (tests/data/fit_bodies, made by tools/make_fit_bodies.py from the anny
  parametric body) with the stated height: measurement error per view.

    .venv/bin/python loadtest/fit.py
"""

from __future__ import annotations

import json
import platform
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import tritonclient.grpc as grpc

from streams.fit.advice import recommend
from streams.fit.aggregate import scale_weight
from streams.fit.scale import scale_from_iris, stature_px
from streams.fit.session import frame_measurements
from streams.inference import TryOnResult, session_results
from streams.proto.vto.v1.fit_advice_pb2 import FitAdvice, ScaleMethod
from streams.sender import frames_of
from streams.serving.state_codec import face_points, parse_perception, scene_from_perception
from streams.settings import ROOT, get_settings
from streams.stack import triton
from streams.tryon.catalogue import Catalogue

RESULTS = Path(__file__).with_name("results")
BODIES = ROOT / "tests" / "data" / "fit_bodies"
ITEMS = {"top": "tee-navy", "hat": "top-hat-black", "shoes": "sneaker-white-red"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov"}
# Our measurement -> the name in tests/data/fit_bodies/truth.json (definitions in its README.md).
TRUTH_NAMES = {
    "chest": "chest_girth",
    "waist": "waist_girth_narrowest",
    "hips": "hip_girth_max",
    "shoulder_width": "shoulder_width",
    "arm_length": "arm_length",
    "inseam": "inseam",
    "foot_length": "foot_length",
}
FPS = 30.0


def decode(data: bytes) -> np.ndarray:
    return np.asarray(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))


def advice_of(result: TryOnResult) -> FitAdvice | None:
    return FitAdvice.FromString(result.advice) if result.advice else None


def summary(advice: FitAdvice | None) -> dict[str, object]:
    if advice is None:
        return {"size": None}
    return {
        "size": advice.size,
        "runner_up": advice.runner_up or None,
        "confidence": round(advice.confidence, 3),
        "scale": ScaleMethod.Name(advice.scale).removeprefix("SCALE_METHOD_").lower(),
        "frames_measured": advice.frames,
        "measurements_cm": {k: round(m.value_cm, 1) for k, m in sorted(advice.measurements.items())},
    }


def rel(a: float, b: float) -> float:
    return round(abs(a - b) / b, 4)


class Evaluation:
    def __init__(self, client: grpc.InferenceServerClient, data: Path) -> None:
        self.client, self.data = client, data

    def session(self, images: list[bytes], item: str, video: bool, height_cm: float = 0.0) -> list[TryOnResult]:
        """One session with `item` (its size advice needs face and mask), every frame's result."""
        fields = {"render": False, "item_id": item, "height_cm": height_cm, "face": True, "mask": True}
        return list(session_results(self.client, "tryon", images, FPS if video else None, **fields))

    def media(self) -> Iterator[tuple[str, list[bytes], bool]]:
        for path in sorted((self.data / "people" / "images").iterdir()) + sorted(
            (self.data / "people" / "videos").iterdir()
        ):
            if "cutout" in path.name:
                continue  # the same photo as rembg_arms_up_sunglasses_cap, background removed
            video = path.suffix.lower() in VIDEO_SUFFIXES
            yield path.name, [data for data, *_ in frames_of(path)], video

    def people(self) -> list[dict[str, object]]:
        rows = []
        for name, images, video in self.media():
            row: dict[str, object] = {"media": name, "frames": len(images)}
            for category, item in ITEMS.items():
                results = self.session(images, item, video)
                row[category] = summary(advice_of(results[-1])) if results else {"size": None}
            rows.append(row)
            print(name, {c: row[c] for c in ITEMS})
        return rows

    def consistency(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name, images, video in self.media():
            if not video:
                continue
            results = self.session(images, ITEMS["top"], True)
            per_frame: dict[str, list[float]] = {}
            for data, result in zip(images, results, strict=True):
                bgr = decode(data)
                scene = scene_from_perception(bgr, parse_perception(result.perception))
                frame = frame_measurements(scene)
                for key, (value, quality) in frame.items():
                    if quality * scale_weight(frame.scale_error) >= 0.5:
                        per_frame.setdefault(key, []).append(value)
            advice = [advice_of(r) for r in results]
            settled = [a for a in advice[int(2 * FPS) :] if a is not None]
            final = advice[-1]
            chest = [a.measurements["chest"].value_cm for a in settled if "chest" in a.measurements]
            fit_ms = [1000 * r.stage_seconds["fit"] for r in results]
            out[name] = {
                "frames": len(images),
                "fit_stage_ms_median_p95": [
                    round(float(np.median(fit_ms)), 2),
                    round(float(np.percentile(fit_ms, 95)), 2),
                ],
                "per_frame_cv": {
                    k: round(float(np.std(v) / np.mean(v)), 4) for k, v in sorted(per_frame.items()) if len(v) >= 10
                },
                "per_frame_count": {k: len(v) for k, v in sorted(per_frame.items())},
                "final": summary(final),
                "same_size_after_2s": round(float(np.mean([a.size == final.size for a in settled])), 3)
                if settled and final is not None
                else None,
                "chest_range_after_2s_rel": round((max(chest) - min(chest)) / float(np.median(chest)), 4)
                if chest
                else None,
            }
            print(name, out[name])
        return out

    def invariance(self) -> dict[str, object]:
        """Photos with an eye scale: downscaled, and padded to a wider framing; change of every measurement."""
        out: dict[str, object] = {}
        for name, images, video in self.media():
            if video:
                continue
            base = advice_of(self.session(images, ITEMS["top"], False)[0])
            if base is None or base.scale == ScaleMethod.SCALE_METHOD_NONE:
                continue
            bgr = decode(images[0])
            h, w = bgr.shape[:2]
            variants = {
                "scale_0.75": cv2.resize(bgr, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA),
                "scale_0.5": cv2.resize(bgr, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
                "pad_20pct": cv2.copyMakeBorder(
                    bgr, int(0.2 * h), int(0.2 * h), int(0.2 * w), int(0.2 * w), cv2.BORDER_REPLICATE
                ),
                "crop_top_10pct": bgr[h // 10 :],
            }
            row: dict[str, object] = {}
            for label, image in variants.items():
                data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
                got = advice_of(self.session([data], ITEMS["top"], False)[0])
                if got is None:
                    row[label] = None
                    continue
                changes = {
                    k: rel(got.measurements[k].value_cm, m.value_cm)
                    for k, m in base.measurements.items()
                    if k in got.measurements
                }
                row[label] = {"size_same": got.size == base.size, "relative_change": changes}
            out[name] = row
            print(name, row)
        return out

    def scale(self) -> dict[str, object]:
        """Iris vs inter-pupillary distance on every face, and the stature the eye scale implies wherever the
        feet are seen too (people/ and the annotated stills in keypoints/)."""
        faces, implied = [], []
        stills = [
            (p.name, [p.read_bytes()], False)
            for p in sorted((self.data / "keypoints").glob("*/*"))
            if p.suffix.lower() in (".jpg", ".png") and "segmentation" not in p.name
        ]
        for name, images, video in [*self.media(), *stills]:
            results = self.session(images, ITEMS["top"], video)
            for index, result in enumerate(results):
                perception = parse_perception(result.perception)
                if not perception.HasField("face"):
                    continue
                iris = scale_from_iris(face_points(perception.face))
                if iris is None:
                    continue
                if index == 0 or not video:
                    faces.append(
                        {
                            "media": name,
                            "iris_px": round(iris.iris_px, 1),
                            "ipd_px": round(iris.ipd_px, 1),
                            "iris_vs_ipd": round(iris.cm_per_px_iris / iris.cm_per_px_ipd, 3),
                            "expected_error": round(iris.expected_error, 3),
                        }
                    )
                if perception.people:
                    kp = np.array([[k.x, k.y, k.visibility, k.presence] for k in perception.people[0].keypoints])
                    stature = stature_px(kp)
                    if stature is not None:
                        implied.append({"media": name, "frame": index, "stature_cm": stature * iris.cm_per_px})
        ratios = np.array([f["iris_vs_ipd"] for f in faces])
        by_media: dict[str, list[float]] = {}
        for row in implied:
            by_media.setdefault(str(row["media"]), []).append(float(row["stature_cm"]))  # type: ignore[arg-type]
        return {
            "faces": faces,
            "iris_vs_ipd_median": round(float(np.median(ratios)), 3) if len(ratios) else None,
            "iris_vs_ipd_abs_log_median": round(float(np.median(np.abs(np.log(ratios)))), 3) if len(ratios) else None,
            "stature_from_eyes": {
                m: {
                    "frames": len(v),
                    "median_cm": round(float(np.median(v)), 1),
                    "p10_p90_cm": np.percentile(v, [10, 90]).round(1).tolist(),
                }
                for m, v in by_media.items()
            },
        }

    def synthetic(self) -> dict[str, object]:
        """Bodies of known measurements, one still per view and a front-then-side session, the stated height
        given: relative error of each measurement (views other than the frontal one measure what they can)."""
        truth_file = BODIES / "truth.json"
        if not truth_file.is_file():
            return {"skipped": f"{truth_file} is missing (tools/make_fit_bodies.py)"}
        truth = json.loads(truth_file.read_text())
        top = Catalogue(get_settings().catalogue_dir).get(ITEMS["top"])
        assert top is not None
        rows = []
        for body in truth["bodies"]:
            known = {ours: body["measurements"][theirs] for ours, theirs in TRUTH_NAMES.items()}
            exact = recommend(top, {"chest": (known["chest"], 0.0, 1.0)})
            true_size = exact.size if exact is not None else None
            views = {view["view"]: [(BODIES / view["file"]).read_bytes()] for view in body["images"]}
            views["front+side"] = views["front"] + views["side"]  # the shopper turns: a two-frame session
            for name, images in views.items():
                results = self.session(images, ITEMS["top"], len(images) > 1, body["measurements"]["stature"])
                result = results[-1]
                got = advice_of(result)
                row: dict[str, object] = {"body": body["id"], "view": name, "pose": result.pose_found}
                if got is not None:
                    row["scale"] = ScaleMethod.Name(got.scale).removeprefix("SCALE_METHOD_").lower()
                    row["size"] = got.size
                    row["runner_up"] = got.runner_up or None
                    row["true_size"] = true_size  # the chart's size for the true chest
                    row["confidence"] = round(got.confidence, 3)
                    row["error_rel"] = {
                        k: round(got.measurements[k].value_cm / v - 1, 4)
                        for k, v in known.items()
                        if k in got.measurements
                    }
                rows.append(row)
                print(row)
        errors: dict[str, dict[str, list[float]]] = {}
        for row in rows:
            for k, e in row.get("error_rel", {}).items():  # type: ignore[attr-defined]
                errors.setdefault(str(row["view"]), {}).setdefault(k, []).append(e)
        sized: dict[str, list[tuple[bool, bool]]] = {}
        for row in rows:
            if "size" in row:
                hit = row["size"] == row["true_size"]
                sized.setdefault(str(row["view"]), []).append((hit, hit or row["runner_up"] == row["true_size"]))
        return {
            "truth_names": TRUTH_NAMES,
            "top_size_right": {
                view: {
                    "n": len(v),
                    "size": round(float(np.mean([a for a, _ in v])), 3),
                    "size_or_runner_up": round(float(np.mean([b for _, b in v])), 3),
                }
                for view, v in sized.items()
            },
            "rows": rows,
            "error_by_view": {
                view: {
                    k: {
                        "n": len(v),
                        "mean_rel": round(float(np.mean(v)), 4),
                        "mean_abs_rel": round(float(np.mean(np.abs(v))), 4),
                        "max_abs_rel": round(float(np.max(np.abs(v))), 4),
                    }
                    for k, v in sorted(by_name.items())
                }
                for view, by_name in errors.items()
            },
        }


def main() -> int:
    settings = get_settings()
    with triton.running(settings):
        client = grpc.InferenceServerClient(settings.triton_grpc_url)
        evaluation = Evaluation(client, settings.data_dir)
        report = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, CPU only",
            "items": ITEMS,
            "synthetic": evaluation.synthetic(),
            "invariance": evaluation.invariance(),
            "consistency": evaluation.consistency(),
            "scale": evaluation.scale(),
            "people": evaluation.people(),
        }
        client.close()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"fit-{datetime.now(UTC).date()}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
