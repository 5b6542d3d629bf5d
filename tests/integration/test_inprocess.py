"""The bench's in-process baseline (streams/serving/inprocess.py) does the work the pipeline's Triton does: the
same frames, in tracking mode, give the same keypoints through the real Triton and in-process."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpc

from streams.inference import perception_flags, session_results
from streams.sender import frames_of
from streams.settings import ROOT, Settings

pytestmark = pytest.mark.integration
ITEM = "tee-breton-stripes"


def test_in_process_and_triton_agree_frame_by_frame(
    stack: Settings, triton_client: grpc.InferenceServerClient, data_dir: Path, tmp_path: Path
) -> None:
    frames = [data for data, *_ in frames_of(data_dir / "people" / "videos" / "mediapipe_full_body_dance.mp4")][:12]
    folder = tmp_path / "s0"
    folder.mkdir()
    for i, data in enumerate(frames):
        (folder / f"{i:04d}.jpg").write_bytes(data)
    python = stack.cache_dir / "venv-models" / "bin" / "python"
    out = subprocess.run(
        [str(python), "-m", "streams.serving.inprocess", str(tmp_path), "--item", ITEM, "--features", "face,mask"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "VTO_CATALOGUE_DIR": str(stack.catalogue_dir)},
        check=True,
    )
    local = json.loads(out.stdout)["frames_timed"]
    served = list(
        session_results(
            triton_client, stack.triton_model, frames, 15.0, item_id=ITEM, **perception_flags({"face", "mask"})
        )
    )
    assert len(local) == len(served) == len(frames)
    for mine, theirs in zip(local, served, strict=True):
        difference = np.abs(np.array(mine["keypoints"]) - theirs.keypoints[:, :2]).max()
        assert difference < 1.0, f"frame {mine['index']}: {difference:.2f} px apart"
        assert theirs.pose_found
