"""The project's one exception tree. Every error VTO Stream raises on purpose is a VTOError."""

from __future__ import annotations


class VTOError(Exception):
    """Base class of every error raised by VTO Stream."""


class StackError(VTOError):
    """An embedded service (Kafka, Triton, a worker) could not be installed, started or stopped."""


class ConfigError(VTOError):
    """Settings that cannot work (a missing secret); the process refuses to start and says what to set."""


class SerializationError(VTOError):
    """Bytes that do not decode as the expected protobuf message."""


class BadInput(VTOError):
    """A record that can never be processed; it goes to the dead-letter topic with `reason`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InferenceUnavailable(VTOError):
    """Triton is unreachable, overloaded or too slow: backpressure, retried with a bound, never dead-lettered."""
