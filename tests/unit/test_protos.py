import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import gen_protos  # noqa: E402

from streams.proto.vto.v1.common_pb2 import Keypoint  # noqa: E402
from streams.proto.vto.v1.frame_pb2 import Frame  # noqa: E402


def test_committed_generated_code_matches_the_protos() -> None:
    generated = gen_protos.generate(gen_protos.OUT)
    committed = {
        p.relative_to(gen_protos.OUT): p.read_text()
        for p in gen_protos.OUT.rglob("*.py*")
        if "__pycache__" not in p.parts  # bytecode that Triton's python stub leaves behind
    }
    stale = sorted(str(p) for p in set(generated) | set(committed) if generated.get(p) != committed.get(p))
    assert not stale, f"run `make protos`: stale {stale}"


def test_messages_live_in_the_versioned_package_and_round_trip() -> None:
    assert Frame.DESCRIPTOR.full_name == "vto.v1.Frame"
    frame = Frame(session_id="s", sequence=3, client_keypoints=[Keypoint(x=1.5, visibility=0.5)])
    assert Frame.FromString(frame.SerializeToString()) == frame
