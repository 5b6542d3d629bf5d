"""Regenerate streams/proto/ from protos/ (`make protos`); `--check` fails when the committed code is stale.

protoc names modules after the .proto paths (`vto.v1.frame_pb2`); they live in the `streams.proto` package,
so the generated imports and module names are rewritten to `streams.proto.vto.v1.*`.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"
OUT = ROOT / "streams" / "proto"
PACKAGE_INIT = '"""Generated protobuf code (tools/gen_protos.py). Do not edit."""\n'


def _rewrite(text: str) -> str:
    text = re.sub(r"^from vto\.v1 import ", "from streams.proto.vto.v1 import ", text, flags=re.M)
    text = re.sub(r"'vto\.v1\.(\w+_pb2)'", r"'streams.proto.vto.v1.\1'", text)
    return re.sub(r"(?<![\w.])vto\.v1\.(\w+_pb2)\b", r"streams.proto.vto.v1.\1", text)


def generate(out: Path) -> dict[Path, str]:
    """Generate into a scratch folder; return {path relative to `out`: content}."""
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        plugin = Path(sys.executable).parent / "protoc-gen-mypy"  # from mypy-protobuf, beside this Python
        args = [
            "protoc",
            f"-I{PROTOS}",
            f"--plugin=protoc-gen-mypy={plugin}",
            f"--python_out={tmp}",
            f"--mypy_out={tmp}",
            *sources,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        files = {p.relative_to(tmp): _rewrite(p.read_text()) for p in Path(tmp).rglob("*.py*")}
    for folder in {Path("."), Path("vto"), Path("vto/v1")}:
        files[folder / "__init__.py"] = PACKAGE_INIT
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if streams/proto differs from protos/")
    args = parser.parse_args()
    files = generate(OUT)
    existing = (
        {p.relative_to(OUT) for p in OUT.rglob("*.py*") if "__pycache__" not in p.parts} if OUT.exists() else set()
    )
    stale = sorted(str(p) for p in files if not (OUT / p).exists() or (OUT / p).read_text() != files[p])
    stale += sorted(str(p) for p in existing - set(files))
    if args.check:
        if stale:
            print("generated protobuf code is stale, run `make protos`:", ", ".join(stale), file=sys.stderr)
            return 1
        print("generated protobuf code is up to date")
        return 0
    for p in existing - set(files):
        (OUT / p).unlink()
    for p, content in files.items():
        (OUT / p).parent.mkdir(parents=True, exist_ok=True)
        (OUT / p).write_text(content)
    print(f"wrote {len(files)} files under {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
