import asyncio
import socket
from unittest.mock import AsyncMock

import pytest

from streams.errors import InferenceUnavailable
from streams.inference import CHANNEL_MAX_AGE_S, TritonTryOn, TryOnRequest


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


async def test_the_channel_is_renewed_so_that_triton_replicas_added_since_get_requests() -> None:
    client = TritonTryOn(f"127.0.0.1:{_closed_port()}", "tryon", timeout_s=0.01, retries=0)
    first = client.client
    first.close = AsyncMock()  # type: ignore[method-assign]
    with pytest.raises(InferenceUnavailable):
        await client.infer(TryOnRequest(b"\xff\xd8\xff"))
    assert client.client is first  # young: kept
    client.created -= CHANNEL_MAX_AGE_S + 1
    with pytest.raises(InferenceUnavailable):
        await client.infer(TryOnRequest(b"\xff\xd8\xff"))  # an old channel: this call goes on a new one
    second = client.client
    assert second is not first and list(client.retired.values()) == [first]
    await asyncio.sleep(0.1)  # the old channel closes once its calls can no longer be running
    first.close.assert_awaited_once()
    assert not client.retired
    await client.close()


async def test_closing_the_client_closes_channels_still_waiting_to_close() -> None:
    client = TritonTryOn(f"127.0.0.1:{_closed_port()}", "tryon", timeout_s=5.0, retries=0)
    first = client.client
    first.close = AsyncMock()  # type: ignore[method-assign]
    client.created -= CHANNEL_MAX_AGE_S + 1
    client._renewed()
    await client.close()
    first.close.assert_awaited_once()
