"""The catalogue: what an item is (category, RGBA image, anchor points, real size, size chart) and where items
live (`catalogue/<item id>/item.json` + images). Loaded by every worker and by the renderer inside Triton.

Only the standard library, numpy (1.26 or 2.x) and OpenCV: this module runs in Triton's python-backend venv.

On disk, one folder per item, named by its id, holding `item.json` and the image it names:

    {
      "id": "tee-navy-stripes",             # = the folder's name: a-z, 0-9, "-", "_", "."; starts alphanumeric
      "category": "top",                    # one of CATEGORIES
      "name": "Striped T-shirt",            # shown to shoppers
      "image": "image.png",                 # an 8-bit RGBA PNG beside item.json (lipstick: a swatch picture)
      "anchors": {"collar": [x, y], ...},   # exactly the category's ANCHORS, in the image's pixels
      "size_mm": {"shoulder_width": 440, "length": 700},   # the real size: exactly SIZE_MM[category], mm
      "size_chart": {"S": {"chest": [86, 94]}, "M": {"chest": [94, 102]}},  # cm; {} = not filled in yet
      "params": {},                         # lipstick: {"colour": "#RRGGBB", "opacity": 0..1, "finish": ...}
      "licence": "CC0-1.0",                 # SPDX id (or LicenseRef-...) of the image
      "licence_file": "LICENSES/....txt",   # the licence text, relative to the catalogue folder; may be null
      "source": "where the image comes from and how it was made",
      "source_file": "garments/photos/....jpg"   # optional: the original in the shared data folder, or null
    }

Real sizes (`size_mm`, millimetres, what the renderers use to scale an item against the body):
top, dress: shoulder_width (seam to seam), length (collar to hem); glasses: frame_width (hinge to hinge, i.e.
between the temple anchors), lens_width, bridge_width; hat: width (brim, left_brim to right_brim),
inner_circumference (head size); earrings: length (hook to the image's bottom); necklace: length (the chain,
clasp to clasp: 400 sits at the base of the neck, 450 at the collarbones, 600 at the top of the bust); shoes:
length (outsole, heel to toe); ring: inner_diameter, band_width (the band's extent along the finger); watch:
case_diameter, band_width (the strap's width).

Size charts (`size_chart`, body measurements in centimetres, each size a [min, max) range; sizes listed from
small to large and each size's range starts where the previous one's ends, per measurement: no gaps, no
overlaps): top: chest, waist; dress: chest, waist, hips; hat: head_circumference; shoes: foot_length;
ring: finger_circumference; watch: wrist_circumference. Glasses, earrings, necklaces and lipstick are one
size: their chart is empty. Every size gives the same measurements (a subset of the category's). Rings use cm
too: EU size 52 is a finger circumference of 5.1-5.3 cm.

Anchor conventions beyond the comment on ANCHORS: tops and dresses are a front view; a garment without sleeves
has each sleeve anchor on its shoulder anchor. Ring and watch images show the item from above as worn, the finger
or forearm running vertically with the fingers up; the band runs across it and band_left / band_right are its
image-left / image-right ends (the limb's edges) on the band's centre line; a watch's crown (3 o'clock) points
up, to the hand. Shoes are a side view (either way round); earrings hang from `hook`; a necklace's `centre` is
its lowest point. Lipstick has no anchors; its `image` is a swatch for shop pages, and the loaded Item's image is
1x1 transparent (renderers paint `params`). The rules that propose anchors automatically are in
streams/tryon/anchors.py.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streams.errors import VTOError

log = logging.getLogger(__name__)

# Anchor points each category needs, in the item image's pixels. "left"/"right" are the wearer's own sides:
# in a front view of a garment, the wearer's left is on the image's right.
ANCHORS: dict[str, tuple[str, ...]] = {
    "top": ("collar", "left_shoulder", "right_shoulder", "left_sleeve", "right_sleeve", "left_hem", "right_hem"),
    "dress": ("collar", "left_shoulder", "right_shoulder", "left_sleeve", "right_sleeve", "left_hem", "right_hem"),
    "glasses": ("left_lens", "right_lens", "bridge", "left_temple", "right_temple"),
    "hat": ("left_brim", "right_brim", "crown"),
    "earrings": ("hook",),
    "necklace": ("left_end", "right_end", "centre"),
    "shoes": ("toe", "heel"),
    "ring": ("band_left", "band_right"),
    "watch": ("band_left", "band_right"),
    "lipstick": (),
}
CATEGORIES = tuple(ANCHORS)


@dataclass(frozen=True)
class Item:
    id: str
    category: str
    name: str
    image: np.ndarray  # (H, W, 4) uint8 RGBA; a 1x1 transparent image for make-up
    anchors: dict[str, tuple[float, float]]  # name -> (x, y) px in `image`
    size_mm: dict[str, float] = field(default_factory=dict)  # e.g. {"frame_width": 140} for glasses
    size_chart: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)  # size -> cm ranges
    params: dict[str, Any] = field(default_factory=dict)  # category-specific (lipstick colour, opacity, finish)

    def anchor(self, name: str) -> np.ndarray:
        return np.asarray(self.anchors[name], dtype=np.float64)


# Real size of an item, millimetres (see the module docstring for what each one measures).
SIZE_MM: dict[str, tuple[str, ...]] = {
    "top": ("shoulder_width", "length"),
    "dress": ("shoulder_width", "length"),
    "glasses": ("frame_width", "lens_width", "bridge_width"),
    "hat": ("width", "inner_circumference"),
    "earrings": ("length",),
    "necklace": ("length",),
    "shoes": ("length",),
    "ring": ("inner_diameter", "band_width"),
    "watch": ("case_diameter", "band_width"),
    "lipstick": (),
}

# Typical real sizes, what `vto catalogue add` writes until the retailer measures the item.
DEFAULT_SIZE_MM: dict[str, dict[str, float]] = {
    "top": {"shoulder_width": 440.0, "length": 700.0},
    "dress": {"shoulder_width": 380.0, "length": 950.0},
    "glasses": {"frame_width": 140.0, "lens_width": 52.0, "bridge_width": 18.0},
    "hat": {"width": 220.0, "inner_circumference": 570.0},
    "earrings": {"length": 30.0},
    "necklace": {"length": 450.0},
    "shoes": {"length": 280.0},
    "ring": {"inner_diameter": 17.5, "band_width": 3.0},
    "watch": {"case_diameter": 40.0, "band_width": 20.0},
    "lipstick": {},
}

# Body measurements (cm) a category's size chart may give.
SIZE_CHART: dict[str, tuple[str, ...]] = {
    "top": ("chest", "waist"),
    "dress": ("chest", "waist", "hips"),
    "glasses": (),
    "hat": ("head_circumference",),
    "earrings": (),
    "necklace": (),
    "shoes": ("foot_length",),
    "ring": ("finger_circumference",),
    "watch": ("wrist_circumference",),
    "lipstick": (),
}

LIPSTICK_FINISHES = ("matte", "gloss")
MAKEUP = frozenset({"lipstick"})  # categories drawn from `params`, not from a picture
ITEM_FILE = "item.json"
FIELDS = (
    "id",
    "category",
    "name",
    "image",
    "anchors",
    "size_mm",
    "size_chart",
    "params",
    "licence",
    "licence_file",
    "source",
    "source_file",
)
REQUIRED_FIELDS = frozenset(FIELDS) - {"licence_file", "source_file"}
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
COLOUR_PATTERN = re.compile(r"^#[0-9A-Fa-f]{6}$")
_EPS = 1e-6


class CatalogueError(VTOError):
    """An item that cannot be used: which item, which field of item.json (dotted path), what is wrong."""

    def __init__(self, item_id: str, field: str, message: str) -> None:
        super().__init__(f"{item_id}: {field}: {message}")
        self.item_id = item_id
        self.field = field
        self.message = message


def colour_bgr(colour: str) -> tuple[int, int, int]:
    """'#RRGGBB' -> (b, g, r) for OpenCV."""
    if not COLOUR_PATTERN.match(colour):
        raise ValueError(f"not a #RRGGBB colour: {colour!r}")
    return int(colour[5:7], 16), int(colour[3:5], 16), int(colour[1:3], 16)


def _number(value: object) -> float | None:
    """A finite JSON number as float, None for anything else (booleans included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class _Checker:
    """Collects every problem of one item folder, going on after each one where that still makes sense."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.item_id = folder.name
        self.problems: list[CatalogueError] = []

    def fail(self, field: str, message: str) -> None:
        self.problems.append(CatalogueError(self.item_id, field, message))

    def check(self) -> Item | None:
        path = self.folder / ITEM_FILE
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.fail(ITEM_FILE, f"missing in {self.folder}")
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.fail(ITEM_FILE, f"unreadable: {exc}")
            return None
        if not isinstance(meta, dict):
            self.fail(ITEM_FILE, "must hold a JSON object")
            return None
        for key in sorted(REQUIRED_FIELDS - set(meta)):
            self.fail(key, "missing")
        for key in sorted(set(meta) - set(FIELDS)):
            self.fail(key, f"unknown field (item.json has: {', '.join(FIELDS)})")

        item_id = meta.get("id")
        if "id" not in meta:
            pass
        elif not isinstance(item_id, str) or not ID_PATTERN.match(item_id):
            self.fail("id", f"{item_id!r} is not an id (a-z, 0-9, '.', '_', '-'; starts with a letter or digit)")
        elif item_id != self.folder.name:
            self.fail("id", f"{item_id!r} differs from the folder's name {self.folder.name!r}")
        category = meta.get("category")
        if "category" not in meta:
            category = None
        elif not isinstance(category, str) or category not in ANCHORS:
            self.fail("category", f"unknown category {category!r} (one of: {', '.join(CATEGORIES)})")
            category = None
        name = meta.get("name")
        if "name" in meta and (not isinstance(name, str) or not name.strip()):
            self.fail("name", "must be a non-empty string")

        # a missing field is reported once, above; the checks of the others go on
        image = self._image(meta["image"], category) if "image" in meta else None
        anchors = self._anchors(meta["anchors"], category, image) if "anchors" in meta else {}
        size_mm = self._size_mm(meta["size_mm"], category) if "size_mm" in meta else {}
        size_chart = self._size_chart(meta["size_chart"], category) if "size_chart" in meta else {}
        params = self._params(meta["params"], category) if "params" in meta else {}
        self._provenance(meta)

        if self.problems or category is None or image is None:
            return None
        if category in MAKEUP:  # drawn from params: the renderers get a 1x1 transparent image
            image = np.zeros((1, 1, 4), np.uint8)
        return Item(
            id=str(item_id),
            category=category,
            name=str(name),
            image=image,
            anchors=anchors,
            size_mm=size_mm,
            size_chart=size_chart,
            params=params,
        )

    def _image(self, name: object, category: str | None) -> np.ndarray | None:
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
            self.fail("image", f"{name!r} is not the file name of an image beside item.json")
            return None
        path = self.folder / name
        if not path.is_file():
            self.fail("image", f"{name} does not exist")
            return None
        try:
            data = np.fromfile(str(path), dtype=np.uint8)
        except OSError as exc:
            self.fail("image", f"{name} cannot be read: {exc}")
            return None
        bgra = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if bgra is None:
            self.fail("image", f"{name} is not a readable image")
            return None
        if bgra.dtype != np.uint8 or bgra.ndim != 3 or bgra.shape[2] != 4:
            channels = 1 if bgra.ndim == 2 else bgra.shape[2]
            self.fail("image", f"{name} must be 8-bit RGBA (has {channels} channel(s), {bgra.dtype})")
            return None
        if category not in MAKEUP and not (bgra[:, :, 3] > 0).any():
            self.fail("image", f"{name} is fully transparent")
            return None
        rgba = cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA)
        return np.ascontiguousarray(rgba)

    def _anchors(
        self, anchors: object, category: str | None, image: np.ndarray | None
    ) -> dict[str, tuple[float, float]]:
        if not isinstance(anchors, dict):
            self.fail("anchors", "must be an object {name: [x, y]}")
            return {}
        if category is None:
            return {}
        wanted = ANCHORS[category]
        out: dict[str, tuple[float, float]] = {}
        for name in wanted:
            if name not in anchors:
                self.fail(f"anchors.{name}", f"missing (a {category} needs {', '.join(wanted) or 'no anchors'})")
        for name, value in anchors.items():
            if name not in wanted:
                self.fail(f"anchors.{name}", f"not an anchor of a {category} ({', '.join(wanted) or 'none'})")
                continue
            xy = [_number(v) for v in value] if isinstance(value, list) and len(value) == 2 else [None]
            if None in xy:
                self.fail(f"anchors.{name}", f"{value!r} is not [x, y] (two finite numbers, image pixels)")
                continue
            x, y = float(xy[0] or 0.0), float(xy[1] or 0.0)
            if image is not None:
                h, w = image.shape[:2]
                if not (0 <= x <= w and 0 <= y <= h):
                    self.fail(f"anchors.{name}", f"({x:g}, {y:g}) is outside the {w}x{h} image")
                    continue
            out[name] = (x, y)
        return {name: out[name] for name in wanted if name in out}

    def _size_mm(self, size_mm: object, category: str | None) -> dict[str, float]:
        if not isinstance(size_mm, dict):
            self.fail("size_mm", "must be an object {measure: millimetres}")
            return {}
        if category is None:
            return {}
        wanted = SIZE_MM[category]
        out: dict[str, float] = {}
        for key in wanted:
            if key not in size_mm:
                self.fail(f"size_mm.{key}", f"missing (a {category} gives {', '.join(wanted)})")
        for key, value in size_mm.items():
            number = _number(value)
            if key not in wanted:
                self.fail(f"size_mm.{key}", f"not a size of a {category} ({', '.join(wanted) or 'none'})")
            elif number is None or number <= 0:
                self.fail(f"size_mm.{key}", f"{value!r} is not a positive number of millimetres")
            else:
                out[key] = number
        return out

    def _size_chart(self, chart: object, category: str | None) -> dict[str, dict[str, tuple[float, float]]]:
        if not isinstance(chart, dict):
            self.fail("size_chart", "must be an object {size: {measurement: [min_cm, max_cm]}}")
            return {}
        if category is None or not chart:
            return {}
        allowed = SIZE_CHART[category]
        if not allowed:
            self.fail("size_chart", f"a {category} is one size: leave the chart empty")
            return {}
        out: dict[str, dict[str, tuple[float, float]]] = {}
        measurements: set[str] | None = None
        for size, ranges in chart.items():
            if not isinstance(ranges, dict) or not ranges:
                self.fail(f"size_chart.{size}", "must be a non-empty object {measurement: [min_cm, max_cm]}")
                continue
            row: dict[str, tuple[float, float]] = {}
            for key, value in ranges.items():
                where = f"size_chart.{size}.{key}"
                if key not in allowed:
                    self.fail(where, f"not a measurement of a {category} chart ({', '.join(allowed)})")
                    continue
                lo_hi = [_number(v) for v in value] if isinstance(value, list) and len(value) == 2 else [None]
                if None in lo_hi or not 0 < (lo_hi[0] or 0.0) < (lo_hi[1] or 0.0):
                    self.fail(where, f"{value!r} is not [min_cm, max_cm] with 0 < min < max")
                    continue
                row[key] = (float(lo_hi[0] or 0.0), float(lo_hi[1] or 0.0))
            if measurements is None:
                measurements = set(ranges)
            elif set(ranges) != measurements:
                self.fail(f"size_chart.{size}", f"gives {sorted(ranges)}, the first size gives {sorted(measurements)}")
            out[str(size)] = row
        sizes = list(out)
        for previous, size in itertools.pairwise(sizes):
            for key in out[size].keys() & out[previous].keys():
                end, start = out[previous][key][1], out[size][key][0]
                if start > end + _EPS:
                    self.fail(
                        f"size_chart.{size}.{key}",
                        f"gap: {previous} ends at {end:g} cm, {size} starts at {start:g} cm (must be equal)",
                    )
                elif start < end - _EPS:
                    self.fail(
                        f"size_chart.{size}.{key}",
                        f"overlap: {previous} ends at {end:g} cm, {size} starts at {start:g} cm (must be equal)",
                    )
        return out

    def _params(self, params: object, category: str | None) -> dict[str, Any]:
        if not isinstance(params, dict):
            self.fail("params", "must be an object")
            return {}
        if category != "lipstick":
            return dict(params)
        colour = params.get("colour")
        if not isinstance(colour, str) or not COLOUR_PATTERN.match(colour):
            self.fail("params.colour", f'{colour!r} is not a colour "#RRGGBB"')
        opacity = _number(params.get("opacity"))
        if opacity is None or not 0.0 <= opacity <= 1.0:
            self.fail("params.opacity", f"{params.get('opacity')!r} is not a number from 0 to 1")
        finish = params.get("finish")
        if finish not in LIPSTICK_FINISHES:
            self.fail("params.finish", f"{finish!r} is not one of {', '.join(LIPSTICK_FINISHES)}")
        for key in sorted(set(params) - {"colour", "opacity", "finish"}):
            self.fail(f"params.{key}", "not a lipstick parameter (colour, opacity, finish)")
        return dict(params)

    def _provenance(self, meta: dict[str, Any]) -> None:
        licence = meta.get("licence")
        if "licence" in meta and (not isinstance(licence, str) or not licence.strip()):
            self.fail("licence", "must name the image's licence (an SPDX id or LicenseRef-...)")
        licence_file = meta.get("licence_file")
        if licence_file is not None:
            root = self.folder.parent.resolve()
            if not isinstance(licence_file, str) or not licence_file:
                self.fail("licence_file", "must be a path relative to the catalogue folder, or null")
            elif not (root / licence_file).resolve().is_relative_to(root) or not (root / licence_file).is_file():
                self.fail("licence_file", f"{licence_file} is not a file in the catalogue folder")
        source = meta.get("source")
        if "source" in meta and (not isinstance(source, str) or not source.strip()):
            self.fail("source", "must say where the image comes from")
        source_file = meta.get("source_file")
        if source_file is not None and not isinstance(source_file, str):
            self.fail("source_file", "must be a path (in the shared data folder) or null")


def item_problems(folder: str | os.PathLike[str]) -> tuple[Item | None, list[CatalogueError]]:
    """Every problem of the item in `folder`, and the item when there are none."""
    checker = _Checker(Path(folder))
    item = checker.check()
    return item, checker.problems


def validate_item(folder: str | os.PathLike[str]) -> Item:
    """The item in `folder` (`<catalogue>/<id>/`), loaded and checked; raises CatalogueError on the first problem."""
    item, problems = item_problems(folder)
    if problems:
        raise problems[0]
    assert item is not None
    return item


def item_folders(folder: str | os.PathLike[str]) -> list[Path]:
    """The item folders of a catalogue: its sub-folders, less LICENSES and hidden/temporary (`.`, `_`) ones."""
    root = Path(folder)
    return sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")) and p.name != "LICENSES"
    )


def check_catalogue(folder: str | os.PathLike[str]) -> tuple[dict[str, Item], list[CatalogueError]]:
    """Every valid item of a catalogue by id, and every problem of the others."""
    root = Path(folder)
    if not root.is_dir():
        return {}, [CatalogueError("-", "catalogue", f"{root} is not a folder")]
    items: dict[str, Item] = {}
    problems: list[CatalogueError] = []
    for sub in item_folders(root):
        item, found = item_problems(sub)
        problems.extend(found)
        if item is not None:
            items[item.id] = item
    return items, problems


def load_catalogue(folder: str | os.PathLike[str]) -> dict[str, Item]:
    """Every item of a catalogue by id; raises CatalogueError on the first problem of any item."""
    items, problems = check_catalogue(folder)
    if problems:
        raise problems[0]
    return items


def item_json(meta: dict[str, Any]) -> str:
    """item.json's text: indented, with each [x, y] / [min, max] pair on one line."""
    text = json.dumps(meta, indent=2, ensure_ascii=False)
    number = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
    return re.sub(rf"\[\s*({number}),\s*({number})\s*\]", r"[\1, \2]", text) + "\n"


def write_item(folder: str | os.PathLike[str], meta: dict[str, Any], rgba: np.ndarray, replace: bool = False) -> Path:
    """Write `<folder>/<meta id>/` (item.json + the RGBA image named by meta["image"]) atomically: the files go
    to a hidden temporary folder first, which is then renamed, so a catalogue being read never sees half an item."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    final = root / str(meta["id"])
    if final.exists() and not replace:
        raise CatalogueError(str(meta["id"]), "id", f"{final} already exists")
    tmp = root / f".tmp-{meta['id']}-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    rgba = np.asarray(rgba, np.uint8)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise CatalogueError(str(meta["id"]), "image", "could not encode the image as PNG")
    (tmp / str(meta["image"])).write_bytes(png.tobytes())
    (tmp / ITEM_FILE).write_text(item_json(meta), encoding="utf-8")
    if final.exists():
        old = root / f".old-{meta['id']}-{os.getpid()}-{time.monotonic_ns()}"
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    return final


def _signature(folder: Path) -> tuple[tuple[str, int, int, int], ...]:
    """What changes when any file of an item folder is written, replaced, added or removed."""
    entries = []
    with os.scandir(folder) as scan:
        for entry in scan:
            if entry.is_file():
                st = entry.stat()
                entries.append((entry.name, st.st_mtime_ns, st.st_size, st.st_ino))
    st = folder.stat()
    entries.append(("", st.st_mtime_ns, 0, st.st_ino))
    return tuple(sorted(entries))


class Catalogue:
    """The items of a catalogue folder, kept current without restarting the process.

    `reload_if_changed()` stats the folder tree (a few stat calls per item, no file reads) and re-reads only
    the items whose files changed; call it as often as convenient (`check_interval_s` makes calls within that
    interval of the last check free). An item that becomes invalid keeps its last good version (a half-copied
    folder does not take an item away from shoppers); a removed folder removes the item. Problems found at the
    last (re)load are in `errors`. A missing folder is an empty catalogue (it may appear later)."""

    def __init__(self, folder: str | os.PathLike[str], check_interval_s: float = 0.0) -> None:
        self.folder = Path(folder)
        self.check_interval_s = check_interval_s
        self.errors: list[CatalogueError] = []
        self._items: dict[str, Item] = {}
        self._signatures: dict[str, tuple[tuple[str, int, int, int], ...]] = {}
        self._problems: dict[str, list[CatalogueError]] = {}
        self._checked = -math.inf
        self._lock = threading.Lock()
        self.reload_if_changed()

    def get(self, item_id: str) -> Item | None:
        """The item, or None when the catalogue has no (valid) item of that id."""
        return self._items.get(item_id)

    def items(self) -> list[Item]:
        """Every valid item, by id."""
        return [self._items[k] for k in sorted(self._items)]

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def reload_if_changed(self) -> bool:
        """Re-read the items whose files changed since the last check; True when any item was added, changed or
        removed."""
        now = time.monotonic()
        if now - self._checked < self.check_interval_s:
            return False
        with self._lock:
            self._checked = now
            try:
                folders = {p.name: p for p in item_folders(self.folder)} if self.folder.is_dir() else {}
            except OSError as exc:
                log.warning("catalogue %s unreadable: %s", self.folder, exc)
                return False
            changed = False
            items = dict(self._items)
            for gone in set(self._signatures) - set(folders):
                self._signatures.pop(gone)
                self._problems.pop(gone, None)
                changed |= items.pop(gone, None) is not None
            for name, path in folders.items():
                try:
                    signature = _signature(path)
                except OSError:
                    continue  # removed while scanning: seen at the next check
                if self._signatures.get(name) == signature:
                    continue
                self._signatures[name] = signature
                item, problems = item_problems(path)
                self._problems[name] = problems
                if item is not None:
                    items[name] = item
                    changed = True
                for problem in problems:
                    log.warning("catalogue item skipped: %s", problem)
            if changed:
                self._items = items
            self.errors = [p for name in sorted(self._problems) for p in self._problems[name]]
            return changed


def describe(items: Iterable[Item]) -> list[dict[str, Any]]:
    """JSON-ready summaries of items (what `vto catalogue list --json` prints)."""
    return [
        {
            "id": item.id,
            "category": item.category,
            "name": item.name,
            "anchors": {k: [round(v[0], 1), round(v[1], 1)] for k, v in item.anchors.items()},
            "image_size": [int(item.image.shape[1]), int(item.image.shape[0])],
            "size_mm": item.size_mm,
            "sizes": list(item.size_chart),
            "params": item.params,
        }
        for item in items
    ]
