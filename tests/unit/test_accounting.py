"""`vto account` without a broker says so in one line instead of a traceback."""

from __future__ import annotations

import pytest

from streams.accounting import account
from streams.errors import VTOError
from streams.settings import Settings


def test_account_without_a_reachable_broker_is_a_clear_error() -> None:
    with pytest.raises(VTOError, match=r"Kafka is not reachable at 127\.0\.0\.1:1"):
        account(Settings(kafka_bootstrap="127.0.0.1:1", kafka_security="PLAINTEXT"), "s1")
