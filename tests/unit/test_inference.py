import socket

import pytest

from streams.errors import InferenceUnavailable
from streams.inference import TritonTryOn, TryOnRequest


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_absent_triton_is_retried_with_a_bound_then_unavailable() -> None:
    retries: list[int] = []
    errors: list[str] = []
    client = TritonTryOn(
        f"127.0.0.1:{_closed_port()}",
        "tryon",
        timeout_s=2.0,
        retries=2,
        on_retry=lambda: retries.append(1),
        on_error=errors.append,
    )
    try:
        with pytest.raises(InferenceUnavailable, match="tryon"):
            await client.infer(TryOnRequest(b"\xff\xd8\xff"))
    finally:
        await client.close()
    assert len(retries) == 2
    assert errors == ["UNAVAILABLE"] * 3  # every failed attempt, by its gRPC status
