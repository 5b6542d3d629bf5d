"""What each catalogue category needs from perception, so a worker asks Triton for exactly that (and nothing
more) without importing any renderer."""

from __future__ import annotations

# Perception besides the pose that each category's renderer uses (the worker asks Triton for exactly these).
FEATURES: dict[str, frozenset[str]] = {
    "top": frozenset({"mask"}),
    "dress": frozenset({"mask"}),
    "glasses": frozenset({"face"}),
    "hat": frozenset({"face"}),
    "earrings": frozenset({"face"}),
    "necklace": frozenset({"face"}),
    "lipstick": frozenset({"face"}),
    "shoes": frozenset(),
    "ring": frozenset({"hands"}),
    "watch": frozenset({"hands"}),
}

# What size advice needs besides the renderer's, for items with a size chart: the face for the iris scale (when
# the shopper gave no height or the feet are out of frame), the mask for girths, the hands for ring sizes.
FIT_FEATURES: dict[str, frozenset[str]] = {
    "top": frozenset({"face", "mask"}),
    "dress": frozenset({"face", "mask"}),
    "hat": frozenset({"face"}),
    "shoes": frozenset({"face"}),
    "ring": frozenset({"face", "hands"}),
    "watch": frozenset({"face", "hands"}),
}
