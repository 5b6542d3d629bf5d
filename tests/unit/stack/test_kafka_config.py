import json
from pathlib import Path

from streams.settings import Settings
from streams.stack import kafka


def test_topics_are_declared_with_partitions_retention_and_sizes(tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path, topic_partitions=12, frame_retention_ms=30_000)
    specs = {t.topic: t for t in kafka.topic_specs(settings)}
    assert set(specs) == {
        settings.frames_topic,
        settings.rendered_topic,
        settings.replies_topic,
        settings.control_topic,
        settings.events_topic,
        settings.dead_letter_topic,
        settings.state_topic,
        settings.outcomes_topic,
        settings.analytics_items_topic,
        settings.analytics_funnel_topic,
        settings.analytics_also_tried_topic,
        settings.analytics_cotries_topic,
        settings.analytics_state_topic,
    }
    frames = specs[settings.frames_topic]
    assert frames.num_partitions == 12 and frames.replication_factor == 1
    assert frames.config["retention.ms"] == "30000"
    assert int(frames.config["max.message.bytes"]) >= settings.max_image_bytes
    assert specs[settings.control_topic].config["cleanup.policy"] == "compact,delete"
    assert specs[settings.control_topic].num_partitions == 12  # co-partitioned with frames by session id
    state = specs[settings.state_topic]  # read back by partition number on takeover: must match the frames
    assert state.num_partitions == 12 and "compact" in state.config["cleanup.policy"]
    assert int(specs[settings.dead_letter_topic].config["max.message.bytes"]) > int(frames.config["max.message.bytes"])
    replies = specs[settings.replies_topic]  # a partition per gateway instance; images: the frames' retention
    assert replies.num_partitions == settings.gateway_reply_partitions and replies.config == frames.config
    events = specs[settings.events_topic]  # erasure tombstones each event: compacted, on the session's partition
    assert events.num_partitions == 12 and events.config["cleanup.policy"] == "compact,delete"
    # Erasure reads a session's event count from its state: events leave the disk (retention + a segment) first.
    assert int(events.config["retention.ms"]) + int(events.config["segment.ms"]) <= int(state.config["retention.ms"])
    # Analytics reads its state back by events partition, and co-tries by the same numbers.
    for name in (settings.analytics_state_topic, settings.analytics_cotries_topic):
        assert specs[name].num_partitions == 12
    assert "compact" in specs[settings.analytics_state_topic].config["cleanup.policy"]


def test_every_topic_leaves_the_disk_soon_after_its_retention(tmp_path: Path) -> None:
    """Without segment.ms a segment is only rolled at 1 GB or 7 days, so nothing in it is deleted before then:
    dead-lettered images would stay a week. Each topic rolls well within its retention (or an hour)."""
    settings = Settings(run_dir=tmp_path, frame_retention_ms=60_000)
    props = dict(line.split("=", 1) for line in kafka.write_config(settings).read_text().splitlines())
    check_s = int(props["log.retention.check.interval.ms"]) / 1000
    for spec in kafka.topic_specs(settings):
        retention, segment = int(spec.config["retention.ms"]), int(spec.config["segment.ms"])
        assert segment <= max(retention // 2, 3_600_000 if retention >= 86_400_000 else 10_000), spec.topic
    frames = {t.topic: t for t in kafka.topic_specs(settings)}[settings.frames_topic]
    worst_s = (int(frames.config["retention.ms"]) + int(frames.config["segment.ms"])) / 1000 + check_s
    assert worst_s <= 100  # a 60 s frame retention keeps frames on disk 100 s at most


def test_broker_config_is_single_node_kraft_on_configured_ports(tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path, kafka_bootstrap="127.0.0.1:19999", kafka_controller_port=19998)
    props = dict(line.split("=", 1) for line in kafka.write_config(settings).read_text().splitlines())
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "SASL_SSL://127.0.0.1:19999,CONTROLLER://127.0.0.1:19998"
    assert props["auto.create.topics.enable"] == "false"
    assert props["offsets.topic.replication.factor"] == "1"
    assert int(props["message.max.bytes"]) > settings.max_message_bytes
    assert props["log.dirs"] == str(tmp_path / "kafka-data")


def test_the_embedded_broker_authenticates_encrypts_and_denies_what_no_acl_allows(tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path)
    config = kafka.write_config(settings)
    props = dict(line.split("=", 1) for line in config.read_text().splitlines())
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert config.stat().st_mode & 0o777 == 0o600  # it holds the admin's password
    key_and_chain = (tmp_path / "kafka-tls" / "broker.pem").read_text()
    assert key_and_chain.startswith("-----BEGIN PRIVATE KEY-----") and key_and_chain.count("CERTIFICATE-----") == 4
    assert (tmp_path / "kafka-tls" / "broker.pem").stat().st_mode & 0o777 == 0o600
    users = json.loads((tmp_path / "kafka-tls" / "kafka-users.json").read_text())
    assert set(users) == {"vto-admin", "vto-worker", "vto-client", "vto-analytics"} and len(set(users.values())) == 4
    grants: dict[str, set[tuple[str, str]]] = {}
    for b in kafka.acl_bindings(settings):
        assert b.permission_type.name == "ALLOW" and b.host == "*"
        grants.setdefault(b.principal, set()).add((b.name, b.operation.name))
    s = settings
    assert grants["User:vto-client"] == {  # exactly: frames and control in, rendered frames and replies out
        *((t, op) for t in (s.frames_topic, s.control_topic) for op in ("WRITE", "DESCRIBE")),
        *((t, op) for t in (s.rendered_topic, s.replies_topic) for op in ("READ", "DESCRIBE")),
        ("vto-client", "READ"),
    }
    own = (
        s.analytics_items_topic,
        s.analytics_funnel_topic,
        s.analytics_also_tried_topic,
        s.analytics_cotries_topic,
        s.analytics_state_topic,
    )
    assert grants["User:vto-analytics"] == {  # exactly: events in, its own topics, dead letters out; no frame
        (s.events_topic, "READ"),
        (s.events_topic, "DESCRIBE"),
        *((t, op) for t in own for op in ("READ", "WRITE", "DESCRIBE")),
        (s.dead_letter_topic, "WRITE"),
        (s.dead_letter_topic, "DESCRIBE"),
        ("vto-analytics", "READ"),
        ("vto-analytics.", "WRITE"),
        ("vto-analytics.", "DESCRIBE"),
    }
    worker = grants["User:vto-worker"]
    assert {t for t, op in worker if op == "READ"} == {
        s.frames_topic,
        s.control_topic,
        s.state_topic,
        s.worker_group,
        f"{s.worker_group}.",
    }
    assert {t for t, op in worker if op == "WRITE"} == {
        s.rendered_topic,
        s.replies_topic,
        s.events_topic,
        s.dead_letter_topic,
        s.outcomes_topic,
        s.state_topic,
        f"{s.worker_group}.",
    }
    assert set(grants) == {"User:vto-client", "User:vto-analytics", "User:vto-worker"}  # vto-admin: super user


def test_plaintext_stays_possible_for_a_trusted_network(tmp_path: Path) -> None:
    settings = Settings(run_dir=tmp_path, kafka_security="PLAINTEXT", kafka_bootstrap="127.0.0.1:19999")
    props = dict(line.split("=", 1) for line in kafka.write_config(settings).read_text().splitlines())
    assert props["listeners"].startswith("PLAINTEXT://127.0.0.1:19999") and "sasl.enabled.mechanisms" not in props
