"""The `vto` command: stack up/down/status, worker, gateway, send, erase, commerce, account, pose, tryon, fit,
catalogue, demo, analytics, config."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from streams.analytics import cli as analytics_cli
from streams.errors import VTOError
from streams.settings import Settings, get_settings

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def _pose(
    settings: Settings,
    path: Path,
    render_dir: Path | None,
    face: bool,
    hands: bool,
    max_people: int | None,
    mask_dir: Path | None,
) -> dict[str, object]:
    """Per-frame perception of a photo, image folder or video, computed by the Triton `tryon` model.

    A video runs in tracking mode with smoothing (each frame gets the state the previous one left, at the
    video's own frame rate); photos and image folders are single images.
    """
    import cv2
    import numpy as np
    import tritonclient.grpc as grpc

    from streams.inference import session_results
    from streams.proto.vto.v1.perception_pb2 import PoseSource
    from streams.sender import frames_of
    from streams.serving.state_codec import face_points, hand_points, parse_perception
    from streams.stack import triton
    from streams.vision.segmentation import rle_decode

    video = path.suffix.lower() in VIDEO_SUFFIXES
    fps = 30.0
    if video:
        capture = cv2.VideoCapture(str(path))
        fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
        capture.release()

    def rounded(points: np.ndarray) -> list[list[float]]:
        return [[round(float(x), 1), round(float(y), 1)] for x, y in points[:, :2]]

    with triton.running(settings):
        client = grpc.InferenceServerClient(settings.triton_grpc_url)
        frames = []
        encoded = list(frames_of(path))
        results = session_results(
            client,
            settings.triton_model,
            (data for data, *_ in encoded),
            fps if video else None,
            render=render_dir is not None,
            face=face,
            hands=hands,
            mask=mask_dir is not None,
            max_people=max_people or 1,
        )
        for index, ((_data, _fmt, width, height), result) in enumerate(zip(encoded, results, strict=True)):
            perception = parse_perception(result.perception)
            keypoints = [
                [round(float(x), 1), round(float(y), 1), round(float(v), 3)] for x, y, v, _ in result.keypoints
            ]
            entry: dict[str, object] = {
                "index": index,
                "width": width,
                "height": height,
                "pose_score": round(result.pose_score, 4),
                "pose_source": PoseSource.Name(perception.pose_source).removeprefix("POSE_SOURCE_").lower(),
                "keypoints": keypoints if result.pose_found else [],
            }
            if face:
                entry["face"] = rounded(face_points(perception.face)) if perception.HasField("face") else []
            if hands:
                entry["hands"] = [
                    {"handedness": h.handedness, "score": round(h.score, 3), "points": rounded(hand_points(h))}
                    for h in perception.hands
                ]
            if max_people is not None:  # asked for: people[0] is the shopper whose keypoints are above
                entry["people"] = [
                    {
                        "score": round(p.score, 4),
                        "keypoints": [[round(k.x, 1), round(k.y, 1), round(k.visibility, 3)] for k in p.keypoints],
                    }
                    for p in perception.people
                ]
            frames.append(entry)
            if render_dir is not None:
                render_dir.mkdir(parents=True, exist_ok=True)
                (render_dir / f"{index:05d}.jpg").write_bytes(result.rendered)
            if mask_dir is not None and perception.HasField("mask"):
                mask_dir.mkdir(parents=True, exist_ok=True)
                m = perception.mask
                cv2.imwrite(
                    str(mask_dir / f"{index:05d}.png"),
                    rle_decode(list(m.rle), m.height, m.width).astype(np.uint8) * 255,
                )
        client.close()
        return {
            "file": str(path),
            "mode": "video (tracking, smoothed)" if video else "image",
            "keypoint_format": "33 x [x_px, y_px, visibility]",
            "face_format": "478 x [x_px, y_px]",
            "hand_format": "21 x [x_px, y_px]",
            "frames": frames,
        }


def _tryon(settings: Settings, image: Path, item_id: str, out: Path) -> dict[str, object]:
    """A photo through the same `tryon` pipeline the stream uses, with `item_id` on; writes the result."""
    import cv2
    import numpy as np
    import tritonclient.grpc as grpc
    from tritonclient.utils import InferenceServerException

    from streams.inference import TryOnRequest, perception_flags, tryon_inputs, tryon_result
    from streams.stack import triton
    from streams.tryon.catalogue import Catalogue
    from streams.tryon.categories import FEATURES

    item = Catalogue(settings.catalogue_dir).get(item_id)
    if item is None:
        raise VTOError(f"item {item_id!r} is not in the catalogue at {settings.catalogue_dir} (`vto catalogue list`)")
    if not image.is_file():
        raise VTOError(f"{image} is not a file")
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise VTOError(f"{out}: the output must be a .png, .jpg or .jpeg file")
    features = FEATURES[item.category]
    request = TryOnRequest(image.read_bytes(), item_id=item_id, **perception_flags(features))
    with triton.running(settings):
        client = grpc.InferenceServerClient(settings.triton_grpc_url)
        try:
            result = tryon_result(client.infer(settings.triton_model, tryon_inputs(request)))
        except InferenceServerException as exc:
            raise VTOError(f"{image}: {exc.message()}") from exc
        finally:
            client.close()
    bgr = cv2.imdecode(np.frombuffer(result.rendered, np.uint8), cv2.IMREAD_COLOR)
    out.parent.mkdir(parents=True, exist_ok=True)
    if bgr is None or not cv2.imwrite(str(out), bgr):
        raise VTOError(f"could not write {out}")
    return {
        "image": str(image),
        "item": item_id,
        "category": item.category,
        "out": str(out),
        "pose_found": result.pose_found,
        "width": result.width,
        "height": result.height,
    }


def _catalogue(settings: Settings, args: argparse.Namespace) -> int:
    """`vto catalogue list | validate | add`: the try-on catalogue in settings.catalogue_dir."""
    from streams.tryon.catalogue import CATEGORIES, check_catalogue, describe, item_json, item_problems

    folder = settings.catalogue_dir
    if args.action == "add":
        from streams.tryon.anchors import add_item

        if args.category not in CATEGORIES:
            raise VTOError(f"unknown category {args.category!r} (one of: {', '.join(CATEGORIES)})")
        if not args.photo.is_file():
            raise VTOError(f"{args.photo} is not a file")
        try:
            added = add_item(
                folder, args.photo, args.category, args.id, args.name, args.licence, args.source, args.replace
            )
        except ValueError as exc:
            raise VTOError(str(exc)) from exc
        print(f"wrote {added.folder / 'item.json'}")
        print(f"wrote {added.folder / added.meta['image']}")
        print(f"wrote {added.preview} (check the anchors on it)")
        print(item_json(added.meta), end="")
        _, problems = item_problems(added.folder)
        for problem in problems:
            print(f"invalid: {problem.item_id}\t{problem.field}\t{problem.message}", file=sys.stderr)
        if problems:
            return 1
        print(f"valid; the size chart is empty: fill it in {added.folder / 'item.json'}, then `vto catalogue validate`")
        return 0
    items, problems = check_catalogue(folder)
    if args.action == "validate":
        for problem in problems:
            print(f"{problem.item_id}\t{problem.field}\t{problem.message}")
        if problems:
            bad = len({p.item_id for p in problems})
            print(f"{len(problems)} problem(s) in {bad} item(s); {len(items)} valid in {folder}", file=sys.stderr)
            return 1
        print(f"{len(items)} items valid in {folder}")
        return 0
    listed = describe(items[k] for k in sorted(items))
    if args.json:
        print(json.dumps(listed))
    else:
        rows = [("id", "category", "name", "sizes")] + [
            (i["id"], i["category"], i["name"], ",".join(i["sizes"]) or "-") for i in listed
        ]
        widths = [max(len(str(r[c])) for r in rows) for c in range(3)]
        for r in rows:
            print("  ".join(str(r[c]).ljust(widths[c]) for c in range(3)) + "  " + r[3])
    if problems:
        bad = len({p.item_id for p in problems})
        print(f"{bad} invalid item(s) not listed: `vto catalogue validate`", file=sys.stderr)
    return 0


def _fit(settings: Settings, path: Path, item_id: str, height_cm: float | None, fit: str) -> dict[str, object]:
    """Size advice for `item_id` from a photo or a video (tracking mode): the Triton pipeline's advice after the
    last frame, exactly what the stream sends the shopper (RenderedFrame.fit_advice)."""
    import tritonclient.grpc as grpc

    from streams.fit.scale import MAX_HEIGHT_CM, MIN_HEIGHT_CM
    from streams.inference import perception_flags, session_results
    from streams.proto.vto.v1.fit_advice_pb2 import FitAdvice, FitPreference, ScaleMethod
    from streams.sender import frames_of
    from streams.stack import triton
    from streams.tryon.catalogue import Catalogue
    from streams.tryon.categories import FEATURES, FIT_FEATURES

    item = Catalogue(settings.catalogue_dir).get(item_id)
    if item is None:
        raise VTOError(f"item {item_id!r} is not in the catalogue at {settings.catalogue_dir} (`vto catalogue list`)")
    if not item.size_chart:
        raise VTOError(f"item {item_id!r} ({item.category}) has no size chart: nothing to advise")
    if height_cm is not None and not MIN_HEIGHT_CM <= height_cm <= MAX_HEIGHT_CM:
        raise VTOError(f"--height-cm {height_cm} is outside {MIN_HEIGHT_CM:.0f}..{MAX_HEIGHT_CM:.0f}")
    if not path.is_file():
        raise VTOError(f"{path} is not a file")
    video = path.suffix.lower() in VIDEO_SUFFIXES
    advice, frames = FitAdvice(), 0
    with triton.running(settings):
        client = grpc.InferenceServerClient(settings.triton_grpc_url)
        try:
            for result in session_results(
                client,
                settings.triton_model,
                (data for data, *_ in frames_of(path)),
                30.0 if video else None,
                render=False,
                item_id=item_id,
                height_cm=height_cm or 0.0,
                fit=FitPreference.Value(f"FIT_PREFERENCE_{fit.upper()}"),
                **perception_flags(FEATURES[item.category] | FIT_FEATURES.get(item.category, frozenset())),
            ):
                frames += 1
                if result.advice:
                    advice.ParseFromString(result.advice)
        finally:
            client.close()
    return {
        "file": str(path),
        "item": item_id,
        "category": item.category,
        "fit": fit,
        "size": advice.size or None,
        "runner_up": advice.runner_up or None,
        "confidence": round(advice.confidence, 3),
        "measurements_cm": {name: round(m.value_cm, 1) for name, m in sorted(advice.measurements.items())},
        "measurements": {
            name: {
                "value_cm": round(m.value_cm, 1),
                "spread_cm": round(m.spread_cm, 1),
                "confidence": round(m.confidence, 2),
            }
            for name, m in sorted(advice.measurements.items())
        },
        "reasons": list(advice.reasons) or ["nothing the size chart needs could be measured"],
        "scale": ScaleMethod.Name(advice.scale).removeprefix("SCALE_METHOD_").lower() if advice.size else "none",
        "frames": frames,
        "frames_measured": advice.frames,
    }


def _config_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    root = str(Path(__file__).resolve().parents[1])
    for name, field in Settings.model_fields.items():
        default = str(field.default).replace(root, "<repo>").replace(str(Path(root).parent), "<repo>/..")
        rows.append(f"| `VTO_{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(rows)


def _config_values(settings: Settings) -> str:
    """VTO_NAME=value per setting as this process sees them; secrets print as ********** (pydantic SecretStr)."""
    return "\n".join(f"VTO_{name.upper()}={getattr(settings, name)}" for name in Settings.model_fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vto", description="VTO Stream: real-time virtual try-on")
    sub = parser.add_subparsers(dest="command", required=True)
    stack = sub.add_parser("stack", help="the embedded Kafka + Triton + workers")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--workers", type=int, default=1, help="workers to start with `up`")
    stack.add_argument(
        "--with-prometheus",
        action="store_true",
        help="`up` also starts Prometheus (Debian's package) scraping the workers and Triton, with the alert rules",
    )
    gateway = sub.add_parser("gateway", help="run the browser gateway (the try-on page and its WebSockets)")
    gateway.add_argument("--name", default="", help="label for process listings")
    worker = sub.add_parser("worker", help="run one stream worker in the foreground")
    worker.add_argument("--name", default="", help="label for process listings")
    send = sub.add_parser("send", help="publish a video, image folder or photo as a shopper session")
    send.add_argument("path", type=Path)
    send.add_argument("--session", required=True)
    send.add_argument("--fps", type=float, default=15.0, help="pacing; 0 sends as fast as possible")
    send.add_argument("--item", default="", help="catalogue item being tried on")
    send.add_argument("--height-cm", type=float, default=0.0, help="the shopper's height, for size advice")
    send.add_argument("--fit", choices=["regular", "loose", "tight"], default="regular", help="fit preference")
    send.add_argument("--share-measurements", action="store_true", help="consent: measurements may go to analytics")
    send.add_argument("--token", default="", help="session token from the shop's backend (default: minted here)")
    erase = sub.add_parser("erase", help="erase a session: its state and try-on events (docs/privacy.md)")
    erase.add_argument("--session", required=True)
    erase.add_argument("--token", default="", help="session token (default: minted here from the key)")
    commerce = sub.add_parser("commerce", help="report a shopper's add-to-cart or purchase (analytics events)")
    commerce.add_argument("action", choices=["add-to-cart", "purchase"])
    commerce.add_argument("--session", required=True)
    commerce.add_argument("--item", required=True, help="catalogue item id")
    commerce.add_argument("--size", default="", help="the size chosen")
    commerce.add_argument("--quantity", type=int, default=1)
    commerce.add_argument("--token", default="", help="session token (default: minted here from the key)")
    token = sub.add_parser("token", help="mint a signed session token (what the shop's backend gives a client)")
    token.add_argument("--session", required=True)
    token.add_argument("--ttl-s", type=int, help="lifetime in seconds (default VTO_SESSION_TOKEN_TTL_S)")
    token.add_argument("--no-consent", action="store_true", help="a token recording that the shopper did not consent")
    pose = sub.add_parser("pose", help="print per-frame keypoints computed by the Triton models")
    pose.add_argument("path", type=Path)
    pose.add_argument("--json", action="store_true", help="JSON output (the only format for now)")
    pose.add_argument("--render-dir", type=Path, help="also write the rendered frames here")
    pose.add_argument("--face", action="store_true", help="add the 478-point face mesh per frame")
    pose.add_argument("--hands", action="store_true", help="add hands (21 points, handedness) per frame")
    pose.add_argument("--max-people", type=int, help="report up to N people per frame (adds `people`)")
    pose.add_argument("--mask-dir", type=Path, help="write the person mask of each frame here as PNG")
    demo = sub.add_parser("demo", help="a real video through the whole embedded stack, with figures")
    demo.add_argument("--video", type=Path)
    demo.add_argument("--fps", type=float, default=15.0, help="pacing of the video (the product's design rate)")
    demo.add_argument("--out", type=Path, default=Path("out/demo"))
    demo.add_argument("--keep-up", action="store_true", help="leave the stack running afterwards")
    demo.add_argument(
        "--item", action="append", default=[], help="catalogue item to try on (repeat: the video is split between them)"
    )
    tryon = sub.add_parser("tryon", help="render a catalogue item onto a photo with the Triton pipeline")
    tryon.add_argument("image", type=Path)
    tryon.add_argument("--item", required=True, help="catalogue item id (`vto catalogue list`)")
    tryon.add_argument("-o", "--out", type=Path, required=True, help="output image (PNG or JPEG)")
    account = sub.add_parser("account", help="what became of every frame a session sent, from the topics")
    account.add_argument("--session", required=True)
    account.add_argument("--json", action="store_true", help="JSON output (the only format for now)")
    fit = sub.add_parser("fit", help="size advice for an item from a photo or a video of the shopper")
    fit.add_argument("path", type=Path)
    fit.add_argument("--item", required=True, help="catalogue item with a size chart")
    fit.add_argument("--height-cm", type=float, help="the shopper's height: the most accurate metric scale")
    fit.add_argument("--fit", choices=["regular", "loose", "tight"], default="regular")
    fit.add_argument("--json", action="store_true", help="JSON output (the only format for now)")
    config = sub.add_parser("config", help="print the configuration variables as a Markdown table")
    config.add_argument("--values", action="store_true", help="this process's values instead (secrets masked)")
    catalogue = sub.add_parser("catalogue", help="the try-on catalogue (VTO_CATALOGUE_DIR): list, validate, add")
    catalogue_sub = catalogue.add_subparsers(dest="action", required=True)
    catalogue_list = catalogue_sub.add_parser("list", help="the valid items (a table, or JSON with --json)")
    catalogue_list.add_argument("--json", action="store_true", help="a JSON list of {id, category, name, ...}")
    catalogue_sub.add_parser("validate", help="check every item; exit 1 listing each problem (item, field, message)")
    catalogue_add = catalogue_sub.add_parser("add", help="a new item from a product photo: cut out, anchors proposed")
    catalogue_add.add_argument("photo", type=Path, help="product photo on a plain background, or an RGBA cut-out")
    catalogue_add.add_argument("--category", required=True, help="top, dress, glasses, hat, earrings, ... lipstick")
    catalogue_add.add_argument("--id", help="item id (default: from the photo's file name)")
    catalogue_add.add_argument("--name", help="shown to shoppers (default: from the photo's file name)")
    catalogue_add.add_argument("--licence", default="LicenseRef-retailer", help="the photo's licence (SPDX id)")
    catalogue_add.add_argument("--source", help="where the photo comes from (default: its file name)")
    catalogue_add.add_argument("--replace", action="store_true", help="overwrite an existing item of that id")
    analytics_cli.add_parser(sub)
    args = parser.parse_args(argv)

    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "gateway":
            from streams.gateway.server import main as gateway_main

            gateway_main()
        elif args.command == "worker":
            from streams.app import main as worker_main

            worker_main()
        elif args.command == "stack":
            from streams.stack import embedded

            if args.action == "up":
                embedded.up(settings, args.workers, with_prometheus=args.with_prometheus)
                print(json.dumps(embedded.status(settings), indent=2))
            elif args.action == "down":
                print("stopped:", ", ".join(embedded.down(settings)) or "nothing was running")
            else:
                print(json.dumps(embedded.status(settings), indent=2))
        elif args.command == "send":
            from streams.proto.vto.v1.fit_advice_pb2 import FitPreference
            from streams.sender import frames_of
            from streams.sender import send as send_session

            profile = {
                "height_cm": args.height_cm,
                "fit": FitPreference.Value(f"FIT_PREFERENCE_{args.fit.upper()}"),
                "share_measurements": args.share_measurements,
            }
            sent = send_session(
                settings, frames_of(args.path), args.session, args.fps, args.item, profile=profile, token=args.token
            )
            print(f"sent {len(sent)} frames of session {args.session} to {settings.frames_topic}")
        elif args.command == "erase":
            from streams.sender import erase as erase_session

            erase_session(settings, args.session, args.token)
            print(f"erasure of session {args.session} requested on {settings.control_topic}")
        elif args.command == "commerce":
            from streams.sender import commerce as report_commerce

            purchase = args.action == "purchase"
            report_commerce(settings, args.session, purchase, args.item, args.size, args.quantity, args.token)
            print(f"{args.action} of {args.item} in session {args.session} sent to {settings.control_topic}")
        elif args.command == "token":
            from streams import tokens

            ttl_s = args.ttl_s or settings.session_token_ttl_s
            print(tokens.mint(settings.session_key(), args.session, ttl_s, consent=not args.no_consent))
        elif args.command == "pose":
            if args.max_people is not None and not 1 <= args.max_people <= 8:
                parser.error("--max-people must be between 1 and 8")
            result = _pose(settings, args.path, args.render_dir, args.face, args.hands, args.max_people, args.mask_dir)
            print(json.dumps(result))
        elif args.command == "demo":
            from streams import demo as demo_module

            video = args.video or settings.data_dir / demo_module.DEFAULT_VIDEO
            from streams.tryon.catalogue import Catalogue

            known = Catalogue(settings.catalogue_dir)
            unknown = [item for item in args.item or demo_module.DEFAULT_ITEMS if known.get(item) is None]
            if unknown:
                raise VTOError(f"not in the catalogue at {settings.catalogue_dir}: {', '.join(unknown)}")
            summary = demo_module.run(settings, video, args.out, args.fps, args.keep_up, args.item)
            print(f"video            {summary.video}")
            print(f"frames sent      {summary.frames_sent}")
            print(f"frames rendered  {summary.frames_rendered} ({summary.frames_with_pose} with a pose)")
            print(f"throughput       {summary.throughput_fps:.1f} fps")
            print(
                f"latency p50/p95/p99  {summary.latency_ms_p50:.0f} / {summary.latency_ms_p95:.0f} / "
                f"{summary.latency_ms_p99:.0f} ms (capture -> rendered frame consumed)"
            )
            print("stage means (ms) " + ", ".join(f"{k} {v}" for k, v in summary.stage_ms_mean.items()))
            print(f"rendered video   {summary.rendered_video}")
            print(f"contact sheet    {summary.contact_sheet}")
            if args.keep_up:
                print(f"try-on page      {summary.page} (open it, allow the camera; `make down` stops the stack)")
            else:
                print(f"try-on page      {summary.page} while the stack runs: `vto demo --keep-up` or `make up`")
            if summary.prometheus and args.keep_up:
                print(f"prometheus       {summary.prometheus}/alerts (rules of k8s/base/monitoring); `make down` stops")
            elif summary.prometheus:
                print("prometheus       scraped this run; `vto demo --keep-up` or `make up-observed` leaves it on")
            else:
                print("prometheus       not installed (`apt-get install prometheus`): no metrics were kept")
            if summary.frames_dropped:
                print("frames dropped   " + ", ".join(f"{n} {why}" for why, n in summary.frames_dropped.items()))
            for row in summary.analytics["items"]:  # type: ignore[attr-defined]
                print(
                    f"analytics        {row['item_id']}: tried in {row['sessions']} session(s), {row['renders']} "
                    f"frames, dwell {row['dwell_s']} s, {row['carts']} cart, {row['purchases']} purchase "
                    f"({row['purchases_after_tryon']} after try-on)"
                )
            for item, others in summary.analytics["also_tried"].items():  # type: ignore[attr-defined]
                print(f"also tried       shoppers who tried {item} also tried: {', '.join(others) or 'nothing yet'}")
            if summary.frames_rendered + sum(summary.frames_dropped.values()) < summary.frames_sent:
                print("error: a frame came back neither rendered nor counted as dropped", file=sys.stderr)
                return 1
        elif args.command == "tryon":
            print(json.dumps(_tryon(settings, args.image, args.item, args.out)))
        elif args.command == "account":
            from streams.accounting import account as account_session

            print(json.dumps(account_session(settings, args.session)))
        elif args.command == "fit":
            print(json.dumps(_fit(settings, args.path, args.item, args.height_cm, args.fit)))
        elif args.command == "config":
            print(_config_values(settings) if args.values else _config_table())
        elif args.command == "catalogue":
            return _catalogue(settings, args)
        elif args.command == "analytics":
            return analytics_cli.run(settings, args)
    except VTOError as exc:
        print(f"vto: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
