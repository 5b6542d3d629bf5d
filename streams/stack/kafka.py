"""A single-node Apache Kafka 4.x in KRaft mode, its jars resolved from Maven Central (FIELD_NOTES §7).

`ensure_installed` resolves the broker's classpath with Maven once (cached under .cache/kafka/<version>);
`start` formats the storage on first use, launches `kafka.Kafka`, waits until an AdminClient metadata call
answers, then creates the project's topics explicitly.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._acl import AclBinding, AclOperation, AclPermissionType
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
from confluent_kafka.cimpl import NewTopic

from streams import kafka_client
from streams.errors import StackError
from streams.settings import Settings
from streams.stack import certs
from streams.stack.procs import Service, wait_until

POM = Path(__file__).with_name("kafka-pom.xml")
ADMIN = "vto-admin"
ScramLoginModule = "org.apache.kafka.common.security.scram.ScramLoginModule"
LOG4J = """status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = OUT
logger.statechange.name = state.change.logger
logger.statechange.level = warn
"""


def libs_dir(settings: Settings) -> Path:
    return settings.cache_dir / "kafka" / settings.kafka_version / "libs"


def ensure_installed(settings: Settings) -> Path:
    """Resolve kafka_2.13 and its runtime dependencies (plus the SLF4J binding) into the cache."""
    libs = libs_dir(settings)
    if any(libs.glob("kafka_2.13-*.jar")):
        return libs
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise StackError("the embedded Kafka needs a JDK 17+ (`java`) and Maven (`mvn`) on PATH")
    tmp = libs.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    result = subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            f"-Dkafka.version={settings.kafka_version}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(f"Maven could not resolve Kafka {settings.kafka_version}:\n{result.stdout[-3000:]}")
    tmp.rename(libs)
    return libs


def service(settings: Settings) -> Service:
    return Service("kafka", settings.run_dir)


def _port(settings: Settings) -> int:
    return int(settings.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1])


def security_props(settings: Settings) -> dict[str, str]:
    """Clients on SASL_SSL (SCRAM-SHA-512 over TLS with the embedded CA), authorization by ACLs: nothing is
    allowed that an ACL does not allow (`acl_bindings`). The controller listener stays on the loopback in
    plaintext for the node's own controller traffic (its principal, ANONYMOUS, is a super user: see
    docs/security.md)."""
    port, ctl = _port(settings), settings.kafka_controller_port
    if not kafka_client.secure(settings):
        return {
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctl}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
        }
    ca_file, broker_file = certs.ensure(settings.run_dir)
    admin_password = certs.users(settings.run_dir)[0][ADMIN]
    jaas = f'{ScramLoginModule} required username="{ADMIN}" password="{admin_password}";'
    return {
        "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctl}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": kafka_client.MECHANISM,
        "sasl.mechanism.inter.broker.protocol": kafka_client.MECHANISM,
        f"listener.name.sasl_ssl.{kafka_client.MECHANISM.lower()}.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(broker_file),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca_file),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN};User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
    }


def write_config(settings: Settings) -> Path:
    data = settings.run_dir / "kafka-data"
    ctl = settings.kafka_controller_port
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{ctl}",
        **security_props(settings),
        "controller.listener.names": "CONTROLLER",
        "log.dirs": str(data),
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        # One node: every internal topic has one replica; few partitions make the first group join fast.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        # A dead worker's open batch is aborted when its transaction times out (VTO_TRANSACTION_TIMEOUT_S): look
        # every second, not every 10 s, so committed readers wait for it no longer than they must.
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
        "message.max.bytes": str(settings.max_message_bytes + 65536),
        "replica.fetch.max.bytes": str(settings.max_message_bytes + 65536),
        "log.retention.check.interval.ms": "10000",
        "num.network.threads": "2",
        "num.io.threads": "2",
    }
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    config = settings.run_dir / "kafka-server.properties"
    descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the admin's password
    with os.fdopen(descriptor, "w") as file:
        file.write("".join(f"{k}={v}\n" for k, v in props.items()))
    (settings.run_dir / "kafka-log4j2.properties").write_text(LOG4J)
    return config


def _java(settings: Settings, main: str, *args: str, heap: str = "256m") -> list[str]:
    java = str(Path(os.environ["JAVA_HOME"]) / "bin" / "java") if "JAVA_HOME" in os.environ else "java"
    return [
        java,
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={settings.run_dir / 'kafka-log4j2.properties'}",
        "-cp",
        f"{libs_dir(settings)}/*",
        main,
        *args,
    ]


def as_admin(settings: Settings) -> Settings:
    """The stack's own operations (topics, ACLs) run as the admin principal, whoever runs them."""
    if settings.kafka_user == ADMIN or settings.kafka_password.get_secret_value():
        return settings
    return settings.model_copy(update={"kafka_user": ADMIN})


def admin(settings: Settings) -> AdminClient:
    # log_level 0: readiness polls expect "connection refused" while the broker starts; errors still raise.
    return AdminClient(kafka_client.confluent(settings, **{"socket.timeout.ms": 3000, "log_level": 0}))


def ready(settings: Settings) -> bool:
    return bool(admin(settings).list_topics(timeout=2).brokers)


def topic_specs(settings: Settings) -> list[NewTopic]:
    """Every topic of the product with its partitions and configs; created explicitly, never auto-created."""
    frames = {
        "retention.ms": str(settings.frame_retention_ms),
        # A record leaves the disk when its segment is rolled (segment.ms) and then older than retention.ms, at the
        # next check (log.retention.check.interval.ms, 10 s): so at most ~1.5 x retention + 10 s.
        "segment.ms": str(max(settings.frame_retention_ms // 2, 10_000)),
        "max.message.bytes": str(settings.max_message_bytes),
        "cleanup.policy": "delete",
    }
    day = str(24 * 3600 * 1000)
    hour = str(3600 * 1000)  # segments of the day-long topics: gone within a day and an hour
    n = settings.topic_partitions
    return [
        NewTopic(settings.frames_topic, n, 1, config=frames),
        NewTopic(settings.rendered_topic, n, 1, config=frames),
        # Rendered frames of browser sessions, on the partition of the gateway instance holding each session (the
        # frame names it): a gateway reads its own partition only, not every session's frames.
        NewTopic(settings.replies_topic, settings.gateway_reply_partitions, 1, config=frames),
        # The latest control record per session is that session's state: compacted, and old sessions expire.
        NewTopic(
            settings.control_topic,
            n,
            1,
            config={"cleanup.policy": "compact,delete", "retention.ms": day, "segment.ms": hour},
        ),
        # Try-on events keyed <session_id>/<n> on the session's frames partition: compacted so that erasure's
        # tombstones remove a session's events (from disk within ~2 h: hourly segments, compaction lag 1 h). Sinks
        # have ~a day to consume them (the warehouse is theirs); they leave the disk (retention + a segment) before
        # the session state erasure reads their count from.
        NewTopic(
            settings.events_topic,
            n,
            1,
            config={
                "cleanup.policy": "compact,delete",
                "retention.ms": str(23 * 3600 * 1000),
                "segment.ms": hour,
                "max.compaction.lag.ms": hour,
                "min.cleanable.dirty.ratio": "0.1",
            },
        ),
        # One FrameOutcome per frames record (no image): what `vto account` adds up.
        NewTopic(settings.outcomes_topic, n, 1, config={"retention.ms": day, "segment.ms": hour}),
        # One record per live session (tracking and filter state, no image): compacted, co-partitioned with
        # the frames (same partition number), quickly compacted so a takeover reads little; idle sessions
        # expire after a day. No image; it does hold filtered body and face keypoints (docs/privacy.md).
        NewTopic(
            settings.state_topic,
            n,
            1,
            config={
                "cleanup.policy": "compact,delete",
                "retention.ms": day,
                "segment.ms": "60000",
                "min.cleanable.dirty.ratio": "0.1",
                "max.compaction.lag.ms": "60000",
            },
        ),
        # Analytics (docs/analytics.md). Its state: open windows and remembered sessions (pseudonyms, no personal
        # data), on the partition of the events (or co-tries) partition they belong to; each entry is tombstoned
        # when its window closes or its session is forgotten, so compaction keeps it small; an entry not rewritten
        # for 35 days expires (longer than the 28 days of co-tries an item's recommendations count).
        NewTopic(
            settings.analytics_state_topic,
            n,
            1,
            config={
                "cleanup.policy": "compact,delete",
                "retention.ms": str(35 * 24 * 3600 * 1000),
                "segment.ms": "60000",
                "min.cleanable.dirty.ratio": "0.1",
                "max.compaction.lag.ms": "60000",
            },
        ),
        # Co-try-ons keyed by item, from the events partitions to the owner of the item's recommendations.
        NewTopic(settings.analytics_cotries_topic, n, 1, config={"retention.ms": day, "segment.ms": hour}),
        # Aggregates: the latest record per window (compacted), kept 35 days; recommendations: the latest per item,
        # gone 35 days after an item was last tried with another (its co-tries count 28 days).
        *(
            NewTopic(
                name,
                n,
                1,
                config={
                    "cleanup.policy": "compact,delete",
                    "retention.ms": str(35 * 24 * 3600 * 1000),
                    "segment.ms": day,
                },
            )
            for name in (
                settings.analytics_items_topic,
                settings.analytics_funnel_topic,
                settings.analytics_also_tried_topic,
            )
        ),
        # Dead letters keep the original record, face included: one day for triage, then gone (docs/privacy.md).
        NewTopic(
            settings.dead_letter_topic,
            1,
            1,
            config={
                "retention.ms": day,
                "segment.ms": hour,
                "max.message.bytes": str(2 * settings.max_message_bytes),
            },
        ),
    ]


def acl_bindings(settings: Settings) -> list[AclBinding]:
    """Who may do what, nothing more (the broker denies whatever no ACL allows):
    - vto-worker: read frames, control and states; write rendered frames, events, dead letters, outcomes and
      states; its consumer group and transactional ids;
    - vto-client (the browser gateway, or a trusted app): write frames and control records, read rendered frames
      and the gateway replies;
    - vto-analytics: read try-on events; read and write its own topics (aggregates, recommendations, co-tries,
      state); its consumer group and transactional ids.
    vto-admin (the stack itself, operators, `vto account`) is a super user."""
    topic, group, txn = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
    literal, prefixed = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
    read, write, describe = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE
    s = settings
    allowed = {
        "vto-worker": [
            *(
                (topic, name, literal, op)
                for name in (s.frames_topic, s.control_topic, s.state_topic)
                for op in (read, describe)
            ),
            *(
                (topic, name, literal, op)
                for name in (
                    s.rendered_topic,
                    s.replies_topic,
                    s.events_topic,
                    s.dead_letter_topic,
                    s.outcomes_topic,
                    s.state_topic,
                )
                for op in (write, describe)
            ),
            (group, s.worker_group, literal, read),
            (group, f"{s.worker_group}.", prefixed, read),
            (txn, f"{s.worker_group}.", prefixed, write),
            (txn, f"{s.worker_group}.", prefixed, describe),
        ],
        "vto-client": [
            *((topic, name, literal, op) for name in (s.frames_topic, s.control_topic) for op in (write, describe)),
            *((topic, name, literal, op) for name in (s.rendered_topic, s.replies_topic) for op in (read, describe)),
            (group, "vto-client", prefixed, read),
        ],
        "vto-analytics": [
            (topic, s.events_topic, literal, read),
            (topic, s.events_topic, literal, describe),
            *(
                (topic, name, literal, op)
                for name in (
                    s.analytics_items_topic,
                    s.analytics_funnel_topic,
                    s.analytics_also_tried_topic,
                    s.analytics_cotries_topic,
                    s.analytics_state_topic,
                )
                for op in (read, write, describe)
            ),
            (topic, s.dead_letter_topic, literal, write),
            (topic, s.dead_letter_topic, literal, describe),
            (group, s.analytics_group, prefixed, read),
            (txn, f"{s.analytics_group}.", prefixed, write),
            (txn, f"{s.analytics_group}.", prefixed, describe),
        ],
    }
    unique = dict.fromkeys((user, *rule) for user, rules in allowed.items() for rule in rules)
    return [
        AclBinding(restype, name, pattern, f"User:{user}", "*", op, AclPermissionType.ALLOW)
        for user, restype, name, pattern, op in unique
    ]


def create_acls(settings: Settings) -> None:
    client = admin(settings)  # held until the futures are done: a collected client cancels them
    for binding, future in client.create_acls(acl_bindings(settings), request_timeout=30).items():
        try:
            future.result()
        except Exception as exc:
            raise StackError(f"could not create the ACL {binding}: {exc}") from exc


def record_limits(settings: Settings) -> dict[str, int]:
    """The largest record each topic takes: its max.message.bytes, else the broker's message.max.bytes."""
    broker = settings.max_message_bytes + 65536  # `write_config`'s message.max.bytes
    return {t.topic: int((t.config or {}).get("max.message.bytes", broker)) for t in topic_specs(settings)}


def create_topics(settings: Settings) -> list[str]:
    """Create missing topics and bring existing ones to their declared configs (a new release may change them:
    retention, compaction); return the names created."""
    client = admin(settings)
    existing = set(client.list_topics(timeout=10).topics)
    specs = topic_specs(settings)
    wanted = [t for t in specs if t.topic not in existing]
    present = [
        ConfigResource(
            ResourceType.TOPIC,
            t.topic,
            incremental_configs=[
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in (t.config or {}).items()
            ],
        )
        for t in specs
        if t.topic in existing
    ]
    futures = {**(client.create_topics(wanted, request_timeout=30) if wanted else {})}
    if present:
        futures.update({r.name: f for r, f in client.incremental_alter_configs(present).items()})
    for name, future in futures.items():
        try:
            future.result()
        except Exception as exc:
            raise StackError(f"could not create or configure topic {name}: {exc}") from exc
    return [t.topic for t in wanted]


def start(settings: Settings, timeout: float = 90.0) -> None:
    ensure_installed(settings)
    data = settings.run_dir / "kafka-data"
    scram: list[str] = []
    if kafka_client.secure(settings):
        passwords, made = certs.users(settings.run_dir)
        if made:  # SCRAM users are written when the storage is formatted: new users, new (empty) storage
            shutil.rmtree(data, ignore_errors=True)
        for name, password in passwords.items():
            scram += ["--add-scram", f"{kafka_client.MECHANISM}=[name={name},password={password}]"]
    config = write_config(settings)
    if not (data / "meta.properties").exists():
        cluster_id = "-"
        while cluster_id.startswith("-"):  # as Kafka's Uuid.randomUuid: a leading '-' reads as an option
            cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        result = subprocess.run(
            _java(
                settings,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id,
                "-c",
                str(config),
                *scram,
            ),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StackError(f"formatting Kafka storage failed:\n{result.stdout}\n{result.stderr}")
    svc = service(settings)
    svc.start(_java(settings, "kafka.Kafka", str(config), heap=settings.kafka_heap))
    operator = as_admin(settings)
    wait_until(svc, lambda: ready(operator), timeout, "Kafka broker")
    create_topics(operator)
    if kafka_client.secure(settings):
        create_acls(operator)
    wait_for_transaction_coordinator(operator)


def wait_for_transaction_coordinator(settings: Settings, timeout: float = 60.0) -> None:
    """A fresh broker creates __transaction_state on the first producer-id request; until it is loaded,
    idempotent producers (every client of ours) stall. Ask once here so `up` returns a broker ready for them."""
    # Its "coordinator load in progress" retries are the wait itself, not news: keep them out of the console.
    quiet = logging.getLogger("streams.stack.kafka.readiness")
    quiet.setLevel(logging.ERROR)
    producer = Producer(
        kafka_client.confluent(as_admin(settings), **{"transactional.id": "vto-stack-readiness", "logger": quiet})
    )

    try:
        producer.init_transactions(timeout)
    except Exception as exc:
        raise StackError(f"Kafka's transaction coordinator did not come up: {exc}") from exc


def stop(settings: Settings) -> bool:
    return service(settings).stop(timeout=60)
