"""Every Prometheus metric of the worker, created on an injected registry (tests pass a fresh one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

# Sized for the 100 ms capture-to-rendered budget: fine steps up to it (`le="0.1"` is the SLO's bucket), coarse
# ones above, up to a stalled pipeline. Stages use the same buckets, so a stage's share of the budget reads off.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class PublishMetrics:
    """What the transactional publisher (streams/publisher.py) counts, in the worker and the analytics worker:
    records left out, transactions sent again, and the time per stage (`vto_stage_seconds{stage}`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        self.publish_errors = Counter(
            "vto_publish_errors_total",
            "Records left out of their batch because the broker can never take them (too large), by topic.",
            ["topic"],
            registry=registry,
        )
        self.publish_retries = Counter(
            "vto_publish_retries_total",
            "Batch transactions aborted and sent again (broker unreachable or a record not acknowledged).",
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "vto_stage_seconds",
            "Time spent per stage of a frame's journey (the analytics worker: aggregate, publish).",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class Metrics(PublishMetrics):
    """The worker's metrics. Labels carry few values (stage, outcome, reason), never a session id."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.frames = Counter(
            "vto_frames_total",
            "Frames handled, by outcome (rendered, no_pose, dead_letter, dropped).",
            ["outcome"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "vto_dead_letters_total", "Records sent to the dead-letter topic, by reason.", ["reason"], registry=registry
        )
        self.dropped = Counter(
            "vto_frames_dropped_total",
            "Frames dropped without rendering, by reason (stale, superseded, session_ended, rate_limited, ...).",
            ["reason"],
            registry=registry,
        )
        self.end_to_end_seconds = Histogram(
            "vto_frame_latency_seconds",
            "Capture timestamp to rendered frame published.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_frames = Histogram(
            "vto_batch_frames", "Frames per micro-batch taken from Kafka.", buckets=BATCH_BUCKETS, registry=registry
        )
        self.inference_retries = Counter(
            "vto_inference_retries_total", "Triton requests retried for lack of capacity.", registry=registry
        )
        self.events = Counter(
            "vto_tryon_events_total", "Try-on events published, by type.", ["type"], registry=registry
        )
        self.pose_source = Counter(
            "vto_pose_source_total",
            "Frames by where the shopper's pose came from (detector, tracking, client, none).",
            ["source"],
            registry=registry,
        )
        self.sessions_restored = Counter(
            "vto_sessions_restored_total",
            "Session states read back from the state topic after a partition was assigned.",
            registry=registry,
        )
        self.state_restore_failures = Counter(
            "vto_state_restore_failures_total",
            "Partition assignments whose session states could not be read back (sessions restarted their tracks).",
            registry=registry,
        )
        self.ready = Gauge("vto_worker_ready", "1 while the worker has partitions and takes frames.", registry=registry)
        self.active_sessions = Gauge(
            "vto_active_sessions", "Sessions this worker served a frame of in the last 30 s.", registry=registry
        )
        # Per partition this worker owns (partitions are few and fixed; removed when a partition moves away).
        self.lag_messages = Gauge(
            "vto_consumer_lag_messages",
            "Records on the partition not yet handled by this worker (high watermark - next offset to handle).",
            ["topic", "partition"],
            registry=registry,
        )
        self.lag_seconds = Gauge(
            "vto_consumer_lag_seconds",
            "How long the partition's oldest unhandled record has waited (0 when none waits); resolution ~1 s.",
            ["topic", "partition"],
            registry=registry,
        )
        self.inference_errors = Counter(
            "vto_inference_errors_total",
            "Failed Triton calls (each attempt), by gRPC status (UNAVAILABLE, DEADLINE_EXCEEDED, ...).",
            ["code"],
            registry=registry,
        )
        self.draining = Gauge(
            "vto_worker_draining", "1 from SIGTERM until the worker exits (intake stopped).", registry=registry
        )


class GatewayMetrics:
    """The browser gateway's metrics (`vto gateway`): connections, frames each way, what was refused or skipped."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        ProcessCollector(registry=registry)
        self.connections = Gauge("vto_gateway_connections", "Open shopper WebSockets.", registry=registry)
        self.frames_in = Counter(
            "vto_gateway_frames_in_total", "Camera frames from pages published to Kafka.", registry=registry
        )
        self.frames_out = Counter("vto_gateway_frames_out_total", "Rendered frames sent to pages.", registry=registry)
        self.dropped_to_page = Counter(
            "vto_gateway_frames_dropped_to_page_total",
            "Rendered frames replaced by a newer one before a slow page took them (summed over sessions).",
            registry=registry,
        )
        self.refused = Counter(
            "vto_gateway_refused_total",
            "Client input refused with a message to the page, by reason (not_jpeg, frame_too_large, ...).",
            ["reason"],
            registry=registry,
        )
        self.unrouted = Counter(
            "vto_gateway_replies_unrouted_total",
            "Rendered frames for a session this gateway no longer holds (the page left or reconnected elsewhere).",
            registry=registry,
        )
        self.send_seconds = Histogram(
            "vto_gateway_ws_send_seconds",
            "Time to write one rendered frame to a page's WebSocket.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.gateway_seconds = Histogram(
            "vto_gateway_frame_seconds",
            "The gateway's own time per camera frame: WebSocket message to record handed to the Kafka producer.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class AnalyticsMetrics(PublishMetrics):
    """The analytics worker's metrics (`vto analytics worker`): events aggregated, late, windows closed, and the
    publisher's (same names as the worker's, told apart by the scrape job)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.events = Counter(
            "vto_analytics_events_total", "Try-on events aggregated, by type.", ["type"], registry=registry
        )
        self.late_events = Counter(
            "vto_analytics_late_events_total",
            "Events that arrived after their window had closed, by window size (left out of it).",
            ["window"],
            registry=registry,
        )
        self.windows_closed = Counter(
            "vto_analytics_windows_closed_total", "Windows published final, by size.", ["window"], registry=registry
        )
        self.cotries = Counter(
            "vto_analytics_cotries_total", "Co-try-ons counted for recommendations.", registry=registry
        )
        self.open_windows = Gauge("vto_analytics_open_windows", "Item and funnel windows held open.", registry=registry)
        self.sessions = Gauge("vto_analytics_sessions", "Sessions remembered (pseudonyms).", registry=registry)
        self.watermark_lag = Gauge(
            "vto_analytics_watermark_lag_seconds",
            "Wall clock minus the oldest event-time watermark of this worker's partitions.",
            registry=registry,
        )
        self.ready = Gauge(
            "vto_worker_ready", "1 while the worker has partitions and its state is read back.", registry=registry
        )
