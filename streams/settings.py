"""The one typed settings object. Built once per process from `VTO_*` environment variables.

Each field's environment variable is its name in upper case with the `VTO_` prefix, e.g. `kafka_bootstrap`
is `VTO_KAFKA_BOOTSTRAP`. The README's configuration table is generated from this class (`vto config`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from streams.errors import ConfigError
from streams.tokens import MIN_KEY_BYTES

ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VTO_", frozen=True, extra="forbid")

    # Kafka
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers (host:port[,...]).")
    kafka_security: Literal["SASL_SSL", "PLAINTEXT"] = Field(
        "SASL_SSL",
        description="How every client reaches Kafka: SASL/SCRAM-SHA-512 over TLS, or plaintext (a trusted network "
        "only); the embedded broker serves the same.",
    )
    kafka_user: str = Field(
        "vto-admin",
        description="Kafka principal of this process: vto-worker (workers), vto-client (shoppers' frames), "
        "vto-analytics (analytics workers) or vto-admin (operators, tests).",
    )
    kafka_password: SecretStr = Field(
        SecretStr(""),
        description="Its SCRAM password. Empty: read from <run dir>/kafka-tls/kafka-users.json (`vto stack up`).",
    )
    kafka_ca_file: Path | None = Field(
        None, description="CA certificate that signed the brokers'. Unset: <run dir>/kafka-tls/ca.pem (`vto stack up`)."
    )
    kafka_controller_port: int = Field(9093, description="Embedded broker: KRaft controller port.")
    kafka_version: str = Field("4.1.1", description="Embedded broker: Apache Kafka version resolved from Maven.")
    kafka_heap: str = Field("512m", description="Embedded broker: JVM heap (-Xms/-Xmx).")
    topic_partitions: int = Field(6, ge=1, description="Partitions of the per-session topics (max worker parallelism).")
    frames_topic: str = Field("vto.frames.v1", description="Topic of incoming camera frames (Frame).")
    control_topic: str = Field(
        "vto.session-control.v1", description="Topic of session start/select/end (SessionControl)."
    )
    rendered_topic: str = Field(
        "vto.rendered.v1", description="Topic of rendered frames back to shoppers (RenderedFrame)."
    )
    events_topic: str = Field("vto.tryon-events.v1", description="Topic of try-on analytics events (TryOnEvent).")
    dead_letter_topic: str = Field(
        "vto.dead-letter.v1", description="Topic of rejected records with their reason (DeadLetter)."
    )
    outcomes_topic: str = Field(
        "vto.frame-outcomes.v1", description="Topic of what became of each frame record (FrameOutcome)."
    )
    state_topic: str = Field(
        "vto.session-state.v1", description="Compacted topic of per-session state (tracking, filters, events sent)."
    )
    frame_retention_ms: int = Field(
        60_000, description="Retention of frame topics: frames are worthless after seconds."
    )
    max_message_bytes: int = Field(4 * 1024 * 1024, description="Largest frame record accepted by topics and clients.")

    # Worker
    worker_group: str = Field("vto-worker", description="Faust app id = Kafka consumer group of the workers.")
    worker_instance: str = Field(
        "",
        description="Stable name of this worker (a StatefulSet pod's name): its Kafka transactional id, so a "
        "restarted worker aborts its predecessor's open batch at once. Empty: host and process id.",
    )
    commit_interval_s: float = Field(
        0.5,
        ge=0,
        description="A worker's open transaction commits after this: committed readers (analytics, accounting) lag "
        "by about as much; shoppers see rendered frames at once.",
    )
    worker_session_timeout_s: float = Field(
        2.0,
        ge=1.0,
        description="A worker silent this long loses its partitions to the others (its sessions wait this long "
        "after a crash).",
    )
    transaction_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A dead worker's open batch is aborted after this; until then committed readers of its "
        "partitions wait (analytics, accounting).",
    )
    prometheus_port: int = Field(9090, description="Embedded Prometheus (`vto stack up --with-prometheus`): web port.")
    drain_timeout_s: float = Field(
        20.0,
        gt=0,
        description="On SIGTERM a worker stops taking frames, finishes the ones it holds and commits, within this; "
        "past it, it exits and the partitions' next owner handles what was left. Keep it under the pod's grace period.",
    )
    gateway_port: int = Field(8080, description="Browser gateway (`vto gateway`): HTTP and WebSocket port.")
    gateway_instance: int = Field(
        0,
        ge=0,
        description="This gateway's number: it reads the rendered frames of its sessions from partition "
        "<instance> of the replies topic (instances <= VTO_GATEWAY_REPLY_PARTITIONS).",
    )
    gateway_reply_partitions: int = Field(
        8, ge=1, description="Partitions of the gateway replies topic: the most gateway instances."
    )
    replies_topic: str = Field(
        "vto.gateway-replies.v1",
        description="Rendered frames for browser sessions, on the partition of the gateway holding the session.",
    )
    worker_web_port: int = Field(6066, description="Worker HTTP port: /metrics, /livez, /readyz.")
    bind_address: str = Field(
        "127.0.0.1",
        description="Address the worker's HTTP and the embedded Triton listen on (0.0.0.0 in a pod, for probes).",
    )
    worker_batch_size: int = Field(16, ge=1, description="Most frames a worker takes from Kafka per micro-batch.")
    worker_batch_window_s: float = Field(0.005, gt=0, description="Longest wait to fill a micro-batch.")
    worker_batches_in_flight: int = Field(
        4,
        ge=1,
        description="Micro-batches a worker has in hand at once: it takes the next while earlier ones are at Triton "
        "(1: one after another). A session's frames still go one at a time, the newest first when behind; outputs "
        "and offsets go out in record order.",
    )
    frame_max_age_s: float = Field(2.0, gt=0, description="Frames older than this (capture -> consume) are dropped.")
    supersede_after_s: float = Field(
        0.1,
        ge=0,
        description="Latest frame wins: a session whose oldest frame in a micro-batch has queued this long is behind, "
        "and only its newest frame is rendered (the others are superseded).",
    )
    max_session_fps: float = Field(
        60.0, gt=0, description="Frames per second one session may send; beyond, frames are refused (a notice)."
    )
    max_active_sessions: int = Field(
        2000, ge=1, description="Sessions one worker serves at once (a frame in the last 30 s); new ones beyond wait."
    )
    max_clock_skew_s: float = Field(
        5.0, gt=0, description="Frames whose capture time is further ahead of the worker's clock are dead-lettered."
    )
    max_image_bytes: int = Field(3 * 1024 * 1024, description="Largest encoded image accepted in a Frame.")
    max_image_side: int = Field(4096, description="Largest width or height accepted in a Frame.")
    perception: Annotated[frozenset[Literal["face", "hands", "mask"]], NoDecode] = Field(
        frozenset({"face", "mask"}),
        description="Perception run on every frame besides the pose (comma-separated: face,hands,mask).",
    )
    max_people: int = Field(1, ge=1, le=8, description="People reported per frame; people[0] is the shopper.")

    # Security
    session_secret: SecretStr = Field(
        SecretStr(""),
        description="HMAC key of session tokens (streams/tokens.py), at least 16 bytes; or VTO_SESSION_SECRET_FILE.",
    )
    session_secret_file: Path | None = Field(
        None,
        description="File holding the session-token key (a mounted Secret). Unset: <run dir>/session-secret, "
        "which `vto stack up` writes.",
    )
    session_token_ttl_s: int = Field(3600, gt=0, description="Lifetime of tokens minted by `vto token` / `vto send`.")

    # Analytics (`vto analytics worker`, docs/analytics.md)
    analytics_group: str = Field("vto-analytics", description="Faust app id = Kafka consumer group of analytics.")
    analytics_instance: str = Field(
        "",
        description="Stable name of this analytics worker: its Kafka transactional id (a restart aborts what its "
        "predecessor left open at once). Empty: host and process id.",
    )
    analytics_web_port: int = Field(
        6090,
        description="Analytics worker HTTP port: /metrics, /livez, /readyz (apart from the workers' "
        "VTO_WORKER_WEB_PORT + N).",
    )
    analytics_secret: SecretStr = Field(
        SecretStr(""),
        description="Key of the hash that pseudonymises session ids in everything analytics keeps (at least 16 "
        "bytes); or VTO_ANALYTICS_SECRET_FILE.",
    )
    analytics_secret_file: Path | None = Field(
        None,
        description="File holding the pseudonym key. Unset: <run dir>/analytics-secret, which `vto stack up` writes.",
    )
    analytics_grace_s: float = Field(
        120.0,
        ge=0,
        description="A window accepts late events until its partition's event time passes its end by this; later "
        "ones are counted as late and left out.",
    )
    analytics_session_ttl_s: float = Field(
        6 * 3600.0,
        gt=0,
        description="Analytics forgets a session this long (event time) after its last event: a purchase after that "
        "is not 'after try-on'.",
    )
    analytics_top_k: int = Field(10, ge=1, le=100, description="Items per 'also tried' recommendation.")
    analytics_half_life_days: float = Field(
        7.0, gt=0, description="Co-try-on counts halve in weight every this many days."
    )
    analytics_window_days: int = Field(28, ge=1, description="Co-try-ons older than this (days) no longer count.")
    analytics_dir: Path = Field(
        ROOT / ".cache" / "analytics",
        description="Parquet files of `vto analytics export`, read by `vto analytics report`.",
    )
    analytics_items_topic: str = Field(
        "vto.analytics-items.v1", description="Per-item windowed aggregates (ItemAggregate), compacted."
    )
    analytics_funnel_topic: str = Field(
        "vto.analytics-funnel.v1", description="Windowed try-on funnel (FunnelAggregate), compacted."
    )
    analytics_also_tried_topic: str = Field(
        "vto.analytics-also-tried.v1", description="'Shoppers who tried X also tried' per item (AlsoTried), compacted."
    )
    analytics_cotries_topic: str = Field(
        "vto.analytics-cotries.v1", description="Internal: co-try-ons keyed by item (CoTry), for the recommendations."
    )
    analytics_state_topic: str = Field(
        "vto.analytics-state.v1",
        description="Internal: the analytics worker's state (open windows, sessions), compacted.",
    )

    # Triton
    triton_grpc_url: str = Field("127.0.0.1:8001", description="Triton gRPC endpoint the workers call.")
    triton_http_port: int = Field(8000, description="Embedded Triton: HTTP port (health).")
    triton_metrics_port: int = Field(8002, description="Embedded Triton: Prometheus metrics port.")
    triton_model: str = Field("tryon", description="Triton model that renders a frame.")
    tryon_models: Literal["in_process", "bls", ""] = Field(
        "",
        description="Embedded Triton: where the tryon model runs the perception models: in_process (onnxruntime in "
        "its own process) or bls (a call to each model's Triton model). Empty: as its config.pbtxt says.",
    )
    triton_timeout_s: float = Field(10.0, gt=0, description="Deadline of one Triton request.")
    triton_retries: int = Field(3, ge=0, description="Retries of a Triton request that failed for lack of capacity.")
    triton_repo: Path = Field(ROOT / "triton_repo", description="Model repository served by the embedded Triton.")

    # Local files
    cache_dir: Path = Field(ROOT / ".cache", description="Downloads, venvs and converted models (outside git).")
    run_dir: Path = Field(ROOT / ".cache" / "run", description="PID files, logs and Kafka data of the embedded stack.")
    data_dir: Path = Field(ROOT.parent / "shared" / "data", description="Sample photos and videos (demo, tests).")
    catalogue_dir: Path = Field(
        ROOT / "catalogue",
        description="Try-on catalogue: one folder per item (item.json + RGBA image), re-read when it changes.",
    )
    log_level: str = Field("INFO", description="Log level of workers and CLI.")
    log_format: Literal["json", "text"] = Field(
        "json",
        description="Worker log lines: one JSON object each (session_id, seq, trace_id on lines about a frame), "
        "or text.",
    )

    def session_key(self) -> bytes:
        """The session-token key: VTO_SESSION_SECRET, else the file VTO_SESSION_SECRET_FILE, else the embedded
        stack's <run dir>/session-secret. No key is a configuration error: tokens are never optional."""
        return self._key("session", "session-token key")

    def analytics_key(self) -> bytes:
        """The pseudonym key: VTO_ANALYTICS_SECRET, else VTO_ANALYTICS_SECRET_FILE, else <run dir>/analytics-secret."""
        return self._key("analytics", "analytics pseudonym key")

    def _key(self, name: str, what: str) -> bytes:
        """VTO_<NAME>_SECRET, else the file VTO_<NAME>_SECRET_FILE, else <run dir>/<name>-secret (`vto stack up`
        writes it); ConfigError when none holds at least MIN_KEY_BYTES."""
        secret: SecretStr = getattr(self, f"{name}_secret")
        path: Path = getattr(self, f"{name}_secret_file") or self.run_dir / f"{name}-secret"
        key = secret.get_secret_value().encode()
        if not key and path.is_file():
            key = path.read_bytes().strip()
        if len(key) < MIN_KEY_BYTES:
            env = f"VTO_{name.upper()}_SECRET"
            raise ConfigError(
                f"no {what} of at least {MIN_KEY_BYTES} bytes: set {env} or {env}_FILE "
                f"(the embedded stack writes {self.run_dir / f'{name}-secret'} on `vto stack up`)"
            )
        return key

    @field_validator("perception", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
