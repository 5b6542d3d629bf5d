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
