"""Signed session tokens: a client can publish into its own session only, and only with the shopper's consent.

The shop's backend (or the gateway) mints a token when a shopper opens the try-on and consents to the camera
being processed; the client sends it with every Frame and SessionControl (`session_token`). The worker checks it
before anything else about the record, and refuses with a reason (dead letter) a token that is missing,
malformed or forged (`invalid_token`), expired (`expired_token`), signed for another session (`foreign_token`),
or that records no consent (`no_consent`: the frame is refused and its image is not kept, not even as a dead
letter).

    v1.<session id, base64url>.<expiry, unix seconds>.<consent 1|0>.<HMAC-SHA256 of the part before, base64url>

The key is `VTO_SESSION_SECRET` or the file `VTO_SESSION_SECRET_FILE` (`vto stack up` writes a random one in the
run directory); `vto token --session S` mints one from it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from streams.errors import BadInput

VERSION = "v1"
MIN_KEY_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def mint(key: bytes, session_id: str, ttl_s: float, consent: bool = True, now: float | None = None) -> str:
    """A token for `session_id`, valid `ttl_s` seconds from now."""
    expiry = int((time.time() if now is None else now) + ttl_s)
    payload = f"{VERSION}.{_b64(session_id.encode())}.{expiry}.{int(consent)}"
    return f"{payload}.{_sign(key, payload)}"


def verify(key: bytes, token: str, session_id: str, now: float | None = None, require_consent: bool = True) -> int:
    """Raise BadInput unless `token` is ours, unexpired, for `session_id`, with the shopper's consent (unless not
    required: ending or erasing a session); return its expiry (unix seconds)."""
    if not token:
        raise BadInput("missing_token", "the record carries no session_token")
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != VERSION:
        raise BadInput("invalid_token", "not a v1 session token")
    payload, signature = ".".join(parts[:4]), parts[4]
    # Compared as bytes: compare_digest refuses str with non-ASCII characters (a hostile token has them).
    if not hmac.compare_digest(_sign(key, payload).encode(), signature.encode(errors="replace")):
        raise BadInput("invalid_token", "the token's signature does not match")
    try:
        signed_for, expiry, consent = _unb64(parts[1]).decode(), int(parts[2]), parts[3]
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:  # signed by us, so only a bug gets here
        raise BadInput("invalid_token", f"unreadable token: {exc}") from exc
    if (time.time() if now is None else now) > expiry:
        raise BadInput("expired_token", f"the token expired at {expiry}")
    if signed_for != session_id:
        raise BadInput("foreign_token", "the token was issued for another session")
    if require_consent and consent != "1":
        raise BadInput("no_consent", "the shopper has not consented to the camera being processed")
    return expiry
