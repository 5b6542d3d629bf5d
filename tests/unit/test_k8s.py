"""k8s/: every overlay builds and validates (tools/k8s_check.py), the checker rejects broken resources, and the
generated Kafka topics and users are those of streams/stack/kafka.py."""

from __future__ import annotations

import copy
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.stack import kafka

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import gen_k8s  # noqa: E402
import k8s_check  # noqa: E402

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def crds() -> k8s_check.CustomSchemas:
    return k8s_check.CustomSchemas.load(k8s_check.CRDS)


@pytest.fixture(scope="module")
def built() -> dict[str, list[Doc]]:
    """Every overlay, built by kustomize: skipped without it on a developer's machine, a failure in CI."""
    kustomize = k8s_check.kustomize_binary()
    if kustomize is None:
        message = "no kustomize (KUSTOMIZE or .cache/bin/kustomize: `make kustomize`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return {overlay: k8s_check.build(overlay, kustomize) for overlay in k8s_check.OVERLAYS}


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def errors_after(docs: list[Doc], crds: k8s_check.CustomSchemas, change: Callable[[list[Doc]], None]) -> list[str]:
    """Every error the checker reports (schemas and project rules) once `change` is applied to a copy."""
    changed = copy.deepcopy(docs)
    change(changed)
    found = [e for d in changed for e in k8s_check.schema_findings(d, crds).errors]
    return found + [e for _, _, e in k8s_check.project_errors(changed)]


# ------------------------------------------------------------------------------------------------- the overlays


@pytest.mark.parametrize("overlay", k8s_check.OVERLAYS)
def test_overlay_is_valid(overlay: str, built: dict[str, list[Doc]], crds: k8s_check.CustomSchemas) -> None:
    out = io.StringIO()
    assert k8s_check.check(overlay, built[overlay], crds, out) == 0, out.getvalue()
    assert f"{overlay}: {len(built[overlay])} resources" in out.getvalue()


def test_command_line_checks_every_overlay(built: dict[str, list[Doc]], capsys: pytest.CaptureFixture[str]) -> None:
    assert k8s_check.main([]) == 0
    summaries = [line for line in capsys.readouterr().out.splitlines() if " resources of " in line]
    assert [s.split(":")[0] for s in summaries] == list(k8s_check.OVERLAYS)


@pytest.mark.parametrize("overlay", k8s_check.OVERLAYS)
def test_workers_never_outnumber_the_frames_partitions(overlay: str, built: dict[str, list[Doc]]) -> None:
    docs = built[overlay]
    frames = find(docs, "KafkaTopic", "vto.frames.v1")
    scaled = find(docs, "ScaledObject", "vto-worker")
    [trigger] = [t for t in scaled["spec"]["triggers"] if t["type"] == "kafka"]
    assert trigger["metadata"]["topic"] == frames["metadata"]["name"]
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    assert scaled["spec"]["maxReplicaCount"] <= frames["spec"]["partitions"]


@pytest.mark.parametrize("overlay", k8s_check.OVERLAYS)
def test_each_gateway_pod_has_a_replies_partition(overlay: str, built: dict[str, list[Doc]]) -> None:
    docs = built[overlay]
    replies = find(docs, "KafkaTopic", "vto.gateway-replies.v1")
    gateway = find(docs, "StatefulSet", "vto-gateway")
    assert gateway["spec"]["podManagementPolicy"] == "Parallel"
    assert 1 <= gateway["spec"]["replicas"] <= replies["spec"]["partitions"]
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    [instance] = [e for e in container["env"] if e["name"] == "VTO_GATEWAY_INSTANCE"]
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert find(docs, "Service", "vto-gateway")["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]


@pytest.mark.parametrize("overlay", k8s_check.OVERLAYS)
def test_analytics_pods_keep_their_names_and_have_events_partitions(overlay: str, built: dict[str, list[Doc]]) -> None:
    docs = built[overlay]
    events = find(docs, "KafkaTopic", "vto.tryon-events.v1")
    analytics = find(docs, "StatefulSet", "vto-analytics")
    assert 1 <= analytics["spec"]["replicas"] <= events["spec"]["partitions"]
    for name in ("vto.analytics-state.v1", "vto.analytics-cotries.v1"):
        assert find(docs, "KafkaTopic", name)["spec"]["partitions"] == events["spec"]["partitions"]
    pod = analytics["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["vto", "analytics", "worker"]
    [instance] = [e for e in container["env"] if e["name"] == "VTO_ANALYTICS_INSTANCE"]
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    [key] = [v for v in pod["volumes"] if v["name"] == "analytics-key"]
    assert key["secret"]["secretName"] in k8s_check.OPERATOR_SECRETS
    assert find(docs, "Service", "vto-analytics-headless")["spec"]["clusterIP"] == "None"


def test_production_replicates_and_dev_does_not(built: dict[str, list[Doc]]) -> None:
    for overlay, replicas, isr, workers in (("dev", 1, None, 1), ("production", 3, "2", 2)):
        docs = built[overlay]
        assert find(docs, "KafkaNodePool", "dual-role")["spec"]["replicas"] == replicas
        for topic in (d for d in docs if d["kind"] == "KafkaTopic"):
            assert topic["spec"]["replicas"] == replicas
            assert topic["spec"]["config"].get("min.insync.replicas") == isr
        assert find(docs, "ScaledObject", "vto-worker")["spec"]["minReplicaCount"] == workers
    assert find(built["dev"], "StatefulSet", "vto-gateway")["spec"]["replicas"] == 2
    assert find(built["production"], "StatefulSet", "vto-gateway")["spec"]["replicas"] == 4
    gpu = find(built["production"], "Deployment", "triton")["spec"]["template"]["spec"]["containers"][0]
    cpu = find(built["dev"], "Deployment", "triton")["spec"]["template"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]


# ----------------------------------------------------------------------------------- the checker rejects errors


DEPLOYMENT: Doc = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "x", "namespace": "vto-stream"},
    "spec": {
        "selector": {"matchLabels": {"app": "x"}},
        "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "x", "image": "x"}]}},
    },
}
TOPIC: Doc = {
    "apiVersion": "kafka.strimzi.io/v1",
    "kind": "KafkaTopic",
    "metadata": {"name": "vto.frames.v1", "labels": {"strimzi.io/cluster": "vto"}},
    "spec": {"partitions": 6, "replicas": 1, "config": {"retention.ms": "60000"}},
}


def test_sound_resources_pass(crds: k8s_check.CustomSchemas) -> None:
    assert k8s_check.schema_findings(DEPLOYMENT, crds).errors == []
    assert k8s_check.schema_findings(TOPIC, crds).errors == []


def test_rejects_an_unknown_field_in_a_deployment(crds: k8s_check.CustomSchemas) -> None:
    broken = copy.deepcopy(DEPLOYMENT)
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    [error] = k8s_check.schema_findings(broken, crds).errors
    assert "imagePullPolicyy" in error


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("partitions", "six", "'six' is not of type 'integer'"),
        ("partitions", 0, "less than the minimum of 1"),
        ("partition", 6, "'partition' was unexpected"),  # the API server would drop it: partitions from the broker
    ],
)
def test_rejects_a_wrong_kafkatopic(crds: k8s_check.CustomSchemas, field: str, value: Any, expected: str) -> None:
    broken = copy.deepcopy(TOPIC)
    broken["spec"][field] = value
    errors = k8s_check.schema_findings(broken, crds).errors
    assert any(expected in e for e in errors), errors


def test_rejects_bad_custom_resource_metadata_and_unserved_versions(crds: k8s_check.CustomSchemas) -> None:
    labels = copy.deepcopy(TOPIC)
    labels["metadata"]["labels"]["replicas"] = 3
    assert any("metadata.labels.replicas" in e for e in k8s_check.schema_findings(labels, crds).errors)
    old = dict(TOPIC, apiVersion="kafka.strimzi.io/v1beta2")
    assert k8s_check.schema_findings(old, crds).errors == [
        "kafka.strimzi.io/v1beta2: the KafkaTopic CRD serves only v1"
    ]


def test_rejects_a_kind_without_a_schema(crds: k8s_check.CustomSchemas) -> None:
    thing = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "x"}}
    [error] = k8s_check.schema_findings(thing, crds).errors
    assert "cannot validate" in error


def test_strict_schema_keeps_preserved_and_int_or_string_fields() -> None:
    schema = k8s_check.strict_schema(
        {
            "type": "object",
            "properties": {
                "port": {"x-kubernetes-int-or-string": True},
                "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "name": {"type": "string", "nullable": True},
            },
        }
    )
    validator = k8s_check.jsonschema.Draft4Validator(schema)
    assert validator.is_valid({"port": 80, "config": {"any.thing": 1}, "name": None})
    assert validator.is_valid({"port": "http"})
    assert not validator.is_valid({"port": 1.5})
    assert not validator.is_valid({"other": 1})


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda docs: find(docs, "ScaledObject", "vto-worker")["spec"].update(maxReplicaCount=200),
            "maxReplicaCount 200 > the 192 partitions of vto.frames.v1",
        ),
        (
            lambda docs: find(docs, "KafkaTopic", "vto.session-state.v1")["spec"].update(partitions=6),
            "co-partitioned topics differ in partitions",
        ),
        (
            lambda docs: find(docs, "ScaledObject", "vto-worker")["spec"]["triggers"][0]["metadata"].update(
                lagThreshold=30
            ),
            "30 is not of type 'string'",
        ),
        (
            lambda docs: find(docs, "Deployment", "vto-worker")["spec"]["template"]["spec"].update(
                terminationGracePeriodSeconds=15
            ),
            "terminationGracePeriodSeconds 15 is not longer than VTO_DRAIN_TIMEOUT_S 20",
        ),
        (
            lambda docs: find(docs, "PodMonitor", "triton")["spec"]["podMetricsEndpoints"][0].update(relabelings=[]),
            "no PodMonitor gives job='triton'",
        ),
        (
            lambda docs: find(docs, "PodMonitor", "vto-worker")["spec"]["podMetricsEndpoints"][0].update(port="web"),
            "port 'web' is not a port of vto-worker",
        ),
        (
            lambda docs: next(
                r
                for g in find(docs, "PrometheusRule", "vto-stream")["spec"]["groups"]
                for r in g["rules"]
                if r.get("alert") == "VTOWorkerNotReady" and r["labels"]["severity"] == "ticket"
            ).update(expr='up{job="worker"} == 0'),
            'selects job="worker", which no PodMonitor scrapes',
        ),
        (
            lambda docs: next(
                d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("vto-worker-config")
            )["data"].update(VTO_KAFKA_BOOTSTRAPS="x:9093"),
            "VTO_KAFKA_BOOTSTRAPS is not a setting",
        ),
        (
            lambda docs: find(docs, "Deployment", "triton")["spec"]["template"]["spec"]["containers"][0][
                "securityContext"
            ].pop("readOnlyRootFilesystem"),
            "readOnlyRootFilesystem is not true",
        ),
        (
            lambda docs: find(docs, "Kafka", "vto")["spec"]["kafka"]["config"].update({"message.max.bytes": 1048588}),
            "config message.max.bytes=1048588, the embedded broker has 4259840",
        ),
        (
            lambda docs: find(docs, "Kafka", "vto")["spec"]["kafka"]["config"].pop("group.min.session.timeout.ms"),
            "group.min.session.timeout.ms > the workers' session timeout",
        ),
        (
            lambda docs: find(docs, "Kafka", "vto")["spec"]["kafka"]["config"].update(listeners="PLAINTEXT://:9092"),
            "config listeners: Strimzi sets this itself",
        ),
        (
            lambda docs: find(docs, "KafkaUser", "vto-worker")["spec"]["authorization"]["acls"][0]["operations"].append(
                "Reed"
            ),
            "'Reed' is not one of",
        ),
        (
            lambda docs: find(docs, "KafkaNodePool", "dual-role")["spec"].update(replicas=1),
            "3 replicas > 1 broker(s)",
        ),
        (
            lambda docs: docs.remove(find(docs, "NetworkPolicy", "default-deny-ingress")),
            "no default-deny ingress policy",
        ),
        (
            lambda docs: find(docs, "StatefulSet", "vto-gateway")["spec"].update(replicas=9),
            "replicas 9 > the 8 partitions of vto.gateway-replies.v1",
        ),
        (
            lambda docs: find(docs, "KafkaTopic", "vto.gateway-replies.v1")["spec"].update(partitions=2),
            "replicas 4 > the 2 partitions of vto.gateway-replies.v1",
        ),
        (
            lambda docs: next(
                e
                for e in find(docs, "StatefulSet", "vto-gateway")["spec"]["template"]["spec"]["containers"][0]["env"]
                if e["name"] == "VTO_GATEWAY_INSTANCE"
            ).update(value="0", valueFrom=None),
            "VTO_GATEWAY_INSTANCE does not come from the pod-index label",
        ),
        (
            lambda docs: find(docs, "StatefulSet", "vto-gateway").update(kind="Deployment"),
            "the gateway is not a StatefulSet",
        ),
        (
            lambda docs: next(
                e
                for e in find(docs, "StatefulSet", "vto-gateway")["spec"]["template"]["spec"]["containers"][0]["env"]
                if e["name"] == "VTO_KAFKA_PASSWORD"
            )["valueFrom"]["secretKeyRef"].update(name="vto-worker"),
            "VTO_KAFKA_PASSWORD comes from the Secret 'vto-worker', not 'vto-client''s",
        ),
        (
            lambda docs: find(docs, "Kafka", "vto")["spec"]["kafka"]["listeners"][0]["networkPolicyPeers"].pop(1),
            "the listener on 9093 has no networkPolicyPeers entry for these pods",
        ),
        (
            lambda docs: find(docs, "Service", "vto-gateway")["spec"]["ports"][0].update(targetPort="web"),
            "targetPort 'web' is not a port of vto-gateway",
        ),
        (
            lambda docs: find(docs, "Service", "vto-gateway-headless")["spec"].pop("clusterIP"),
            "is not a headless Service",
        ),
        (
            lambda docs: find(docs, "PodMonitor", "vto-gateway")["spec"]["podMetricsEndpoints"][0].update(
                relabelings=[]
            ),
            "no PodMonitor gives job='vto-gateway'",
        ),
        (
            lambda docs: next(
                d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("vto-gateway-config")
            )["data"].update(VTO_BIND_ADDRESS="127.0.0.1"),
            "VTO_BIND_ADDRESS is not 0.0.0.0",
        ),
        (
            lambda docs: find(docs, "StatefulSet", "vto-analytics")["spec"].update(replicas=200),
            "replicas 200 > the 192 partitions of vto.tryon-events.v1",
        ),
        (
            lambda docs: find(docs, "KafkaTopic", "vto.analytics-state.v1")["spec"].update(partitions=6),
            "co-partitioned topics differ in partitions",
        ),
        (
            lambda docs: find(docs, "KafkaTopic", "vto.analytics-cotries.v1")["spec"].update(partitions=6),
            "co-partitioned topics differ in partitions",
        ),
        (
            lambda docs: next(
                e
                for e in find(docs, "StatefulSet", "vto-analytics")["spec"]["template"]["spec"]["containers"][0]["env"]
                if e["name"] == "VTO_ANALYTICS_INSTANCE"
            ).update(value="analytics", valueFrom=None),
            "VTO_ANALYTICS_INSTANCE does not come from the pod's name",
        ),
        (
            lambda docs: find(docs, "StatefulSet", "vto-analytics").update(kind="Deployment"),
            "the analytics worker is not a StatefulSet",
        ),
        (
            lambda docs: next(
                v
                for v in find(docs, "StatefulSet", "vto-analytics")["spec"]["template"]["spec"]["volumes"]
                if v["name"] == "analytics-key"
            )["secret"].update(secretName="vto-analytics-pseudonym"),
            "Secret 'vto-analytics-pseudonym' has no source",
        ),
        (
            lambda docs: find(docs, "PodMonitor", "vto-analytics")["spec"]["podMetricsEndpoints"][0].update(
                relabelings=[]
            ),
            "no PodMonitor gives job='vto-analytics'",
        ),
        (
            lambda docs: find(docs, "Kafka", "vto")["spec"]["kafka"]["listeners"][0]["networkPolicyPeers"].pop(2),
            "the listener on 9093 has no networkPolicyPeers entry for these pods",
        ),
    ],
    ids=[
        "keda-beyond-partitions",
        "co-partitioning",
        "keda-metadata-type",
        "grace-shorter-than-drain",
        "podmonitor-without-job",
        "podmonitor-unknown-port",
        "rule-selects-unscraped-job",
        "unknown-setting",
        "writable-root",
        "broker-message-size",
        "broker-session-minimum",
        "strimzi-forbidden-config",
        "acl-operation",
        "replicas-beyond-brokers",
        "no-default-deny",
        "gateway-beyond-replies-partitions",
        "replies-topic-shrunk",
        "gateway-instance-not-pod-index",
        "gateway-deployment",
        "gateway-wrong-kafka-secret",
        "kafka-does-not-admit-gateway",
        "service-unknown-target-port",
        "governing-service-not-headless",
        "gateway-podmonitor-without-job",
        "gateway-bind-address",
        "analytics-beyond-events-partitions",
        "analytics-state-co-partitioning",
        "analytics-cotries-co-partitioning",
        "analytics-instance-not-pod-name",
        "analytics-deployment",
        "analytics-key-without-source",
        "analytics-podmonitor-without-job",
        "kafka-does-not-admit-analytics",
    ],
)
def test_rejects_a_broken_production_overlay(
    built: dict[str, list[Doc]], crds: k8s_check.CustomSchemas, change: Callable[[list[Doc]], Any], expected: str
) -> None:
    errors = errors_after(built["production"], crds, change)
    assert any(expected in e for e in errors), errors


# --------------------------------------------------------------------------- generated from streams/stack/kafka.py


def test_generated_kafka_resources_are_committed() -> None:
    assert gen_k8s.differences() == [], "run `python tools/gen_k8s.py`"


def test_generation_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VTO_TOPIC_PARTITIONS", "3")
    assert gen_k8s.generate() == gen_k8s.generate(gen_k8s.DefaultSettings())
    assert "partitions: 6" in gen_k8s.generate()[Path("topics/vto.frames.v1-kafkatopic.yaml")]


def committed(folder: str) -> list[Doc]:
    files = sorted((gen_k8s.KAFKA_DIR / folder).glob("*.yaml"))
    return [yaml.safe_load(p.read_text()) for p in files if p.name != "kustomization.yaml"]


def test_kafkatopics_are_the_topic_specs() -> None:
    specs = kafka.topic_specs(gen_k8s.DefaultSettings())
    topics = {d["metadata"]["name"]: d["spec"] for d in committed("topics")}
    assert sorted(topics) == sorted(s.topic for s in specs)
    for spec in specs:
        assert topics[spec.topic]["partitions"] == spec.num_partitions
        assert topics[spec.topic]["config"] == spec.config


def test_kafkausers_grant_exactly_the_acl_bindings() -> None:
    """Read back from the committed KafkaUsers, independently of the generator's conversion."""
    restypes = {"topic": "TOPIC", "group": "GROUP", "transactionalId": "TRANSACTIONAL_ID"}
    patterns = {"literal": "LITERAL", "prefix": "PREFIXED"}
    granted = {
        (
            f"User:{user['metadata']['name']}",
            restypes[acl["resource"]["type"]],
            acl["resource"]["name"],
            patterns[acl["resource"]["patternType"]],
            operation.upper(),
        )
        for user in committed("users")
        for acl in user["spec"]["authorization"]["acls"]
        if acl["type"] == "allow" and acl["host"] == "*"
        for operation in acl["operations"]
    }
    wanted = {
        (b.principal, b.restype.name, b.name, b.resource_pattern_type.name, b.operation.name)
        for b in kafka.acl_bindings(gen_k8s.DefaultSettings())
    }
    assert granted == wanted
    for user in committed("users"):
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"


def test_every_manifest_is_one_resource_listed_by_a_kustomization() -> None:
    """One resource per file, and no file left out of the build."""
    listed: set[Path] = set()
    for kustomization in (ROOT / "k8s").rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        entries = [*spec.get("resources", []), *(p["path"] for p in spec.get("patches", []) if "path" in p)]
        listed |= {(kustomization.parent / e).resolve() for e in entries}
    for path in (ROOT / "k8s").rglob("*.yaml"):
        if path.name == "kustomization.yaml":
            continue
        assert path.resolve() in listed, f"{path} is in no kustomization"
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert len(documents) == 1 or path.name.endswith("-patch.yaml"), f"{path}: {len(documents)} resources"
