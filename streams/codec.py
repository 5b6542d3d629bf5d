"""One place where bytes become messages: protobuf decoding with the project's SerializationError."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from streams.errors import SerializationError

M = TypeVar("M", bound=Message)


def decode(message_type: type[M], data: bytes | None) -> M:
    """Parse `data` as `message_type`; SerializationError when it is absent or not that message."""
    if not data:
        raise SerializationError(f"empty record, expected {message_type.DESCRIPTOR.full_name}")
    try:
        return message_type.FromString(data)
    except (DecodeError, ValueError) as exc:
        raise SerializationError(f"not a {message_type.DESCRIPTOR.full_name}: {exc}") from exc
