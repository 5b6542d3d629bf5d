"""Validate what k8s/ deploys, offline: every resource of every overlay against its schema, then project rules.

    python tools/k8s_check.py [--overlay dev] [--overlay production]     (or: python -m tools.k8s_check)

For each overlay, `kustomize build` (env KUSTOMIZE, else .cache/bin/kustomize: `make kustomize` builds it), then
each resource:
- built-in kinds against the Kubernetes OpenAPI schemas bundled with `kubernetes-validate`, strict (an unknown
  field is an error), for Kubernetes K8S_VERSION (env VTO_K8S_VERSION to override);
- custom resources against the openAPIV3Schema of the version their apiVersion names, from the operators' CRDs in
  ../shared/k8s-crds (env VTO_K8S_CRDS to override), with jsonschema. The structural schema is made strict: where
  it lists properties and does not preserve unknown fields, another field is an error (the API server would drop
  it silently); x-kubernetes-int-or-string, nullable and x-kubernetes-embedded-resource are honoured; the
  metadata of custom resources is checked as ObjectMeta. CEL rules (x-kubernetes-validations) are not evaluated:
  the few that concern these resources are among the project rules below.
A kind with no schema is an error unless UNVALIDATED lists it with the reason.

Then the project's own rules (`semantic_errors`), over Deployments and StatefulSets alike: containers with
requests, limits, probes and a locked-down securityContext; references to ConfigMaps, Secrets, ports and Services
that exist; the `vto` pods' settings are real VTO_* settings, they listen on 0.0.0.0 on their named http port,
log in to Kafka as a KafkaUser of the build with that user's Secret and are admitted by the listener's network
policy peers; the workers' drain fits their grace period; KEDA never scales the workers beyond the frames topic's
partitions; the gateway is a StatefulSet whose pods take their instance number from the pod-index label, with
never more replicas than the replies topic has partitions; the analytics workers are a StatefulSet whose pods take
their instance (transactional id) from the pod's name, with never more replicas than the events topic has
partitions; PodMonitors give the job labels the alert rules select; co-partitioned topics have equal partition
counts; the Kafka cluster mirrors the embedded broker where the workers depend on it, and its topics'
replication fits its nodes.

Prints one line per resource and a summary per overlay; exits 1 on any error.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import kubernetes_validate  # type: ignore[import-untyped, unused-ignore]
import yaml

from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
OVERLAYS = ("dev", "production")
K8S_VERSION = os.environ.get("VTO_K8S_VERSION", "1.33")  # kubernetes-validate 1.37 bundles 1.25 to 1.37
CRDS = Path(os.environ.get("VTO_K8S_CRDS", ROOT.parent / "shared" / "k8s-crds"))
# Kinds deployed without a schema to validate them against: {kind: why}. Empty: every kind is validated.
UNVALIDATED: dict[str, str] = {}
# Secrets the manifests use but do not contain: made in the cluster, by an operator or by a person.
OPERATOR_SECRETS = {
    "vto-session-secret": "the session-token key, created by the operator (k8s/README.md)",
    "vto-analytics-key": "the analytics pseudonym key, created by the operator (k8s/README.md)",
}
WORKER_COMMAND = ["vto", "worker"]
GATEWAY_COMMAND = ["vto", "gateway"]
ANALYTICS_COMMAND = ["vto", "analytics", "worker"]
# The setting of each `vto` command's HTTP port (probes, /metrics), which the container must name `http`.
HTTP_PORT_SETTINGS = {"worker": "worker_web_port", "gateway": "gateway_port", "analytics": "analytics_web_port"}
# The label the StatefulSet controller gives each pod with its ordinal (Kubernetes 1.28 or later).
POD_INDEX_FIELD = "metadata.labels['apps.kubernetes.io/pod-index']"
# The pod's name: a StatefulSet pod's is stable (<name>-<ordinal>), kept by the pod that replaces it.
POD_NAME_FIELD = "metadata.name"
# Topics whose partition p belongs with partition p of the others, so their partition counts must stay equal: the
# per-session topics, and the analytics workers' state and co-tries topics (with the events topic): settings.
CO_PARTITIONED = (
    "frames_topic", "rendered_topic", "control_topic", "events_topic", "outcomes_topic", "state_topic",
    "analytics_state_topic", "analytics_cotries_topic",
)  # fmt: skip
WORKLOADS = ("Deployment", "StatefulSet")
# The scrape jobs the alert rules, the Triton ScaledObject and the dashboards select:
# {job: the Deployment or StatefulSet whose pods it scrapes}.
JOBS = {"vto-worker": "vto-worker", "triton": "triton", "vto-gateway": "vto-gateway", "vto-analytics": "vto-analytics"}
# Strimzi refuses these in Kafka's spec.kafka.config (it sets them itself), except the listed exceptions
# (Strimzi documentation, "Kafka cluster configuration": forbidden options and exceptions).
STRIMZI_FORBIDDEN = (
    "listeners", "advertised.", "broker.", "listener.", "host.name", "port", "inter.broker.listener.name", "sasl.",
    "ssl.", "security.", "password.", "log.dir", "zookeeper.connect", "zookeeper.set.acl", "zookeeper.ssl",
    "zookeeper.clientCnxnSocket", "authorizer.", "super.user", "cruise.control.metrics.topic",
    "cruise.control.metrics.reporter.bootstrap.servers", "node.id", "process.roles", "controller.",
    "metadata.log.dir", "zookeeper.metadata.migration.enable", "client.quota.callback.static.",
)  # fmt: skip
STRIMZI_ALLOWED = (
    "zookeeper.connection.timeout.ms", "sasl.server.max.receive.size", "ssl.cipher.suites", "ssl.protocol",
    "ssl.enabled.protocols", "ssl.secure.random.implementation", "cruise.control.metrics.topic.num.partitions",
    "cruise.control.metrics.topic.replication.factor", "cruise.control.metrics.topic.retention.ms",
    "cruise.control.metrics.topic.auto.create.retries", "cruise.control.metrics.topic.auto.create.timeout.ms",
    "cruise.control.metrics.topic.min.insync.replicas", "controller.quorum.election.backoff.max.ms",
    "controller.quorum.election.timeout.ms", "controller.quorum.fetch.timeout.ms",
)  # fmt: skip
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

Doc = dict[str, Any]


@dataclass
class Finding:
    kind: str
    name: str
    errors: list[str] = field(default_factory=list)
    note: str = ""


class CheckError(Exception):
    """The check could not run (no kustomize, no CRDs, kustomize failed)."""


# ---------------------------------------------------------------------------------------------------- building


def kustomize_binary() -> Path | None:
    path = Path(os.environ.get("KUSTOMIZE") or ROOT / ".cache" / "bin" / "kustomize")
    return path if path.is_file() and os.access(path, os.X_OK) else None


def build(overlay: str, kustomize: Path) -> list[Doc]:
    result = subprocess.run(
        [str(kustomize), "build", str(ROOT / "k8s" / "overlays" / overlay)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise CheckError(f"kustomize build k8s/overlays/{overlay} failed:\n{result.stderr}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


# ------------------------------------------------------------------------------------------------------ schemas


def strict_schema(node: Any) -> Any:
    """A CRD's structural schema as a JSON Schema that rejects what the API server would prune or refuse."""
    if not isinstance(node, dict):
        return node
    out = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-") and k not in ("description", "default")}
    if "properties" in out:
        out["properties"] = {k: strict_schema(v) for k, v in out["properties"].items()}
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = strict_schema(out["additionalProperties"])
    if "items" in out:
        out["items"] = strict_schema(out["items"])
    # anyOf/oneOf/allOf/not only validate values (structural schemas): kept as they are, never made strict.
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    is_object = node.get("type") == "object" or "properties" in node
    if is_object and not node.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in node:
        out["additionalProperties"] = False
    if node.get("nullable"):
        out.pop("nullable")
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


@dataclass
class CustomSchemas:
    """The CRDs found: {(group, version, kind): strict schema} for served versions, and {group: versions}."""

    schemas: dict[tuple[str, str, str], Any]
    versions: dict[tuple[str, str], list[str]]

    @classmethod
    def load(cls, folder: Path) -> CustomSchemas:
        if not folder.is_dir():
            raise CheckError(f"no CRDs at {folder} (set VTO_K8S_CRDS)")
        schemas: dict[tuple[str, str, str], Any] = {}
        versions: dict[tuple[str, str], list[str]] = {}
        for path in sorted(folder.rglob("*.yaml")):
            for crd in yaml.safe_load_all(path.read_text()):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                for version in crd["spec"]["versions"]:
                    if not version.get("served"):
                        continue
                    versions.setdefault((group, kind), []).append(version["name"])
                    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                    # metadata is the API server's own (ObjectMeta): checked apart, see `custom_errors`.
                    schema.setdefault("properties", {})["metadata"] = {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                    schemas[(group, version["name"], kind)] = strict_schema(schema)
        return cls(schemas, versions)

    def groups(self) -> set[str]:
        return {group for group, _ in self.versions}


def _path(error: Any) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top)"


def builtin_errors(doc: Doc, version: str = K8S_VERSION) -> list[str] | None:
    """Errors of a built-in kind (strict); None when kubernetes-validate has no schema for it."""
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return None
    except kubernetes_validate.ValidationError as exc:
        return [f"{_path(exc)}: {exc.message}"]
    return []


def custom_errors(doc: Doc, schema: Any, version: str = K8S_VERSION) -> list[str]:
    validator = jsonschema.Draft4Validator(schema)
    errors = [f"{_path(e)}: {e.message}" for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.path))]
    # The metadata as the API server checks it for every object: as a ConfigMap's.
    meta = builtin_errors({"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc.get("metadata") or {}}, version)
    return errors + (meta or [])


def schema_findings(doc: Doc, crds: CustomSchemas, version: str = K8S_VERSION) -> Finding:
    """Validate one resource against its schema."""
    kind, api = str(doc.get("kind", "?")), str(doc.get("apiVersion", "?"))
    found = Finding(kind, str((doc.get("metadata") or {}).get("name", "?")))
    group, _, api_version = api.rpartition("/")
    if group in crds.groups():
        served = crds.versions.get((group, kind))
        if served is None:
            found.errors.append(f"{api}: no CRD of kind {kind} in {CRDS}")
        elif api_version not in served:
            found.errors.append(f"{api}: the {kind} CRD serves only {', '.join(served)}")
        else:
            found.errors += custom_errors(doc, crds.schemas[(group, api_version, kind)], version)
        return found
    errors = builtin_errors(doc, version)
    if errors is not None:
        found.errors += errors
    elif kind in UNVALIDATED:
        found.note = f"not validated: {UNVALIDATED[kind]}"
    else:
        found.errors.append(f"cannot validate {api} {kind}: no schema (add its CRD, or list it in UNVALIDATED)")
    return found


# ------------------------------------------------------------------------------------------------ project rules


def _name(doc: Doc) -> str:
    return str(doc["metadata"]["name"])


def _of(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") == kind]


def _by_name(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {_name(d): d for d in _of(docs, kind)}


def _workloads(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d.get("kind") in WORKLOADS]


def _containers(pod: Doc) -> Iterator[tuple[Doc, bool]]:
    for c in pod.get("containers") or []:
        yield c, True
    for c in pod.get("initContainers") or []:
        yield c, False


def _pod_or_container(pod: Doc, container: Doc, key: str) -> Any:
    here = (container.get("securityContext") or {}).get(key)
    return here if here is not None else (pod.get("securityContext") or {}).get(key)


def _container_rules(pod: Doc, container: Doc, main: bool) -> list[str]:
    errors = []
    name = container.get("name")
    resources = container.get("resources") or {}
    for kind in ("requests", "limits"):
        missing = [r for r in ("cpu", "memory") if r not in (resources.get(kind) or {})]
        if missing:
            errors.append(f"container {name}: no {kind} for {', '.join(missing)}")
    gpu_limit = (resources.get("limits") or {}).get("nvidia.com/gpu")
    gpu_request = (resources.get("requests") or {}).get("nvidia.com/gpu", gpu_limit)
    if gpu_request != gpu_limit:
        errors.append(f"container {name}: nvidia.com/gpu requests {gpu_request} != limits {gpu_limit}")
    ports = {p.get("name") for p in container.get("ports") or []}
    for probe in ("livenessProbe", "readinessProbe") if main else ():
        if probe not in container:
            errors.append(f"container {name}: no {probe}")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        port = ((container.get(probe) or {}).get("httpGet") or {}).get("port")
        if isinstance(port, str) and port not in ports:
            errors.append(f"container {name}: {probe} uses port {port!r}, which the container does not name")
    ctx = container.get("securityContext") or {}
    if ctx.get("readOnlyRootFilesystem") is not True:
        errors.append(f"container {name}: securityContext.readOnlyRootFilesystem is not true")
    if ctx.get("allowPrivilegeEscalation") is not False:
        errors.append(f"container {name}: securityContext.allowPrivilegeEscalation is not false")
    if "ALL" not in ((ctx.get("capabilities") or {}).get("drop") or []):
        errors.append(f"container {name}: securityContext.capabilities.drop lacks ALL")
    if _pod_or_container(pod, container, "runAsNonRoot") is not True:
        errors.append(f"container {name}: runAsNonRoot is not true")
    if (_pod_or_container(pod, container, "seccompProfile") or {}).get("type") != "RuntimeDefault":
        errors.append(f"container {name}: seccompProfile is not RuntimeDefault")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    pre_stop = ((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}
    if pre_stop and not pre_stop.get("seconds", 0) < grace:
        errors.append(
            f"container {name}: preStop sleeps {pre_stop.get('seconds')} s, not less than the grace ({grace} s)"
        )
    volumes = {v.get("name") for v in pod.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        if mount.get("name") not in volumes:
            errors.append(f"container {name}: mounts {mount.get('name')!r}, which is not a volume of the pod")
    return errors


def _secret_provided(name: str, docs: list[Doc]) -> bool:
    """Secrets the manifests reference but do not hold: Strimzi writes the users' and the cluster CA's."""
    users = set(_by_name(docs, "KafkaUser"))
    cas = {f"{k}-cluster-ca-cert" for k in _by_name(docs, "Kafka")}
    return name in users or name in cas or name in OPERATOR_SECRETS


def _reference_rules(pod: Doc, docs: list[Doc]) -> list[str]:
    errors = []
    config_maps = {_name(d): d.get("data") or {} for d in _of(docs, "ConfigMap")}
    for container, _ in _containers(pod):
        for source in container.get("envFrom") or []:
            ref = (source.get("configMapRef") or {}).get("name")
            if ref is not None and ref not in config_maps:
                errors.append(f"envFrom ConfigMap {ref!r} is not in the build")
            ref = (source.get("secretRef") or {}).get("name")
            if ref is not None and not _secret_provided(ref, docs):
                errors.append(f"envFrom Secret {ref!r}: neither in the build nor made by Strimzi or the operator")
        for env in container.get("env") or []:
            value_from = env.get("valueFrom") or {}
            if "configMapKeyRef" in value_from:
                ref, key = value_from["configMapKeyRef"]["name"], value_from["configMapKeyRef"]["key"]
                if key not in config_maps.get(ref, {}):
                    errors.append(f"env {env['name']}: ConfigMap {ref!r} key {key!r} is not in the build")
            if "secretKeyRef" in value_from and not _secret_provided(value_from["secretKeyRef"]["name"], docs):
                errors.append(f"env {env['name']}: Secret {value_from['secretKeyRef']['name']!r} has no source")
    for volume in pod.get("volumes") or []:
        secret = (volume.get("secret") or {}).get("secretName")
        if secret is not None and not _secret_provided(secret, docs):
            errors.append(f"volume {volume['name']}: Secret {secret!r} has no source")
        config_map = (volume.get("configMap") or {}).get("name")
        if config_map is not None and config_map not in config_maps:
            errors.append(f"volume {volume['name']}: ConfigMap {config_map!r} is not in the build")
    account = pod.get("serviceAccountName")
    if account is not None and account not in _by_name(docs, "ServiceAccount"):
        errors.append(f"serviceAccountName {account!r} is not in the build")
    return errors


def _vto_env(workload: Doc, docs: list[Doc]) -> dict[str, str]:
    """The first container's environment: its ConfigMaps' keys, then its own env values."""
    container = workload["spec"]["template"]["spec"]["containers"][0]
    config_maps = {_name(d): d.get("data") or {} for d in _of(docs, "ConfigMap")}
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        env.update(config_maps.get((source.get("configMapRef") or {}).get("name", ""), {}))
    for item in container.get("env") or []:
        env[item["name"]] = str(item.get("value", "<from elsewhere>"))
    return env


def _env_source(workload: Doc, variable: str) -> Doc:
    """The valueFrom of the first container's `variable` ({} when it has none)."""
    container = workload["spec"]["template"]["spec"]["containers"][0]
    return next((e.get("valueFrom") or {} for e in container.get("env") or [] if e["name"] == variable), {})


def _running(docs: list[Doc], command: list[str], kinds: tuple[str, ...] = WORKLOADS) -> Doc | None:
    for d in _workloads(docs):
        if d["kind"] in kinds and d["spec"]["template"]["spec"]["containers"][0].get("command") == command:
            return d
    return None


def worker_deployment(docs: list[Doc]) -> Doc | None:
    return _running(docs, WORKER_COMMAND, ("Deployment",))


def gateway_workload(docs: list[Doc]) -> Doc | None:
    """The workload running `vto gateway`, of whatever kind (a Deployment is reported by `_gateway_rules`)."""
    return _running(docs, GATEWAY_COMMAND)


def analytics_workload(docs: list[Doc]) -> Doc | None:
    """The workload running `vto analytics worker`, of whatever kind (a Deployment is reported by
    `_analytics_rules`)."""
    return _running(docs, ANALYTICS_COMMAND)


def _setting(env: dict[str, str], field_name: str) -> str:
    return str(env.get(f"VTO_{field_name.upper()}", Settings.model_fields[field_name].default))


def _vto_rules(workload: Doc, docs: list[Doc]) -> list[str]:
    """Rules for every pod running a `vto` command (the workers, the gateway, the analytics workers)."""
    errors = []
    container = workload["spec"]["template"]["spec"]["containers"][0]
    command = container.get("command") or []
    env = _vto_env(workload, docs)
    fields = {f"VTO_{name.upper()}" for name in Settings.model_fields}
    errors += [
        f"{k} is not a setting of streams/settings.py" for k in sorted(env) if k.startswith("VTO_") and k not in fields
    ]
    port_setting = HTTP_PORT_SETTINGS.get(command[1] if len(command) > 1 else "")
    if port_setting is not None:
        port = int(_setting(env, port_setting))
        if {"name": "http", "containerPort": port} not in [
            {k: p.get(k) for k in ("name", "containerPort")} for p in container.get("ports") or []
        ]:
            errors.append(f"no container port named http on VTO_{port_setting.upper()} {port}")
        if env.get("VTO_BIND_ADDRESS") != "0.0.0.0":
            errors.append("VTO_BIND_ADDRESS is not 0.0.0.0: the probes and Prometheus could not reach the pod")
    if "VTO_KAFKA_BOOTSTRAP" in env:
        errors += _kafka_client_rules(workload, env, docs)
    return errors


def _kafka_client_rules(workload: Doc, env: dict[str, str], docs: list[Doc]) -> list[str]:
    """A Kafka client logs in as a KafkaUser of the build, with the password Strimzi wrote for that user, and
    Kafka's listener admits its pods (Strimzi's NetworkPolicy, from the listener's networkPolicyPeers)."""
    errors = []
    user = _setting(env, "kafka_user")
    if user not in _by_name(docs, "KafkaUser"):
        errors.append(f"VTO_KAFKA_USER {user!r} is not a KafkaUser of the build")
    secret = (_env_source(workload, "VTO_KAFKA_PASSWORD").get("secretKeyRef") or {}).get("name")
    if secret is not None and secret != user:
        errors.append(f"VTO_KAFKA_PASSWORD comes from the Secret {secret!r}, not {user!r}'s (VTO_KAFKA_USER)")
    host, _, port = env["VTO_KAFKA_BOOTSTRAP"].split(",")[0].rpartition(":")
    cluster = host.split(".")[0].removesuffix("-kafka-bootstrap")
    kafka = _by_name(docs, "Kafka").get(cluster)
    if kafka is None:
        return [*errors, f"VTO_KAFKA_BOOTSTRAP {host}: not the bootstrap Service of a Kafka of the build"]
    listeners = [li for li in kafka["spec"]["kafka"].get("listeners") or [] if str(li.get("port")) == port]
    if not listeners:
        return [*errors, f"VTO_KAFKA_BOOTSTRAP port {port}: no listener of Kafka {cluster!r}"]
    labels = workload["spec"]["template"]["metadata"].get("labels") or {}
    here = workload["metadata"].get("namespace")

    def admits(peer: Doc) -> bool:
        namespaces = peer.get("namespaceSelector")
        if namespaces is None:
            in_namespace = here == kafka["metadata"].get("namespace")
        else:
            in_namespace = _matches(namespaces, {"kubernetes.io/metadata.name": str(here)})
        selects = "podSelector" in peer or "namespaceSelector" in peer  # (an ipBlock peer admits no pods)
        return selects and in_namespace and _matches(peer.get("podSelector") or {}, labels)

    peers = listeners[0].get("networkPolicyPeers")
    if peers is not None and not any(admits(peer) for peer in peers):
        errors.append(f"Kafka {cluster!r}: the listener on {port} has no networkPolicyPeers entry for these pods")
    return errors


def _worker_rules(deployment: Doc, docs: list[Doc]) -> list[str]:
    errors = []
    env = _vto_env(deployment, docs)
    drain = float(_setting(env, "drain_timeout_s"))
    grace = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    if not grace > drain:
        errors.append(f"terminationGracePeriodSeconds {grace} is not longer than VTO_DRAIN_TIMEOUT_S {drain:g}")
    return errors


def _stateful_per_partition(
    workload: Doc, docs: list[Doc], what: str, instance: tuple[str, str, str, str], topic_setting: str
) -> tuple[list[tuple[str, str, str]], int | None]:
    """A StatefulSet whose pods each need a stable identity (`instance`: the env variable, the field it must come
    from, that field in words, the identity in words) and a partition of a topic each (at most as many replicas as
    the topic has partitions). Returns the errors and the topic's partitions (None: no such topic)."""
    kind, name = workload["kind"], _name(workload)
    variable, field, field_words, identity = instance
    errors: list[tuple[str, str, str]] = []
    if kind != "StatefulSet":
        errors.append((kind, name, f"the {what} is not a StatefulSet: its pods need stable {identity}"))
    source = _env_source(workload, variable)
    if (source.get("fieldRef") or {}).get("fieldPath") != field:
        errors.append((kind, name, f"{variable} does not come from {field_words} ({field})"))
    topic_name = _setting(_vto_env(workload, docs), topic_setting)
    topic = _by_name(docs, "KafkaTopic").get(topic_name)
    if topic is None:
        noun = topic_setting.removesuffix("_topic")
        return [*errors, (kind, name, f"the {noun} topic {topic_name!r} is not a KafkaTopic of the build")], None
    partitions: int = topic["spec"]["partitions"]
    replicas = workload["spec"].get("replicas", 1)
    if replicas > partitions:
        errors.append(
            (kind, name, f"replicas {replicas} > the {partitions} partitions of {topic_name}: pods without a partition")
        )
    return errors, partitions


def _gateway_rules(gateway: Doc, docs: list[Doc]) -> list[tuple[str, str, str]]:
    """Gateway instance N reads partition N of the replies topic, where the workers send its sessions' frames."""
    instance = ("VTO_GATEWAY_INSTANCE", POD_INDEX_FIELD, "the pod-index label", "instance numbers")
    errors, partitions = _stateful_per_partition(gateway, docs, "gateway", instance, "replies_topic")
    if partitions is None:
        return errors
    replies = _setting(_vto_env(gateway, docs), "replies_topic")
    worker = worker_deployment(docs)
    if worker is not None:
        # The workers refuse frames naming a reply partition >= their VTO_GATEWAY_REPLY_PARTITIONS (and would
        # fail writing to one the topic lacks): the setting must be the topic's partition count.
        setting = int(_setting(_vto_env(worker, docs), "gateway_reply_partitions"))
        if setting != partitions:
            errors.append(
                (
                    "Deployment",
                    _name(worker),
                    f"VTO_GATEWAY_REPLY_PARTITIONS {setting} != the {partitions} partitions of {replies}",
                )
            )
    return errors


def _analytics_rules(analytics: Doc, docs: list[Doc]) -> list[tuple[str, str, str]]:
    """Each analytics worker's transactional id is <group>.<VTO_ANALYTICS_INSTANCE>: a StatefulSet's pod name, which
    its replacement keeps (and so aborts at once what it left open); the consumer group shares the events topic's
    partitions out, so a pod beyond them would hold none (and never be ready)."""
    instance = ("VTO_ANALYTICS_INSTANCE", POD_NAME_FIELD, "the pod's name", "names")
    errors, _ = _stateful_per_partition(analytics, docs, "analytics worker", instance, "events_topic")
    return errors


def _statefulset_rules(statefulset: Doc, docs: list[Doc]) -> list[str]:
    service = _by_name(docs, "Service").get(statefulset["spec"].get("serviceName", ""))
    if service is None:
        return [f"serviceName {statefulset['spec'].get('serviceName')!r} is not a Service of the build"]
    errors = []
    if service["spec"].get("clusterIP") != "None":
        errors.append(f"serviceName {_name(service)!r} is not a headless Service (clusterIP: None)")
    if not _matches({"matchLabels": service["spec"].get("selector") or {}}, _template_labels(statefulset)):
        errors.append(f"serviceName {_name(service)!r} does not select its pods")
    return errors


def _template_labels(workload: Doc) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"].get("labels") or {})


def _service_rules(service: Doc, docs: list[Doc]) -> list[str]:
    """A Service of the build selects the pods of a Deployment or StatefulSet, on ports they have."""
    selector = service["spec"].get("selector")
    if not selector:
        return []
    selected = [w for w in _workloads(docs) if _matches({"matchLabels": selector}, _template_labels(w))]
    if not selected:
        return [f"its selector {selector} selects no pods of the build"]
    errors = []
    for port in service["spec"].get("ports") or []:
        target = port.get("targetPort", port.get("port"))
        for workload in selected:
            ports = [p for c in workload["spec"]["template"]["spec"]["containers"] for p in c.get("ports") or []]
            if not any(target in (p.get("name"), p.get("containerPort")) for p in ports):
                errors.append(f"port {port.get('name')}: targetPort {target!r} is not a port of {_name(workload)}")
    return errors


def _settings_value(docs: list[Doc], field_name: str) -> str:
    deployment = worker_deployment(docs)
    return _setting(_vto_env(deployment, docs) if deployment else {}, field_name)


def _scaledobject_rules(scaled: Doc, docs: list[Doc]) -> list[str]:
    errors = []
    spec = scaled["spec"]
    low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if low < 1:
        errors.append(f"minReplicaCount {low} < 1: scaling to zero leaves nothing to serve the first frame")
    if low > high:
        errors.append(f"minReplicaCount {low} > maxReplicaCount {high}")
    target = spec["scaleTargetRef"]
    deployments = _by_name(docs, "Deployment")
    if target.get("kind", "Deployment") != "Deployment" or target["name"] not in deployments:
        errors.append(f"scaleTargetRef {target.get('kind', 'Deployment')}/{target['name']} is not in the build")
    topics = _by_name(docs, "KafkaTopic")
    auths = _by_name(docs, "TriggerAuthentication")
    worker = worker_deployment(docs)
    kafka_topics = []
    for trigger in spec["triggers"]:
        ref = (trigger.get("authenticationRef") or {}).get("name")
        if ref is not None and ref not in auths:
            errors.append(f"trigger {trigger.get('name')}: TriggerAuthentication {ref!r} is not in the build")
        if trigger["type"] != "kafka":
            continue
        topic = trigger["metadata"].get("topic", "")
        kafka_topics.append(topic)
        if topic not in topics:
            errors.append(f"kafka trigger: topic {topic!r} is not a KafkaTopic of the build")
        elif high > topics[topic]["spec"]["partitions"]:
            partitions = topics[topic]["spec"]["partitions"]
            errors.append(f"maxReplicaCount {high} > the {partitions} partitions of {topic}: workers would idle")
    if worker is not None and target["name"] == _name(worker):
        frames, group = _settings_value(docs, "frames_topic"), _settings_value(docs, "worker_group")
        if frames not in kafka_topics:
            errors.append(f"the workers' ScaledObject has no kafka trigger on the frames topic {frames}")
        for trigger in spec["triggers"]:
            if trigger["type"] == "kafka" and trigger["metadata"].get("consumerGroup") != group:
                errors.append(f"kafka trigger: consumerGroup is not the workers' group {group!r}")
    return errors


def _matches(selector: Doc, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _monitoring_rules(docs: list[Doc]) -> list[tuple[str, str, str]]:
    errors = []
    workloads = {_name(w): w for w in _workloads(docs)}
    jobs: dict[str, str] = {}
    for monitor in _of(docs, "PodMonitor"):
        for endpoint in monitor["spec"].get("podMetricsEndpoints") or []:
            job = next(
                (
                    r.get("replacement")
                    for r in endpoint.get("relabelings") or []
                    if r.get("targetLabel") == "job" and r.get("action", "replace").lower() == "replace"
                ),
                None,
            )
            if job is None:
                errors.append(("PodMonitor", _name(monitor), "no relabeling sets the job label"))
                continue
            jobs[job] = _name(monitor)
            workload = workloads.get(JOBS.get(job, ""))
            if job not in JOBS:
                errors.append(("PodMonitor", _name(monitor), f"job {job!r}: expected one of {sorted(JOBS)}"))
                continue
            if workload is None:
                errors.append(("PodMonitor", _name(monitor), f"job {job!r}: no {JOBS[job]} workload in the build"))
                continue
            template = workload["spec"]["template"]
            if not _matches(monitor["spec"]["selector"], template["metadata"].get("labels") or {}):
                errors.append(
                    ("PodMonitor", _name(monitor), f"its selector does not select the pods of {_name(workload)}")
                )
            ports = {p.get("name") for c in template["spec"]["containers"] for p in c.get("ports") or []}
            if endpoint.get("port") not in ports:
                errors.append(
                    (
                        "PodMonitor",
                        _name(monitor),
                        f"port {endpoint.get('port')!r} is not a port of {_name(workload)}",
                    )
                )
    for job in sorted(set(JOBS) - set(jobs)):
        errors.append(("PodMonitor", "-", f"no PodMonitor gives job={job!r}, which the rules or dashboards select"))
    for rule in _of(docs, "PrometheusRule"):
        text = yaml.safe_dump(rule["spec"])
        for job in sorted(set(re.findall(r'job="([^"]+)"', text)) - set(jobs)):
            errors.append(("PrometheusRule", _name(rule), f'selects job="{job}", which no PodMonitor scrapes'))
    return errors


def _kafka_rules(docs: list[Doc]) -> list[tuple[str, str, str]]:
    errors = []
    settings_defaults = {name: f.default for name, f in Settings.model_fields.items()}
    clusters = _by_name(docs, "Kafka")
    for kind in ("KafkaNodePool", "KafkaTopic", "KafkaUser"):
        for doc in _of(docs, kind):
            cluster = (doc["metadata"].get("labels") or {}).get("strimzi.io/cluster")
            if cluster not in clusters:
                errors.append((kind, _name(doc), f"label strimzi.io/cluster={cluster!r} names no Kafka of the build"))
    for name, kafka_doc in clusters.items():
        spec = kafka_doc["spec"]["kafka"]
        config = spec.get("config") or {}
        brokers = sum(
            p["spec"]["replicas"]
            for p in _of(docs, "KafkaNodePool")
            if "broker" in p["spec"]["roles"] and p["metadata"]["labels"].get("strimzi.io/cluster") == name
        )
        for key in config:
            if key.startswith(STRIMZI_FORBIDDEN) and key not in STRIMZI_ALLOWED:
                errors.append(("Kafka", name, f"config {key}: Strimzi sets this itself and refuses it"))
        limit = int(settings_defaults["max_message_bytes"]) + 65536
        mirror = {
            "message.max.bytes": limit,
            "replica.fetch.max.bytes": limit,
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": 1000,
            "auto.create.topics.enable": False,
        }
        for key, value in mirror.items():
            if config.get(key) != value:
                errors.append(("Kafka", name, f"config {key}={config.get(key)!r}, the embedded broker has {value!r}"))
        session_ms = float(settings_defaults["worker_session_timeout_s"]) * 1000
        if float(config.get("group.min.session.timeout.ms", 6000)) > session_ms:
            errors.append(
                ("Kafka", name, f"group.min.session.timeout.ms > the workers' session timeout {session_ms:g} ms")
            )
        if spec.get("version") != settings_defaults["kafka_version"]:
            errors.append(
                (
                    "Kafka",
                    name,
                    f"version {spec.get('version')} != VTO_KAFKA_VERSION {settings_defaults['kafka_version']}",
                )
            )
        for key in (
            "default.replication.factor",
            "offsets.topic.replication.factor",
            "transaction.state.log.replication.factor",
        ):
            if int(config.get(key, 1)) > brokers:
                errors.append(("Kafka", name, f"{key} {config.get(key)} > its {brokers} broker(s)"))
        co_partitioned = {str(settings_defaults[setting]) for setting in CO_PARTITIONED}
        counts = {_name(t): t["spec"]["partitions"] for t in _of(docs, "KafkaTopic") if _name(t) in co_partitioned}
        if len(set(counts.values())) > 1:
            errors.append(("KafkaTopic", "co-partitioned", f"co-partitioned topics differ in partitions: {counts}"))
        isr = int(config.get("min.insync.replicas", 1))
        for topic in _of(docs, "KafkaTopic"):
            replicas = topic["spec"].get("replicas", config.get("default.replication.factor", 1))
            topic_isr = int((topic["spec"].get("config") or {}).get("min.insync.replicas", isr))
            if replicas > brokers:
                errors.append(("KafkaTopic", _name(topic), f"{replicas} replicas > {brokers} broker(s)"))
            if topic_isr > replicas:
                errors.append(
                    ("KafkaTopic", _name(topic), f"min.insync.replicas {topic_isr} > its {replicas} replicas")
                )
    return errors


def semantic_errors(docs: list[Doc]) -> list[tuple[str, str, str]]:
    """The project's rules over one built overlay: [(kind, name, error)]."""
    errors: list[tuple[str, str, str]] = []
    for doc in docs:
        kind, name = str(doc.get("kind")), _name(doc)
        pattern = DNS_LABEL if kind == "Service" else DNS_SUBDOMAIN
        if not pattern.match(name) or len(name) > 253:
            errors.append((kind, name, "the name is not a valid Kubernetes name"))
    for workload in _workloads(docs):
        kind, name = workload["kind"], _name(workload)
        pod = workload["spec"]["template"]["spec"]
        for container, main in _containers(pod):
            errors += [(kind, name, e) for e in _container_rules(pod, container, main)]
        errors += [(kind, name, e) for e in _reference_rules(pod, docs)]
        if (pod["containers"][0].get("command") or [""])[0] == "vto":
            errors += [(kind, name, e) for e in _vto_rules(workload, docs)]
        if kind == "StatefulSet":
            errors += [(kind, name, e) for e in _statefulset_rules(workload, docs)]
    for service in _of(docs, "Service"):
        errors += [("Service", _name(service), e) for e in _service_rules(service, docs)]
    worker = worker_deployment(docs)
    if worker is None:
        errors.append(("Deployment", "-", f"no Deployment runs {' '.join(WORKER_COMMAND)}"))
    else:
        errors += [("Deployment", _name(worker), e) for e in _worker_rules(worker, docs)]
        if not any(d["spec"]["scaleTargetRef"]["name"] == _name(worker) for d in _of(docs, "ScaledObject")):
            errors.append(("ScaledObject", "-", "no ScaledObject scales the workers"))
    gateway = gateway_workload(docs)
    if gateway is None:
        errors.append(("StatefulSet", "-", f"no StatefulSet runs {' '.join(GATEWAY_COMMAND)}"))
    else:
        errors += _gateway_rules(gateway, docs)
    analytics = analytics_workload(docs)
    if analytics is None:
        errors.append(("StatefulSet", "-", f"no StatefulSet runs {' '.join(ANALYTICS_COMMAND)}"))
    else:
        errors += _analytics_rules(analytics, docs)
    for scaled in _of(docs, "ScaledObject"):
        errors += [("ScaledObject", _name(scaled), e) for e in _scaledobject_rules(scaled, docs)]
    errors += _monitoring_rules(docs)
    errors += _kafka_rules(docs)

    def denies_all(policy: Doc) -> bool:
        spec = policy["spec"]
        return spec.get("podSelector") == {} and "Ingress" in spec.get("policyTypes", []) and not spec.get("ingress")

    if not any(denies_all(p) for p in _of(docs, "NetworkPolicy")):
        errors.append(("NetworkPolicy", "-", "no default-deny ingress policy for the namespace"))
    return errors


def project_errors(docs: list[Doc]) -> list[tuple[str, str, str]]:
    """`semantic_errors`, or one error when resources too malformed for them (already reported) stop them."""
    try:
        return semantic_errors(docs)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        return [("-", "-", f"project rules could not run on these resources: {exc!r}")]


# --------------------------------------------------------------------------------------------------------- main


def check(overlay: str, docs: list[Doc], crds: CustomSchemas, out: TextIO | None = None) -> int:
    """Print the findings of one built overlay; return its number of errors."""
    out = out or sys.stdout
    findings = [schema_findings(d, crds) for d in docs]
    by_resource = {(f.kind, f.name): f for f in findings}
    for kind, name, error in project_errors(docs):
        by_resource.setdefault((kind, name), Finding(kind, name)).errors.append(error)
    for f in by_resource.values():
        status = "; ".join(f.errors) if f.errors else (f.note or "valid")
        print(f"{overlay:<11} {f.kind:<22} {f.name:<32} {status}", file=out)
    bad = sum(1 for f in by_resource.values() if f.errors)
    noted = sum(1 for f in by_resource.values() if f.note and not f.errors)
    kinds = len({d.get("kind") for d in docs})
    print(
        f"{overlay}: {len(docs)} resources of {kinds} kinds, {len(docs) - bad - noted} valid, {noted} not validated, "
        f"{bad} with errors (Kubernetes {K8S_VERSION}, CRDs from {CRDS})",
        file=out,
    )
    return sum(len(f.errors) for f in by_resource.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--overlay", action="append", choices=OVERLAYS, help="default: every overlay")
    args = parser.parse_args(argv)
    kustomize = kustomize_binary()
    try:
        if kustomize is None:
            raise CheckError("no kustomize: set KUSTOMIZE or run `make kustomize` (.cache/bin/kustomize)")
        crds = CustomSchemas.load(CRDS)
        errors = sum(check(overlay, build(overlay, kustomize), crds) for overlay in args.overlay or OVERLAYS)
    except CheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
