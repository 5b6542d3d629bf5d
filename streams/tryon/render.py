"""One entry point for rendering any catalogue item onto a frame, and what perception each category needs."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from streams.tryon import extremities, face_items, garment, makeup
from streams.tryon.catalogue import Item
from streams.tryon.scene import Rendered, Scene

RENDERERS: dict[str, Callable[[Scene, Item], Rendered]] = {
    "top": garment.render_garment,
    "dress": garment.render_garment,
    "glasses": face_items.render_glasses,
    "hat": face_items.render_hat,
    "earrings": face_items.render_earrings,
    "necklace": face_items.render_necklace,
    "lipstick": makeup.render_lipstick,
    "shoes": extremities.render_shoes,
    "ring": extremities.render_ring,
    "watch": extremities.render_watch,
}


def render(scene: Scene, item: Item | None) -> Rendered:
    """The frame with `item` on; the frame unchanged when there is no item or nothing to put it on."""
    if item is None:
        return Rendered(scene.bgr, np.zeros(scene.bgr.shape[:2], np.float32))
    return RENDERERS[item.category](scene, item)
