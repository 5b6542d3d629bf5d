"""Session ids as analytics keeps them: a keyed hash (HMAC-SHA256, the first 128 bits in hex), the same for a
session everywhere analytics stores it (state, Parquet), irreversible without the key (VTO_ANALYTICS_SECRET)."""

from __future__ import annotations

import hashlib
import hmac


def pseudonym(key: bytes, session_id: str) -> str:
    return hmac.new(key, session_id.encode(), hashlib.sha256).hexdigest()[:32]
