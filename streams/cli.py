"""The `vto` command: stack up/down/status, worker, send, pose, demo, config."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from streams.errors import VTOError
from streams.settings import Settings, get_settings


def _pose(settings: Settings, path: Path, render_dir: Path | None) -> dict[str, object]:
    """Per-frame keypoints of a photo, image folder or video, computed by the Triton `tryon` model."""
    import tritonclient.grpc as grpc

    from streams.inference import tryon_inputs, tryon_result
    from streams.sender import frames_of
    from streams.stack import triton

    started_here = False
    try:
        triton.ready(settings)
    except OSError:
        triton.start(settings)
        started_here = True
    try:
        client = grpc.InferenceServerClient(settings.triton_grpc_url)
        frames = []
        for index, (data, _fmt, width, height) in enumerate(frames_of(path)):
            result = tryon_result(client.infer(settings.triton_model, tryon_inputs(data, render_dir is not None)))
            keypoints = [
                [round(float(x), 1), round(float(y), 1), round(float(v), 3)] for x, y, v, _ in result.keypoints
            ]
            frames.append(
                {
                    "index": index,
                    "width": width,
                    "height": height,
                    "pose_score": round(result.pose_score, 4),
                    "keypoints": keypoints if result.pose_found else [],
                }
            )
            if render_dir is not None:
                render_dir.mkdir(parents=True, exist_ok=True)
                (render_dir / f"{index:05d}.jpg").write_bytes(result.rendered)
        client.close()
        return {"file": str(path), "keypoint_format": "33 x [x_px, y_px, visibility]", "frames": frames}
    finally:
        if started_here:
            triton.stop(settings)


def _config_table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    root = str(Path(__file__).resolve().parents[1])
    for name, field in Settings.model_fields.items():
        default = str(field.default).replace(root, "<repo>").replace(str(Path(root).parent), "<repo>/..")
        rows.append(f"| `VTO_{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vto", description="VTO Stream: real-time virtual try-on")
    sub = parser.add_subparsers(dest="command", required=True)
    stack = sub.add_parser("stack", help="the embedded Kafka + Triton + workers")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--workers", type=int, default=1, help="workers to start with `up`")
    worker = sub.add_parser("worker", help="run one stream worker in the foreground")
    worker.add_argument("--name", default="", help="label for process listings")
    send = sub.add_parser("send", help="publish a video, image folder or photo as a shopper session")
    send.add_argument("path", type=Path)
    send.add_argument("--session", required=True)
    send.add_argument("--fps", type=float, default=15.0, help="pacing; 0 sends as fast as possible")
    send.add_argument("--item", default="", help="catalogue item being tried on")
    pose = sub.add_parser("pose", help="print per-frame keypoints computed by the Triton models")
    pose.add_argument("path", type=Path)
    pose.add_argument("--json", action="store_true", help="JSON output (the only format for now)")
    pose.add_argument("--render-dir", type=Path, help="also write the rendered frames here")
    demo = sub.add_parser("demo", help="a real video through the whole embedded stack, with figures")
    demo.add_argument("--video", type=Path)
    demo.add_argument("--fps", type=float, default=15.0, help="pacing of the video (the product's design rate)")
    demo.add_argument("--out", type=Path, default=Path("out/demo"))
    demo.add_argument("--keep-up", action="store_true", help="leave the stack running afterwards")
    sub.add_parser("config", help="print the configuration variables as a Markdown table")
    args = parser.parse_args(argv)

    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "worker":
            from streams.app import main as worker_main

            worker_main()
        elif args.command == "stack":
            from streams.stack import embedded

            if args.action == "up":
                embedded.up(settings, args.workers)
                print(json.dumps(embedded.status(settings), indent=2))
            elif args.action == "down":
                print("stopped:", ", ".join(embedded.down(settings)) or "nothing was running")
            else:
                print(json.dumps(embedded.status(settings), indent=2))
        elif args.command == "send":
            from streams.sender import frames_of
            from streams.sender import send as send_session

            sent = send_session(settings, frames_of(args.path), args.session, args.fps, args.item)
            print(f"sent {len(sent)} frames of session {args.session} to {settings.frames_topic}")
        elif args.command == "pose":
            print(json.dumps(_pose(settings, args.path, args.render_dir)))
        elif args.command == "demo":
            from streams import demo as demo_module

            video = args.video or settings.data_dir / demo_module.DEFAULT_VIDEO
            summary = demo_module.run(settings, video, args.out, args.fps, args.keep_up)
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
            if summary.frames_rendered < summary.frames_sent:
                print("error: not every frame came back rendered", file=sys.stderr)
                return 1
        elif args.command == "config":
            print(_config_table())
    except VTOError as exc:
        print(f"vto: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
