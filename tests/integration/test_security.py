"""The embedded broker as a platform would run it: clients authenticate (SASL/SCRAM over TLS, our CA), and each
principal may do what its ACLs allow and nothing else. Real broker, real clients."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from streams import kafka_client
from streams.settings import Settings

pytestmark = pytest.mark.integration


def as_user(settings: Settings, user: str, **changes: object) -> Settings:
    return settings.model_copy(update={"kafka_user": user, **changes})


def produce_error(settings: Settings, topic: str) -> str | None:
    """The error code name a produce to `topic` ends with, None if the broker took it."""
    errors: list[str] = []
    producer = Producer(kafka_client.confluent(settings, **{"message.timeout.ms": 10000, "log_level": 0}))
    producer.produce(topic, key=b"acl-test", value=b"x", on_delivery=lambda err, _: err and errors.append(err.name()))
    producer.flush(15)
    return errors[0] if errors else None


def read_error(settings: Settings, topic: str) -> str | None:
    """The error code name reading `topic` gives, None once it has read a record ("nothing read" if neither)."""
    group = f"{settings.kafka_user}-acl-test-{uuid.uuid4().hex[:6]}"
    consumer = Consumer(kafka_client.confluent(settings, **{"group.id": group, "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    try:
        for _ in range(20):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() and msg.error().code() != KafkaError._PARTITION_EOF:
                return str(msg.error().name())
            if msg is not None and not msg.error():
                return None
        return "nothing read"
    finally:
        consumer.close()


def test_each_principal_may_do_what_its_acls_allow_and_nothing_else(stack: Settings) -> None:
    client, analytics = as_user(stack, "vto-client"), as_user(stack, "vto-analytics")
    assert produce_error(client, stack.frames_topic) is None  # a shopper's app sends frames
    assert read_error(client, stack.frames_topic) == "TOPIC_AUTHORIZATION_FAILED"  # but sees no one's camera
    assert produce_error(client, stack.state_topic) == "TOPIC_AUTHORIZATION_FAILED"  # nor tampers with sessions
    assert produce_error(client, stack.events_topic) == "TOPIC_AUTHORIZATION_FAILED"  # but forges no analytics
    assert read_error(client, stack.events_topic) == "TOPIC_AUTHORIZATION_FAILED"  # nor reads them
    assert read_error(client, stack.state_topic) == "TOPIC_AUTHORIZATION_FAILED"  # nor anyone's body data
    assert produce_error(as_user(stack, "vto-admin"), stack.events_topic) is None  # something to read back
    assert read_error(analytics, stack.events_topic) is None  # analytics read events...
    assert read_error(analytics, stack.frames_topic) == "TOPIC_AUTHORIZATION_FAILED"  # ...and never a camera frame
    assert produce_error(analytics, stack.events_topic) == "TOPIC_AUTHORIZATION_FAILED"  # read-only
    worker = as_user(stack, "vto-worker")
    assert produce_error(worker, stack.frames_topic) == "TOPIC_AUTHORIZATION_FAILED"  # workers only consume frames


def test_a_client_without_valid_credentials_or_tls_gets_nothing(stack: Settings) -> None:
    forged = as_user(stack, "vto-admin", kafka_password=SecretStr("not-the-password"))
    errors: list[str] = []
    admin = AdminClient(
        kafka_client.confluent(forged, **{"log_level": 0, "error_cb": lambda e: errors.append(e.name())})
    )
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=10)
    admin.poll(1)  # delivers the client's errors
    assert "_AUTHENTICATION" in errors, errors
    plaintext = {"bootstrap.servers": stack.kafka_bootstrap, "log_level": 0, "socket.timeout.ms": 3000}
    with pytest.raises(KafkaException):  # the listener speaks TLS only
        AdminClient(plaintext).list_topics(timeout=5)
