"""One entry point for rendering any catalogue item onto a frame, and what perception each category needs."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from streams.tryon import extremities, face_items, garment, makeup
from streams.tryon.catalogue import Item
from streams.tryon.scene import Rendered, Scene

log = logging.getLogger(__name__)

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
    """The frame with `item` on; the frame unchanged when there is no item, nothing to put it on, or a renderer
    fails (logged): a rendering bug costs one item on one frame, never a Triton batch."""
    unchanged = Rendered(scene.bgr, np.zeros(scene.bgr.shape[:2], np.float32))
    if item is None:
        return unchanged
    try:
        return RENDERERS[item.category](scene, item)
    except Exception:
        log.exception("rendering %s item %r failed; the frame goes out without it", item.category, item.id)
        return unchanged
