"""Session tokens: only a token we signed, unexpired, for this very session and with consent lets a record in."""

from __future__ import annotations

import pytest

from streams import tokens
from streams.errors import BadInput

KEY = b"k" * 32
NOW = 1_800_000_000.0


def reason(token: str, session: str = "s1", key: bytes = KEY, now: float = NOW + 10) -> str:
    try:
        tokens.verify(key, token, session, now=now)
    except BadInput as exc:
        return exc.reason
    return "ok"


def test_a_token_minted_for_the_session_is_accepted_until_it_expires() -> None:
    token = tokens.mint(KEY, "s1", ttl_s=60, now=NOW)
    assert reason(token) == "ok"
    assert reason(token, now=NOW + 59) == "ok"
    assert reason(token, now=NOW + 61) == "expired_token"


def test_a_foreign_or_forged_token_is_refused() -> None:
    token = tokens.mint(KEY, "s1", ttl_s=60, now=NOW)
    assert reason(token, session="s2") == "foreign_token"  # another shopper's session
    assert reason(token, key=b"x" * 32) == "invalid_token"  # signed with another key
    head, session, expiry, consent, signature = token.split(".")
    longer = f"{head}.{session}.{int(expiry) + 3600}.{consent}.{signature}"
    assert reason(longer) == "invalid_token"  # expiry extended by the client
    other = tokens.mint(KEY, "s2", ttl_s=60, now=NOW).split(".")[1]
    assert reason(f"{head}.{other}.{expiry}.{consent}.{signature}", session="s2") == "invalid_token"  # re-aimed
    assert reason("") == "missing_token"
    for junk in ("v1", "v2.a.b.c.d", "v1.a.b.c.d", "v1...1.", "ü" * 40, token[:-2] + "üß", "v1.ü.ü.ü.ü"):
        assert reason(junk) == "invalid_token", junk


def test_a_token_without_consent_is_refused_as_such() -> None:
    token = tokens.mint(KEY, "s1", ttl_s=60, consent=False, now=NOW)
    assert reason(token) == "no_consent"
    head, session, expiry, _, signature = token.split(".")
    assert reason(f"{head}.{session}.{expiry}.1.{signature}") == "invalid_token"  # consent cannot be added


def test_a_session_id_with_any_characters_round_trips() -> None:
    for session in ("a.b.c", "ünïcode-session", "x" * 300, "with space/and=signs"):
        assert reason(tokens.mint(KEY, session, ttl_s=60, now=NOW), session=session) == "ok"


@pytest.mark.parametrize("ttl_s", [0, -5])
def test_a_token_minted_already_expired_is_refused(ttl_s: int) -> None:
    assert reason(tokens.mint(KEY, "s1", ttl_s=ttl_s, now=NOW), now=NOW + 1) == "expired_token"
