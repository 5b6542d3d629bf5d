"""W3C trace context: kept from the client's frame to everything the worker writes about it."""

import pytest

from streams import tracing

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_the_worker_continues_the_clients_trace_with_its_own_span() -> None:
    child = tracing.continue_trace([("traceparent", PARENT.encode())], "vto.frames.v1", 3, 42)
    version, trace_id, span_id, flags = child.split("-")
    assert (version, trace_id, flags) == ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01")
    assert span_id != "00f067aa0ba902b7" and len(span_id) == 16
    # The same record handled again (after a takeover) writes the same span; another record, another span.
    assert tracing.continue_trace([("traceparent", PARENT.encode())], "vto.frames.v1", 3, 42) == child
    assert tracing.continue_trace([("traceparent", PARENT.encode())], "vto.frames.v1", 3, 43) != child


def test_unsampled_flags_are_kept_and_the_header_name_is_case_insensitive() -> None:
    unsampled = PARENT[:-2] + "00"
    assert tracing.continue_trace([("TraceParent", unsampled.encode())], "t", 0, 0).endswith("-00")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id is invalid
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero span id is invalid
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff is forbidden
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # version 00 has no more fields
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
    ],
)
def test_a_missing_or_malformed_traceparent_starts_a_trace_of_its_own(value: str) -> None:
    child = tracing.continue_trace([("traceparent", value.encode())] if value else [], "t", 1, 2)
    assert tracing.parse(child) is not None
    assert tracing.trace_id(child) != "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_future_version_with_more_fields_is_still_understood() -> None:
    assert tracing.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes") is not None


def test_new_traceparents_are_valid_and_distinct() -> None:
    a, b = tracing.new_traceparent(), tracing.new_traceparent()
    assert tracing.parse(a) and tracing.parse(b) and a != b
