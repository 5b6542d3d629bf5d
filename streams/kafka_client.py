"""How every client of ours connects to Kafka: as one principal (`VTO_KAFKA_USER`), over SASL/SCRAM-SHA-512 and
TLS (`VTO_KAFKA_SECURITY=SASL_SSL`, the default) or in plaintext. One function per client library:
confluent-kafka (producers, consumers, admin), aiokafka (the worker's transactional producer) and Faust (the
worker's consumer). What each principal may do is in streams/stack/kafka.py (`acl_bindings`)."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

from streams.errors import ConfigError
from streams.settings import Settings

MECHANISM = "SCRAM-SHA-512"


def users_file(settings: Settings) -> Path:
    return settings.run_dir / "kafka-tls" / "kafka-users.json"


def ca_file(settings: Settings) -> Path:
    return settings.kafka_ca_file or settings.run_dir / "kafka-tls" / "ca.pem"


def password(settings: Settings) -> str:
    explicit = settings.kafka_password.get_secret_value()
    if explicit:
        return explicit
    try:
        return str(json.loads(users_file(settings).read_text())[settings.kafka_user])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"no Kafka password for {settings.kafka_user}: set VTO_KAFKA_PASSWORD "
            f"(the embedded stack writes {users_file(settings)} on `vto stack up`)"
        ) from exc


def secure(settings: Settings) -> bool:
    return settings.kafka_security == "SASL_SSL"


def confluent(settings: Settings, **extra: Any) -> dict[str, Any]:
    """A confluent-kafka (librdkafka) configuration: bootstrap servers, authentication, then `extra`."""
    conf: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap}
    if secure(settings):
        conf |= {
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": MECHANISM,
            "sasl.username": settings.kafka_user,
            "sasl.password": password(settings),
            "ssl.ca.location": str(ca_file(settings)),
        }
    return conf | extra


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """Verifies the broker's certificate against our CA, hostname (or IP) included."""
    return ssl.create_default_context(cafile=str(ca_file(settings)))


def aiokafka(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of an aiokafka client."""
    kwargs: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap.split(",")}
    if secure(settings):
        kwargs |= {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": settings.kafka_user,
            "sasl_plain_password": password(settings),
            "ssl_context": ssl_context(settings),
        }
    return kwargs


def faust_credentials(settings: Settings) -> Any:
    """Faust's `broker_credentials` (None in plaintext)."""
    if not secure(settings):
        return None
    import faust

    return faust.SASLCredentials(
        username=settings.kafka_user,
        password=password(settings),
        ssl_context=ssl_context(settings),
        mechanism=MECHANISM,
    )
