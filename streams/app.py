"""The Faust worker: ingest (Kafka -> FramePipeline) and publish (FramePipeline -> Kafka), plus /metrics,
/livez and /readyz on the worker's web port. Run with `vto worker` (what `vto stack up` starts).

Delivery: micro-batches' outputs, their sessions' states and the consumer offsets past their records commit together
in Kafka transactions (streams/publisher.py): readers of committed records see each frame's outcome and each try-on
event once. A crash aborts the open transaction; the partition's next owner reads the committed session states back
(streams/session_store.py) and handles those records again. The frames agent takes the next batch while earlier
ones are at Triton (VTO_WORKER_BATCHES_IN_FLIGHT); their outputs and offsets still go out in record order, and a
rebalance or a stop waits for the batches in flight before committing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streams import kafka_client, logs
from streams.consumer_lag import ConsumerLag
from streams.in_flight import InFlight
from streams.inference import TritonTryOn
from streams.metrics import Metrics
from streams.pipeline import FramePipeline, Outputs, Record, now_us
from streams.publisher import Publisher
from streams.session_store import read_states
from streams.settings import Settings, get_settings
from streams.tryon.catalogue import Catalogue, Item

log = logging.getLogger(__name__)


def _record(event: Any) -> Record:
    msg = event.message
    headers = msg.headers or ()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return Record(msg.topic, msg.partition, msg.offset, msg.key, msg.value, tuple((k, v or b"") for k, v in pairs))


class CatalogueCategories:
    """The worker's view of the catalogue: item -> category and whether it has a size chart, re-read when its
    files change (checked every 2 s)."""

    def __init__(self, settings: Settings) -> None:
        self.catalogue = Catalogue(settings.catalogue_dir)
        self.checked = time.monotonic()

    def _item(self, item_id: str) -> Item | None:
        if time.monotonic() - self.checked > 2.0:
            self.catalogue.reload_if_changed()
            self.checked = time.monotonic()
        return self.catalogue.get(item_id)

    def category(self, item_id: str) -> str | None:
        item = self._item(item_id)
        return None if item is None else item.category

    def sized(self, item_id: str) -> bool:
        item = self._item(item_id)
        return item is not None and bool(item.size_chart)


def next_offsets(records: list[Record]) -> dict[tuple[str, int], int]:
    """The consumer offsets a batch commits: past the last record it took of each partition."""
    offsets: dict[tuple[str, int], int] = {}
    for r in records:
        offsets[(r.topic, r.partition)] = max(offsets.get((r.topic, r.partition), 0), r.offset + 1)
    return offsets


def transactional_id(settings: Settings, worker_id: str) -> str:
    """Stable across restarts when the worker has a stable name (VTO_WORKER_INSTANCE: a StatefulSet pod's name),
    so a restarted worker aborts at once the transaction its predecessor left open."""
    return f"{settings.worker_group}.{settings.worker_instance or worker_id}"


PREFETCH_BATCHES = 4  # micro-batches a worker holds in memory ahead of the one in flight
DRAIN_EXPIRED = 75  # exit status of a worker whose drain outlasted VTO_DRAIN_TIMEOUT_S


def transactional_app(
    settings: Settings,
    app_id: str,
    instance: str,
    web_port: int,
    batch: int,
    worker_id: str,
    read_committed: bool = False,
    **options: Any,
) -> faust.App:
    """A Faust app whose consumer offsets are committed only inside the publisher's transactions (the stream worker
    and the analytics worker): raw bytes in, topics never declared, static membership when `instance` is set.
    `read_committed`: for an app whose input is written in transactions (the analytics worker's)."""
    app = faust.App(
        app_id,
        broker=";".join(f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")),
        broker_credentials=kafka_client.faust_credentials(settings),
        key_serializer="raw",
        value_serializer="raw",
        web_port=web_port,
        web_bind=settings.bind_address,
        topic_allow_declare=False,  # topics are created by `vto stack up` (or Strimzi), never by workers
        topic_disable_leader=True,
        # Faust buffers up to 4096 records per stream by default: with 4 MB frames, 16 GB. A few batches are
        # enough to keep Triton busy; the rest stays on the broker, where it can go stale and be counted.
        stream_buffer_maxsize=PREFETCH_BATCHES * batch,
        broker_max_poll_records=2 * batch,
        # Offsets are committed only inside the publisher's transactions (streams/publisher.py, and
        # `offsets_go_with_transactions` below): Faust never commits them itself, periodically or otherwise.
        broker_commit_interval=365 * 24 * 3600.0,
        broker_commit_every=None,
        # A worker that stops heartbeating (killed, hung) loses its partitions after the session timeout: sized for
        # real time, so its sessions move within seconds. A stable name makes it a static member: restarted within
        # the timeout, it gets its own partitions back without a rebalance of the group.
        broker_session_timeout=settings.worker_session_timeout_s,
        broker_heartbeat_interval=settings.worker_session_timeout_s / 4,
        consumer_group_instance_id=instance or None,
        autodiscover=False,
        logging_config=logs.logging_config(settings.log_format, settings.log_level, worker_id),
        **options,
    )

    async def offsets_go_with_transactions(offsets: Any) -> bool:
        """Faust commits the offsets of the events its agents acknowledged (on a rebalance, at shutdown). Those run
        ahead of the publisher's open transaction by up to an interval, so committing them could skip records whose
        outputs are then aborted: offsets are committed with those outputs, in the transaction, and nowhere else."""
        return True

    app.consumer._commit = offsets_go_with_transactions  # type: ignore[attr-defined]

    if not read_committed:  # the stream worker's input (frames, control) is not written in transactions
        return app
    # Read committed records only: what this app consumes is written in transactions (try-on events, co-tries) and
    # a transaction that is aborted (its worker died) must never be counted. Faust reads uncommitted unless its own
    # exactly-once mode is on, which is not used here (streams/analytics/worker.py says why).
    thread = app.consumer._thread  # type: ignore[attr-defined]
    create = thread._create_worker_consumer

    def committed_only(transport: Any) -> Any:
        consumer = create(transport)
        consumer._isolation_level = "read_committed"
        return consumer

    thread._create_worker_consumer = committed_only
    return app


def serve_metrics_and_liveness(app: faust.App, registry: CollectorRegistry, worker_id: str) -> None:
    """/metrics (Prometheus) and /livez on the app's web port; each app adds its own /readyz."""

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/livez")
    async def livez(web: Any, request: Any) -> Any:
        return web.json({"status": "alive", "worker_id": worker_id})


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> faust.App:
    settings.session_key()  # no session-token key: ConfigError now, not a worker that refuses every frame
    metrics = Metrics(registry or CollectorRegistry())
    worker_id = f"{socket.gethostname()}-{os.getpid()}"
    app = transactional_app(
        settings,
        settings.worker_group,
        settings.worker_instance,
        settings.worker_web_port,
        settings.worker_batch_size,
        worker_id,
        consumer_max_fetch_size=settings.max_message_bytes + 65536,
    )

    def topic(name: str) -> Any:
        return app.topic(name, key_type=bytes, value_type=bytes, allow_empty=True, internal=False)

    frames_topic, control_topic = topic(settings.frames_topic), topic(settings.control_topic)
    holder: dict[str, Any] = {}
    producer_started = asyncio.Lock()
    states_restored = asyncio.Event()  # set once the current assignment's session states are read back
    status = {"assigned": False, "partitions": 0, "triton_ok": False, "triton_checked": 0.0, "draining": False}
    lag = ConsumerLag()

    async def new_producer() -> AIOKafkaProducer:
        old = holder.pop("producer", None)
        if old is not None:
            try:
                await old.stop()
            except KafkaError as exc:  # a fenced producer may not close cleanly; it is dropped either way
                log.warning("closing the fenced producer: %s", exc)
        producer = AIOKafkaProducer(
            **kafka_client.aiokafka(settings),
            client_id=worker_id,
            transactional_id=transactional_id(settings, worker_id),
            transaction_timeout_ms=int(settings.transaction_timeout_s * 1000),
            enable_idempotence=True,
            acks="all",
            max_request_size=2 * settings.max_message_bytes + 65536,  # dead letters hold a whole frame
            # A transaction's steps that meet the previous one's markers still being written are retried: after
            # 10 ms, not aiokafka's 100 ms, which each frame of a session would wait.
            retry_backoff_ms=10,
        )
        await producer.start()  # registers the transactional id: aborts what a predecessor left open
        holder["producer"] = producer
        return producer

    async def publisher() -> Publisher:
        async with producer_started:
            if "publisher" not in holder:
                holder["publisher"] = Publisher(await new_producer(), settings, metrics, renew=new_producer)
        return holder["publisher"]  # type: ignore[no-any-return]

    def pipeline() -> FramePipeline:
        # The gRPC aio channel must be created inside the worker's running event loop.
        if "pipeline" not in holder:
            tryon = TritonTryOn(
                settings.triton_grpc_url,
                settings.triton_model,
                settings.triton_timeout_s,
                settings.triton_retries,
                on_retry=metrics.inference_retries.inc,
                on_error=lambda code: metrics.inference_errors.labels(code).inc(),
            )
            holder["tryon"] = tryon
            holder["pipeline"] = FramePipeline(settings, tryon, metrics, worker_id, CatalogueCategories(settings))
        return holder["pipeline"]  # type: ignore[no-any-return]

    def stop_the_process(exc: BaseException) -> None:
        log.critical("a batch failed (%r): exiting, to restart from the committed offsets and states", exc)
        os._exit(70)

    in_flight = InFlight(settings.worker_batches_in_flight, stop_the_process)

    async def publish_frames(records: list[Record], out: Outputs) -> None:
        offsets = next_offsets(records)
        await (await publisher()).publish(out, offsets)
        sent_us = now_us()  # rendered frames are out (shoppers read uncommitted): capture -> published
        for captured_us in out.captured:
            metrics.end_to_end_seconds.observe(max(sent_us - captured_us, 0) / 1e6)
        lag.handled_up_to(offsets)

    @app.agent(frames_topic)
    async def frames(stream: Any) -> AsyncIterator[None]:  # faust.Stream; take_events is missing from its stubs
        async for events in stream.take_events(settings.worker_batch_size, within=settings.worker_batch_window_s):
            # Faust may resume fetching before on_assigned has read the sessions back: never handle a frame of a
            # session whose state is still on its way (it would restart tracking and replay frames).
            await states_restored.wait()
            records = [_record(e) for e in events]
            in_flight.submit(pipeline().handle_frames(records), functools.partial(publish_frames, records))
            await in_flight.settle()
            yield None

    async def outputs_of(out: Outputs) -> Outputs:
        return out

    async def publish_control(record: Record, out: Outputs) -> None:
        await (await publisher()).publish(out, next_offsets([record]))

    @app.agent(control_topic)
    async def control(stream: Any) -> AsyncIterator[None]:
        async for event in stream.events():
            record = _record(event)
            out = pipeline().handle_control(record)  # applied before anything else awaits
            # Published after the frames taken before it: the session states it saves may hold their inference.
            await asyncio.shield(in_flight.submit(outputs_of(out), functools.partial(publish_control, record)))
            yield None

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # faust's stub wants a `signal` kwarg
    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        """Read back the states of the sessions on the frame partitions this worker now owns; frames wait."""
        states_restored.clear()
        try:
            partitions = sorted(tp.partition for tp in assigned if tp.topic == settings.frames_topic)
            status["partitions"] = len(partitions)
            if not partitions:
                return
            await publisher()  # transactions registered before the first batch (and a predecessor's aborted)
            started = time.perf_counter()
            try:
                values = await asyncio.get_running_loop().run_in_executor(None, read_states, settings, partitions)
            except Exception:
                log.exception("could not read session states of partitions %s; sessions start afresh", partitions)
                metrics.state_restore_failures.inc()
                return
            restored = pipeline().restore(values)
            app.log.info(
                "restored %d session states of partitions %s in %.3f s",
                restored,
                partitions,
                time.perf_counter() - started,
            )
        finally:
            states_restored.set()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]  # faust's stub wants a `signal` kwarg
    async def on_rebalanced(sender: Any, **kwargs: Any) -> None:
        status["assigned"] = True
        metrics.ready.set(1 if status["partitions"] else 0)

    @app.timer(interval=max(settings.commit_interval_s, 0.05))  # type: ignore[untyped-decorator]
    async def commit_open_transaction() -> None:
        """An idle worker's last batches are committed too, within the interval."""
        if "publisher" in holder:
            await holder["publisher"].flush()

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def account_lag_and_sessions() -> None:
        """Consumer lag of the frame partitions this worker owns, and its active sessions, once a second."""
        if "pipeline" in holder:
            metrics.active_sessions.set(holder["pipeline"].active_sessions(now_us()))
        try:
            await lag.export(app.consumer, metrics, settings.frames_topic, time.time())
        except Exception as exc:  # broker away, consumer (re)starting: the next tick tries again
            log.debug("consumer lag not sampled: %s", exc)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def flush_on_shutdown(sender: Any, **kwargs: Any) -> None:
        """A graceful stop commits what the worker did (an abrupt one leaves it to the partitions' next owner)."""
        await in_flight.drain()
        if "publisher" in holder:
            await holder["publisher"].flush()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        await in_flight.drain()
        if "publisher" in holder:  # what this worker did with the partitions is committed before they move
            await holder["publisher"].flush()
        metrics.ready.set(0)
        states_restored.clear()  # until the next assignment has read its sessions back

    stop_app = app.on_stop

    async def drain_then_stop() -> None:
        """SIGTERM (a pod being stopped): not ready any more, no new records fetched, the records already taken
        handled and their outputs committed with their offsets (Faust's stop, then `flush_on_shutdown`). Past
        VTO_DRAIN_TIMEOUT_S the process exits: its open transaction is aborted and the next owner of its
        partitions handles those records again, so nothing is lost either way."""
        status["draining"] = True
        metrics.draining.set(1)
        metrics.ready.set(0)
        started = time.monotonic()
        watchdog = threading.Timer(settings.drain_timeout_s, _drain_expired, (settings.drain_timeout_s,))
        watchdog.daemon = True
        watchdog.start()
        await stop_app()
        watchdog.cancel()
        log.info("drained and committed in %.2f s", time.monotonic() - started)

    app.on_stop = drain_then_stop  # type: ignore[method-assign]

    async def triton_ok() -> bool:
        if time.monotonic() - status["triton_checked"] > 2.0:
            status["triton_ok"] = await holder["tryon"].ready() if "tryon" in holder else False
            status["triton_checked"] = time.monotonic()
        return bool(status["triton_ok"])

    serve_metrics_and_liveness(app, metrics.registry, worker_id)

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        pipeline()
        # Ready = serving: assigned frame partitions (a worker beyond the partition count idles, not ready),
        # not rebalancing, and Triton answering.
        ok = (
            bool(status["assigned"])
            and status["partitions"] > 0
            and not app.rebalancing
            and not status["draining"]
            and await triton_ok()
        )
        body = {
            "ready": ok,
            "draining": status["draining"],
            "assigned": status["assigned"],
            "partitions": status["partitions"],
            "rebalancing": app.rebalancing,
            "triton": status["triton_ok"],
        }
        return web.json(body, status=200 if ok else 503)

    app.metrics = metrics  # type: ignore[attr-defined]
    return app


def _drain_expired(timeout_s: float) -> None:
    log.error("drain took over %.0f s (VTO_DRAIN_TIMEOUT_S): exiting; the next owner handles the rest", timeout_s)
    logging.shutdown()
    os._exit(DRAIN_EXPIRED)


def main(argv: list[str] | None = None) -> None:
    """`vto worker`: run one Faust worker until SIGTERM (graceful: stop intake, flush, commit)."""
    settings = get_settings()
    app = create_app(settings)
    quiet = ["--quiet"] if settings.log_format == "json" else []  # no banner: every line of output is JSON
    sys.argv = ["vto-worker", *quiet, "worker", "-l", settings.log_level.lower(), *(argv or [])]
    app.main()
