"""Synthetic human bodies of known measurements, rendered as photos, to evaluate the size estimator (streams/fit/).

Builds 8 adult bodies (men and women, 155-195 cm, thin to heavy) with NAVER's Anny parametric body model
(MakeHuman-based), straightens the arms into a slight A-pose through Anny's skeleton and renders each body three
times (front; front, turned 15 degrees, arms a little lower; side) with a small numpy z-buffer rasterizer: pinhole
camera about 3 m away at chest height, Lambert + ambient shading, skin tones from light to dark, a darker hair cap,
a wall and a floor. truth.json gets the true measurements (stature, chest / waist / hip girths, shoulder width, arm
length, inseam, foot length), the Anny parameters, the camera of every image and the pixel positions of reference
points (top of head, heels, joint centres); README.md next to it gives the definitions.

Offline tool, not run in CI (CPU only, about a minute; Anny's first start also builds its cache):
    python3.11 -m venv /tmp/annyenv && /tmp/annyenv/bin/pip install anny==0.6.2
    /tmp/annyenv/bin/python tools/make_fit_bodies.py [--out tests/data/fit_bodies] [--only m1 f2]

Licence: the meshes derive from the MakeHuman assets shipped with Anny (CC0 1.0); Anny's code is Apache-2.0
(Copyright NAVER Corp.), this script Apache-2.0 like the project. The images and truth.json it writes: CC0 1.0.
"""

from __future__ import annotations

import argparse
import json
import math
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

# anny, roma, torch and PIL: from the Anny environment, absent from the project's (hence the mypy ignores)
import anny  # type: ignore[import-not-found, unused-ignore]
import numpy as np
import roma  # type: ignore[import-not-found, unused-ignore]
import torch  # type: ignore[import-not-found, unused-ignore]
from anny.anthropometry import Anthropometry  # type: ignore[import-not-found, unused-ignore]
from anny.paths import get_anny_root_dir  # type: ignore[import-not-found, unused-ignore]
from PIL import Image  # type: ignore[import-not-found, unused-ignore]

WIDTH, HEIGHT, SUPERSAMPLE = 720, 1280, 2
VFOV_DEG = 48.0
FOCAL = HEIGHT / 2 / math.tan(math.radians(VFOV_DEG / 2))  # pixels; square pixels, principal point at the centre
WALL_BEHIND_M = 1.3  # the wall stands this far behind the body
ARM_BONES = ("upperarm", "lowerarm", "wrist", "finger", "metacarpal")  # left out of the girths
EYE_BASE_VERTICES = (14598, 14741)  # MakeHuman helper-l-eye + helper-r-eye (mpfb2 basemesh_vertex_groups.json)
KEY_LIGHT, FILL_LIGHT = np.array([-0.45, -1.0, 0.8]), np.array([0.7, -0.6, 0.1])
VIEWS = (("front", 0.0, 25.0), ("front_yaw15", 15.0, 18.0), ("side", 90.0, 25.0))  # name, yaw, arm abduction (deg)
JOINTS = dict(
    shoulder="upperarm01", elbow="lowerarm01", wrist="wrist", hip="upperleg01", knee="lowerleg01", ankle="foot"
)
CONVENTIONS = dict(
    world="metres; x = the body's left at yaw 0 (image right), y = away from the camera, z = up, floor at z = 0; "
    "the body turns by yaw (counter-clockwise seen from above) about the vertical through its pelvis, at x = y = 0; "
    "yaw 90: facing image right, its right side to the camera",
    camera="pinhole at (0, -distance_m, height_m) looking along +y, no pitch or roll: u = fx * x / (y + distance_m) "
    "+ cx, v = fy * (height_m - z) / (y + distance_m) + cy; pixel (i, j) spans [i, i + 1) x [j, j + 1)",
    points_px="projections, not occlusion-tested, of the top of the head, the rearmost sole point of each heel and "
    "Anny's joint centres; _L / _R: the body's left / right",
    measurements="centimetres, on the 'front' pose; definitions in README.md",
)


class Body(NamedTuple):
    """Anny phenotypes in [0, 1]: gender 0 = male, 1 = female; age 0.78 ~ 25 years, 0.81 ~ 50 years (Anny's
    calibration); Anny's height parameter is solved for stature_cm. Colours are sRGB; camera: distance, height (m)."""

    id: str
    gender: float
    age: float
    muscle: float
    weight: float
    proportions: float
    stature_cm: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    camera: tuple[float, float]


BODIES = [
    Body("m1", 0.0, 0.78, 0.8, 0.55, 0.5, 195.0, (226, 184, 155), (70, 50, 35), (3.2, 1.20)),
    Body("m2", 0.0, 0.79, 0.5, 0.5, 0.5, 178.0, (141, 96, 66), (25, 20, 18), (3.0, 1.10)),
    Body("m3", 0.0, 0.81, 0.15, 1.0, 0.5, 172.0, (201, 152, 118), (45, 35, 30), (3.0, 1.05)),
    Body("m4", 0.0, 0.78, 0.3, 0.1, 0.3, 163.0, (92, 60, 42), (20, 17, 15), (2.8, 1.00)),
    Body("f1", 1.0, 0.78, 0.5, 0.5, 0.5, 155.0, (236, 200, 176), (150, 110, 60), (2.7, 1.00)),
    Body("f2", 1.0, 0.80, 0.1, 1.0, 0.5, 166.0, (176, 124, 88), (30, 24, 20), (3.0, 1.10)),
    Body("f3", 1.0, 0.78, 0.4, 0.15, 0.3, 176.0, (120, 80, 55), (22, 18, 16), (3.1, 1.15)),
    Body("f4", 1.0, 0.79, 0.5, 0.65, 0.9, 168.0, (214, 170, 140), (60, 40, 28), (3.0, 1.10)),
]
Point2 = tuple[float, float]


def rotation_between(a: Any, b: Any) -> Any:
    """The smallest rotation matrix taking direction a to direction b."""
    a, b = a / a.norm(), b / b.norm()
    axis = torch.linalg.cross(a, b)
    return roma.rotvec_to_rotmat(axis / axis.norm().clamp_min(1e-9) * torch.atan2(axis.norm(), a @ b))


def arm_pose(model: Any, heads: Any, abduction_deg: float) -> Any:
    """Pose parameters that straighten each arm at abduction_deg from the vertical, in the frontal plane.

    Anny's default 'local-ref' parameterization takes per-bone rotations in world axes, applied on top of its
    reference pose (straight spine and legs, arms ~40 degrees down, elbows bent forward) whose joint positions
    are `heads`; the rotations compose down the chain, hence the forearm's upper.T @ fore.
    """
    bone = model.bone_labels.index
    pose = torch.eye(4).repeat(1, model.bone_count, 1, 1)
    for side, sign in (("L", 1.0), ("R", -1.0)):
        a = math.radians(abduction_deg)
        target = torch.tensor([sign * math.sin(a), 0.0, -math.cos(a)])
        shoulder, elbow, wrist = (heads[bone(f"{b}.{side}")] for b in ("upperarm01", "lowerarm01", "wrist"))
        upper, fore = rotation_between(elbow - shoulder, target), rotation_between(wrist - elbow, target)
        pose[0, bone(f"upperarm01.{side}"), :3, :3] = upper
        pose[0, bone(f"lowerarm01.{side}"), :3, :3] = upper.T @ fore
    return pose


def convex_hull_perimeter(points: np.ndarray) -> float:
    """Perimeter of the 2D convex hull (Andrew's monotone chain): the length of a tape around the section."""
    pts: list[Point2] = sorted({(float(x), float(y)) for x, y in np.round(points, 6)})

    def half(seq: list[Point2]) -> list[Point2]:
        hull: list[Point2] = []
        for p in seq:
            while len(hull) >= 2 and (
                (hull[-1][0] - hull[-2][0]) * (p[1] - hull[-2][1]) - (hull[-1][1] - hull[-2][1]) * (p[0] - hull[-2][0])
                <= 0
            ):
                hull.pop()
            hull.append(p)
        return hull[:-1]

    hull = np.array(half(pts) + half(pts[::-1]))
    return float(np.linalg.norm(hull - np.roll(hull, 1, axis=0), axis=1).sum()) if len(pts) > 2 else 0.0


def girth(verts: np.ndarray, edges: np.ndarray, z: float) -> float:
    """Convex-hull perimeter of the section of the given mesh edges by the horizontal plane at height z."""
    za, zb = verts[edges[:, 0], 2], verts[edges[:, 1], 2]
    cut = (za - z) * (zb - z) < 0
    t = ((z - za[cut]) / (zb[cut] - za[cut]))[:, None]
    return convex_hull_perimeter((verts[edges[cut, 0]] * (1 - t) + verts[edges[cut, 1]] * t)[:, :2])


def cm(metres: Any) -> float:
    return round(float(metres) * 100, 1)


def measure(model: Any, out: Any, dominant: list[str]) -> dict[str, Any]:
    """True measurements (cm) of a posed body standing on z = 0, the heights of the levels used, Anny's own."""
    v, faces = out["vertices"][0].double().numpy(), model.faces.numpy()
    joint = {b: out["bone_poses"][0, i, :3, 3].double().numpy() for i, b in enumerate(model.bone_labels)}
    torso = np.array([not d.startswith(ARM_BONES) for d in dominant])
    tf = faces[torso[faces].all(1)]
    edges = np.unique(np.sort(np.concatenate([tf[:, [0, 1]], tf[:, [1, 2]], tf[:, [2, 0]]]), axis=1), axis=0)
    stature = v[:, 2].max()
    uv = np.zeros((len(v), 2))
    uv[faces.ravel()] = model.texture_coordinates.numpy()[model.face_texture_coordinate_indices.numpy().ravel()]
    chest_z = float(np.mean([v[np.argmin(np.linalg.norm(uv - p, axis=1)), 2] for p in nipple_uvs()]))
    waist_z = float(np.mean(v[Anthropometry(model).waist_vertex_indices, 2]))
    mid = np.abs(v[:, 0]) < 0.01
    crotch_z = float(v[mid & (v[:, 2] > 0.3 * stature) & (v[:, 2] < 0.6 * stature), 2].min())
    hip_levels = np.arange(crotch_z + 0.02, crotch_z + 0.25, 0.005)
    hip_girths = [girth(v, edges, z) for z in hip_levels]
    pelvis = torso & (v[:, 2] > crotch_z) & (v[:, 2] < crotch_z + 0.25) & (np.abs(v[:, 0]) < 0.2)
    hip_z = float(v[pelvis][np.argmax(v[pelvis, 1]), 2])  # the buttocks' greatest backward protrusion
    waist_levels = np.arange(0.55 * stature, 0.65 * stature, 0.005)
    waist_girths = [girth(v, edges, z) for z in waist_levels]
    acromion, feet = {}, []
    for side, sign in (("L", 1), ("R", -1)):
        # acromion proxy: the top-outer corner of the shoulder, the skin point farthest up-and-out at 45 degrees
        # within 3 cm of the frontal plane through the shoulder joint
        j = joint[f"upperarm01.{side}"]
        band = (np.abs(v[:, 1] - j[1]) < 0.03) & (v[:, 2] > j[2] - 0.03) & (sign * (v[:, 0] - j[0]) > -0.06)
        acromion[side] = v[band][np.argmax(v[band] @ [sign * 0.7071, 0, 0.7071])]
        foot = v[[d == f"foot.{side}" or (d.startswith("toe") and d.endswith(side)) for d in dominant]]
        heel_to_toe = np.linalg.svd(foot[:, :2] - foot[:, :2].mean(0))[2][0]  # the foot's main horizontal axis
        feet.append(np.ptp(foot[:, :2] @ heel_to_toe))
    wrist = {s: joint[f"wrist.{s}"] for s in "LR"}
    anthro = Anthropometry(model)(out["rest_vertices"])
    return dict(
        measurements=dict(
            stature=cm(stature),
            chest_girth=cm(girth(v, edges, chest_z)),
            waist_girth=cm(anthro["waist_circumference"][0]),
            waist_girth_hull_at_anny_level=cm(girth(v, edges, waist_z)),
            waist_girth_narrowest=cm(min(waist_girths)),
            hip_girth=cm(girth(v, edges, hip_z)),
            hip_girth_max=cm(max(hip_girths)),
            shoulder_width=cm(np.linalg.norm(acromion["L"] - acromion["R"])),
            shoulder_joint_width=cm(np.linalg.norm(joint["upperarm01.L"] - joint["upperarm01.R"])),
            arm_length=cm(np.mean([np.linalg.norm(acromion[s] - wrist[s]) for s in "LR"])),
            arm_length_joints=cm(np.mean([np.linalg.norm(joint[f"upperarm01.{s}"] - wrist[s]) for s in "LR"])),
            inseam=cm(crotch_z),
            foot_length=cm(np.mean(feet)),
        ),
        levels_height=dict(
            chest=cm(chest_z),
            waist_anny=cm(waist_z),
            waist_narrowest=cm(waist_levels[np.argmin(waist_girths)]),
            hip=cm(hip_z),
            hip_max=cm(hip_levels[np.argmax(hip_girths)]),
            crotch=cm(crotch_z),
        ),
        anny_anthropometry=dict(
            height_cm=cm(anthro["height"][0]),
            waist_circumference_cm=cm(anthro["waist_circumference"][0]),
            mass_kg=round(float(anthro["mass"][0]), 1),
            bmi=round(float(anthro["bmi"][0]), 1),
        ),
    )


def nipple_uvs() -> np.ndarray:
    """UV centres of the two areolae in MakeHuman's areola mask (the chest girth is taken at their height)."""
    mask = np.asarray(Image.open(get_anny_root_dir() / "data/mpfb2/textures/mpfb_aureolae.jpg")) > 128
    rows, cols = np.nonzero(mask)
    left = cols < np.median(cols)
    centres = [(cols[half].mean(), rows[half].mean()) for half in (left, ~left)]
    return np.array([(c / mask.shape[1], 1 - r / mask.shape[0]) for c, r in centres])


def project(p: np.ndarray, dist: float, cam_h: float, scale: float = 1.0) -> np.ndarray:
    """Pixel coordinates (u, v) and depth of world points."""
    depth = p[..., 1] + dist
    u = (FOCAL * p[..., 0] / depth + WIDTH / 2) * scale
    v = (FOCAL * (cam_h - p[..., 2]) / depth + HEIGHT / 2) * scale
    return np.stack([u, v, depth], -1)


def rasterize(uvz: np.ndarray, faces: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer: nearest face per pixel (-1: none) and its perspective-correct barycentric coordinates."""
    zbuf, fid, bary = np.full(w * h, np.inf), np.full(w * h, -1), np.zeros((w * h, 3))
    for chunk in np.array_split(np.arange(len(faces)), 1 + len(faces) // 8000):
        t = uvz[faces[chunk]]
        lo = np.clip(np.ceil(t[:, :, :2].min(1) - 0.5), 0, [w, h]).astype(int)  # pixel centres inside the bbox
        hi = np.clip(np.floor(t[:, :, :2].max(1) - 0.5), -1, [w - 1, h - 1]).astype(int)
        nx, ny = np.maximum(hi - lo + 1, 0).T
        count = nx * ny
        tri = np.repeat(np.arange(len(chunk)), count)
        k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        px, py = lo[tri, 0] + k % nx[tri], lo[tri, 1] + k // nx[tri]
        a, b, c = (t[tri, i, :2] for i in range(3))
        p = np.stack([px + 0.5, py + 0.5], -1)

        def cross(e: np.ndarray, f: np.ndarray) -> np.ndarray:
            return np.asarray(e[:, 0] * f[:, 1] - e[:, 1] * f[:, 0])

        area = cross(b - a, c - a)
        area[area == 0] = np.nan
        wts = np.stack([cross(b - p, c - p), cross(c - p, a - p), cross(a - p, b - p)], -1) / area[:, None]
        ok = (wts >= 0).all(1)
        wts = wts[ok] / t[tri[ok], :, 2]  # perspective-correct: interpolate in 1 / depth
        inv_depth = wts.sum(1)
        pix, depth, tri_ok = py[ok] * w + px[ok], 1 / inv_depth, chunk[tri[ok]]
        order = np.lexsort((depth, pix))
        first = order[np.r_[True, pix[order][1:] != pix[order][:-1]]]  # the nearest candidate of each pixel
        better = depth[first] < zbuf[pix[first]]
        sel, target = first[better], pix[first[better]]
        zbuf[target], fid[target], bary[target] = depth[sel], tri_ok[sel], wts[sel] / inv_depth[sel, None]
    return fid.reshape(h, w), bary.reshape(h, w, 3)


def background(dist: float, cam_h: float, feet_xy: np.ndarray, s: int) -> np.ndarray:
    """A grey-beige wall and a darker floor with a soft contact shadow under the feet (sRGB, 0..1)."""
    u, v = np.meshgrid((np.arange(WIDTH * s) + 0.5) / s, (np.arange(HEIGHT * s) + 0.5) / s)
    x_n, y_n = (u - WIDTH / 2) / FOCAL, (v - HEIGHT / 2) / FOCAL
    depth = np.where(y_n > 1e-6, cam_h / np.maximum(y_n, 1e-6), np.inf)  # along the ray to the floor
    floor = depth < dist + WALL_BEHIND_M
    wall = np.array([0.74, 0.71, 0.65]) * (0.92 + 0.1 * (1 - v / HEIGHT))[..., None]
    fx, fy = x_n * depth, depth - dist
    d2 = ((fx[..., None] - feet_xy[:, 0]) / 0.07) ** 2 + ((fy[..., None] - feet_xy[:, 1]) / 0.09) ** 2
    shade = 1 - 0.3 * np.exp(-d2.min(-1)) - 0.15 * np.exp(-(fx**2 + fy**2) / 0.3)
    ground = np.array([0.52, 0.48, 0.43]) * (shade * (0.85 + 0.15 * np.clip(fy / 2, -1, 1)))[..., None]
    return np.where(floor[..., None], ground, wall)


def render(v: np.ndarray, faces: np.ndarray, albedo: np.ndarray, dist: float, cam_h: float) -> Any:
    """The body before the wall, lit by a key and a fill light plus ambient, anti-aliased by supersampling."""
    s = SUPERSAMPLE
    fid, bary = rasterize(project(v, dist, cam_h, s), faces, WIDTH * s, HEIGHT * s)
    feet = v[v[:, 2] < 0.03][:, :2]
    img = background(dist, cam_h, feet[:: max(1, len(feet) // 40)], s)
    face_normals = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    vertex_normals = np.zeros_like(v)
    for i in range(3):
        np.add.at(vertex_normals, faces[:, i], face_normals)
    hit = fid >= 0
    corners, weights = faces[fid[hit]], bary[hit][..., None]
    normal = (vertex_normals[corners] * weights).sum(1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    to_camera = np.array([0.0, -dist, cam_h]) - (v[corners] * weights).sum(1)
    normal *= np.sign((normal * to_camera).sum(1, keepdims=True))  # inner faces seen through gaps: as outer ones
    key, fill = (np.clip(normal @ (lt / np.linalg.norm(lt)), 0, None)[:, None] for lt in (KEY_LIGHT, FILL_LIGHT))
    img[hit] = np.clip((albedo[corners] * weights).sum(1) * (0.32 + 0.62 * key + 0.18 * fill), 0, 1)
    img = img.reshape(HEIGHT, s, WIDTH, s, 3).mean((1, 3))
    return Image.fromarray(np.round(img * 255).astype(np.uint8))


def albedo_of(model: Any, v: np.ndarray, dominant: list[str], body: Body) -> np.ndarray:
    """Per-vertex colour: skin, a hair cap on the skull, white eyes with dark irises."""
    colour = np.tile(np.array(body.skin) / 255, (len(v), 1))
    base = model.base_mesh_vertex_indices.numpy()
    eye = (base >= EYE_BASE_VERTICES[0]) & (base <= EYE_BASE_VERTICES[1])
    eye_z, eye_front = v[eye, 2].mean(), v[eye, 1].min()
    head = np.array([d == "head" for d in dominant]) & ~eye
    head_y = (v[head, 1].min() + v[head, 1].max()) / 2
    hairline = eye_z + 0.045 - 0.11 * np.clip((v[:, 1] - eye_front - 0.03) / 0.08, 0, 1)  # lower towards the nape
    face_side = (v[:, 1] < head_y + 0.02) & (np.abs(v[:, 0]) > 0.06) & (v[:, 2] < eye_z + 0.03)  # ears, temples
    colour[head & (v[:, 2] > hairline) & ~face_side] = np.array(body.hair) / 255
    colour[eye] = (0.9, 0.88, 0.84)
    colour[eye & (v[:, 1] < eye_front + 0.006)] = (0.18, 0.12, 0.08)
    return colour


def make_body(model: Any, body: Body, dominant: list[str], out_dir: Path) -> dict[str, Any]:
    """Poses, measures and photographs one body; its truth.json record."""
    faces = model.faces.numpy()
    pheno = dict(gender=body.gender, age=body.age, muscle=body.muscle, weight=body.weight, proportions=body.proportions)
    lo, hi = (np.ptp(model(phenotype_kwargs={**pheno, "height": h})["vertices"][0, :, 2].numpy()) for h in (0, 1))
    pheno["height"] = round(float((body.stature_cm / 100 - lo) / (hi - lo)), 4)  # stature ~linear in it
    heads = model(phenotype_kwargs=pheno)["bone_poses"][0, :, :3, 3]
    dist, cam_h = body.camera
    camera = dict(fx=round(FOCAL, 2), fy=round(FOCAL, 2), cx=WIDTH / 2, cy=HEIGHT / 2, distance_m=dist, height_m=cam_h)
    sex = "male" if body.gender < 0.5 else "female"
    record: dict[str, Any] = dict(id=body.id, sex=sex, anny_phenotype=pheno, skin_srgb=body.skin, hair_srgb=body.hair)
    images = record["images"] = []
    for view, yaw, abduction in VIEWS:
        out = model(pose_parameters=arm_pose(model, heads, abduction), phenotype_kwargs=pheno)
        floor = float(out["vertices"][0, :, 2].min())
        out["vertices"][..., 2] -= floor
        out["bone_poses"][..., 2, 3] -= floor
        if view == "front":
            record.update(measure(model, out, dominant))
        v = out["vertices"][0].double().numpy()
        joints = {b: out["bone_poses"][0, i, :3, 3].double().numpy() for i, b in enumerate(model.bone_labels)}
        albedo = albedo_of(model, v, dominant, body)
        centre = joints["root"] * [1, 1, 0]
        cos, sin = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
        turn = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]])
        v = (v - centre) @ turn.T
        points = {"head_top": v[np.argmax(v[:, 2])]}
        for side in "LR":
            sole = v[np.array([d == f"foot.{side}" for d in dominant]) & (v[:, 2] < 0.02)]
            points[f"heel_{side}"] = sole[np.argmax(sole @ [-sin, cos, 0])]  # along the body's backward direction
            for name, b in JOINTS.items():
                points[f"{name}_joint_{side}"] = (joints[f"{b}.{side}"] - centre) @ turn.T
        file = f"{body.id}_{view}.jpg"
        render(v, faces, albedo, dist, cam_h).save(out_dir / file, quality=88, optimize=True)
        px = {k: [round(float(x), 1) for x in project(p, dist, cam_h)[:2]] for k, p in points.items()}
        images.append(dict(file=file, view=view, yaw_deg=yaw, arm_abduction_deg=abduction, camera=camera, points_px=px))
    print(body.id, record["measurements"])
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/data/fit_bodies")
    parser.add_argument("--only", nargs="*", help="body ids to make (default: all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    model = anny.Anny(skinning_method="lbs").to(dtype=torch.float32)  # rig "anny", topology "anny", "local-ref"
    main_bone = model.vertex_bone_indices.gather(1, model.vertex_bone_weights.argmax(1, keepdim=True))[:, 0]
    dominant = [model.bone_labels[i] for i in main_bone]
    records = [make_body(model, b, dominant, args.out) for b in BODIES if not args.only or b.id in args.only]
    truth = dict(
        generator="tools/make_fit_bodies.py",
        body_model=f"anny {version('anny')} (rig anny, topology anny)",
        licence="CC0-1.0",
        image_size=[WIDTH, HEIGHT],
        vfov_deg=VFOV_DEG,
        conventions=CONVENTIONS,
        bodies=records,
    )
    (args.out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")


if __name__ == "__main__":
    main()
