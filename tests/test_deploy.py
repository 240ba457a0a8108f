"""The Kubernetes deployment (deploy/k8s): every overlay builds with kustomize, every rendered object
validates against the Kubernetes JSON schemas (kubernetes-validate, offline, strict) and KEDA's
ScaledObject against KEDA's CRD models (cloudcoil-models-keda), and the manifests match the code:
gRPC probes on the port the services listen on, the JetStream names in avlora/bus.py, a GPU for
every trainer, the metrics port, and the monitoring component (PodMonitor and PrometheusRule against
the Prometheus Operator's CRD models, every PromQL expression parsed and naming only metrics that
avlora/metrics.py defines, the Grafana dashboard).

kustomize is `kubectl kustomize` (or a `kustomize` binary) from the PATH; the test skips when
neither is installed."""

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from avlora import bus
from avlora.settings import LEDGER_ROLES

K8S = Path(__file__).resolve().parents[1] / "deploy" / "k8s"
OVERLAYS = ("local", "production", "production-gpu-preprocess", "production-web-ingress")
WORKERS = {"ingest": "ingest", "preprocess": "preprocess", "trainer": "train"}  # deployment -> stage
SERVICES = ("ledger", *WORKERS)
PORT = 50051
# The nats-jetstream trigger's metadata (keda.sh/docs/scalers/nats-jetstream): the CRD types it as
# a plain string map, so its keys are checked here against the documented parameters.
NATS_TRIGGER_REQUIRED = {"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"}
NATS_TRIGGER_OPTIONAL = {"activationLagThreshold", "useHttps"}


def _kustomize_command() -> list[str] | None:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, list[dict]]:
    command = _kustomize_command()
    if command is None:
        pytest.skip("neither `kubectl` (which has kustomize built in) nor `kustomize` is on the PATH")
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, tree)
    # What an operator does before applying production: secrets.env from the example.
    shutil.copy(tree / "overlays/production/secrets.env.example", tree / "overlays/production/secrets.env")
    # Production with the optional GPU preprocess component.
    variant = tree / "overlays/production-gpu-preprocess"
    variant.mkdir()
    (variant / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [../production]\ncomponents: [../../components/preprocess-gpu]\n")
    # Production with the optional Ingress of the web page.
    variant = tree / "overlays/production-web-ingress"
    variant.mkdir()
    (variant / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [../production]\ncomponents: [../../components/web-ingress]\n")
    out = {}
    for name in ("base", *OVERLAYS):
        path = tree / ("base" if name == "base" else f"overlays/{name}")
        result = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"kustomize build {name} failed:\n{result.stderr}"
        out[name] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return out


def _one(objects, kind, name):
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _container(deployment):
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


ALL = ("base", *OVERLAYS)


@pytest.mark.parametrize("overlay", ALL)
def test_every_object_validates_against_the_kubernetes_schemas(rendered, overlay):
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    for obj in rendered[overlay]:
        if obj["apiVersion"].startswith(("keda.sh/", "monitoring.coreos.com/")):
            continue  # CRDs: validated against their models below
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("overlay", ALL)
def test_scaled_objects_validate_against_the_keda_crd(rendered, overlay):
    from cloudcoil.models.keda.v1alpha1 import ScaledObject

    scaled = [o for o in rendered[overlay] if o["kind"] == "ScaledObject"]
    assert {o["metadata"]["name"] for o in scaled} == {f"avlora-{w}" for w in WORKERS}
    for obj in scaled:
        model = ScaledObject.model_validate(obj)
        # The models accept unknown fields; a field that does not survive the round trip is one
        # the CRD does not have (a typo such as minReplicas).
        assert model.model_dump(by_alias=True, exclude_none=True, mode="json") == obj


@pytest.mark.parametrize("overlay", ALL)
def test_every_service_has_grpc_probes_on_its_port(rendered, overlay):
    objects = rendered[overlay]
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("avlora-config"))
    assert config["data"]["AVLORA_GRPC_PORT"] == str(PORT)
    for service in SERVICES:
        deployment = _one(objects, "Deployment", f"avlora-{service}")
        container = _container(deployment)
        assert container["args"] == [service]  # deploy/entrypoint.sh runs services.<name>
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == PORT, f"{service} {probe}"
        assert {"name": "grpc", "containerPort": PORT, "protocol": "TCP"} in container["ports"]
        refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
        assert refs == {config["metadata"]["name"],
                        next(o["metadata"]["name"] for o in objects if o["kind"] == "Secret")}
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert "memory" in container["resources"]["limits"]
        svc = _one(objects, "Service", f"avlora-{service}")
        assert svc["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]][0] == (PORT, "grpc")
        if service != "ledger":
            assert len(svc["spec"]["ports"]) == 1


@pytest.mark.parametrize("overlay", ALL)
def test_the_ledger_api_scales_and_its_event_consumer_stays_one(rendered, overlay):
    """AVLORA_LEDGER_ROLE (services/ledger/__main__.py): the API Deployment serves, the events
    Deployment applies; one consumer, never two side by side (Recreate), on the same database."""
    objects = rendered[overlay]
    api, events = _one(objects, "Deployment", "avlora-ledger"), _one(objects, "Deployment", "avlora-ledger-events")
    roles = {name: {e["name"]: e.get("value") for e in _container(d).get("env", [])}.get("AVLORA_LEDGER_ROLE")
             for name, d in (("api", api), ("events", events))}
    assert roles == {"api": "api", "events": "events"} and set(roles.values()) <= set(LEDGER_ROLES)
    assert events["spec"]["replicas"] == 1 and events["spec"]["strategy"] == {"type": "Recreate"}
    assert api["spec"]["replicas"] >= (1 if overlay == "local" else 2)
    container = _container(events)
    assert container["args"] == ["ledger"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == PORT
    database = [{k: v for k, v in e.items() if k != "name"} for c in (_container(api), container)
                for e in c.get("env", []) if e["name"] == "AVLORA_DATABASE_URL"]
    assert len(database) in (0, 2) and database[:1] == database[1:]  # both from the Secret, or the same override
    assert not [o for o in objects if o["kind"] == "Service" and o["spec"]["selector"].get(
        "app.kubernetes.io/name") == "avlora-ledger-events"]  # clients never reach the consumer


@pytest.mark.parametrize("overlay", ALL)
def test_workers_reach_the_ledgers_internal_port(rendered, overlay):
    """The workers' AVLORA_LEDGER_ADDR names the ledger Service's port that leads to the ledger's
    LedgerService (AVLORA_INTERNAL_PORT), not the public JobService port."""
    objects = rendered[overlay]
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("avlora-config"))
    host, port = config["data"]["AVLORA_LEDGER_ADDR"].rsplit(":", 1)
    internal_port = int(config["data"]["AVLORA_INTERNAL_PORT"])
    assert internal_port != PORT and host == "avlora-ledger"
    target = next(p["targetPort"] for p in _one(objects, "Service", host)["spec"]["ports"] if p["port"] == int(port))
    container_ports = {p["name"]: p["containerPort"] for p in _container(_one(objects, "Deployment", host))["ports"]}
    assert container_ports[target] == internal_port


@pytest.mark.parametrize("overlay", ALL)
def test_gpus(rendered, overlay):
    objects = rendered[overlay]
    trainer = _container(_one(objects, "Deployment", "avlora-trainer"))
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == "1"
    preprocess = _container(_one(objects, "Deployment", "avlora-preprocess"))
    gpu_preprocess = overlay == "production-gpu-preprocess"
    assert ("nvidia.com/gpu" in preprocess["resources"].get("limits", {})) == gpu_preprocess
    assert preprocess["image"].split(":")[0].endswith("avlora-cuda") == gpu_preprocess
    for service in ("ledger", "ingest"):
        assert "nvidia.com/gpu" not in str(_one(objects, "Deployment", f"avlora-{service}"))


@pytest.mark.parametrize("overlay", ALL)
def test_fleets_scale_on_their_jetstream_consumers(rendered, overlay):
    objects = rendered[overlay]
    for deployment, stage in WORKERS.items():
        scaled = _one(objects, "ScaledObject", f"avlora-{deployment}")["spec"]
        assert scaled["scaleTargetRef"]["name"] == f"avlora-{deployment}"
        assert "replicas" not in _one(objects, "Deployment", f"avlora-{deployment}")["spec"]
        (trigger,) = scaled["triggers"]
        assert trigger["type"] == "nats-jetstream"
        meta = trigger["metadata"]
        assert NATS_TRIGGER_REQUIRED <= set(meta) <= NATS_TRIGGER_REQUIRED | NATS_TRIGGER_OPTIONAL
        assert meta["stream"] == bus.WORK_STREAM
        assert meta["consumer"] == bus.consumer_name(stage)
        assert int(meta["lagThreshold"]) >= 1
        host, _, port = meta["natsServerMonitoringEndpoint"].rpartition(":")
        assert host and port == "8222"
        assert 0 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    assert _one(objects, "ScaledObject", "avlora-trainer")["spec"]["minReplicaCount"] == 0
    # Ingest and preprocess serve direct RPCs (Upload, InspectDataset): never scaled to zero.
    for deployment in ("ingest", "preprocess"):
        assert _one(objects, "ScaledObject", f"avlora-{deployment}")["spec"]["minReplicaCount"] >= 1


def _secret(objects):
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def test_production_uses_the_object_store_and_its_credentials(rendered):
    objects = rendered["production"]
    secret = _secret(objects)
    assert {"AVLORA_DATABASE_URL", "AVLORA_INTERNAL_TOKEN", "AVLORA_STORE_URL", "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"} <= set(secret)
    assert secret["AVLORA_STORE_URL"].startswith("s3://")
    assert all(o["metadata"].get("namespace") == "avlora" for o in objects)
    api = _one(objects, "Service", "avlora-api")
    assert api["spec"]["selector"] == {"app.kubernetes.io/name": "avlora-ledger"}
    # No shared volume: each pod's data dir is scratch.
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] != "avlora-models"]


def test_local_shares_one_local_path_store_and_needs_no_object_store(rendered):
    objects = rendered["local"]
    assert "AVLORA_STORE_URL" not in _secret(objects)
    store = _one(objects, "PersistentVolumeClaim", "avlora-store")
    assert store["spec"]["storageClassName"] == "local-path"
    for service in SERVICES:
        volumes = _one(objects, "Deployment", f"avlora-{service}")["spec"]["template"]["spec"]["volumes"]
        data = next(v for v in volumes if v["name"] == "data")
        assert data == {"name": "data", "persistentVolumeClaim": {"claimName": "avlora-store"}}


METRICS_PORT = 9464
DOCKERFILE = K8S.parent / "Dockerfile"


@pytest.mark.parametrize("overlay", ALL)
def test_every_pod_serves_metrics_logs_json_and_runs_as_the_images_user(rendered, overlay):
    objects = rendered[overlay]
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("avlora-config"))
    assert config["data"]["AVLORA_METRICS_PORT"] == str(METRICS_PORT)
    assert config["data"]["AVLORA_LOG_FORMAT"] == "json"
    user = re.search(r"^USER (\d+):(\d+)$", DOCKERFILE.read_text(), re.M)
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        container = _container(deployment)
        assert {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"} in container["ports"]
        pod = deployment["spec"]["template"]["spec"]["securityContext"]
        assert pod["runAsNonRoot"] and (str(pod["runAsUser"]), str(pod["runAsGroup"])) == user.groups()


def _monitoring(objects):
    return (_one(objects, "PodMonitor", "avlora"), _one(objects, "PrometheusRule", "avlora"),
            _one(objects, "ConfigMap", "avlora-grafana-dashboard"))


def test_production_is_monitored_and_the_monitoring_validates(rendered):
    from cloudcoil.models.prometheus_operator.v1 import PodMonitor, PrometheusRule

    objects = rendered["production"]
    pod_monitor, rule, dashboard = _monitoring(objects)
    for obj, model in ((pod_monitor, PodMonitor), (rule, PrometheusRule)):
        assert model.model_validate(obj).model_dump(by_alias=True, exclude_none=True, mode="json") == obj
    # The PodMonitor selects every avlora pod, on the port each names `metrics`.
    selector = pod_monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == \
        {f"avlora-{s}" for s in SERVICES} | {"avlora-ledger-events", "avlora-web"}
    for deployment in deployments:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), deployment["metadata"]["name"]
        assert endpoint["port"] in {p["name"] for p in _container(deployment)["ports"]}
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert pod_monitor["metadata"]["namespace"] == rule["metadata"]["namespace"] == "avlora"
    assert not [o for o in rendered["local"] if o["kind"] in ("PodMonitor", "PrometheusRule")]  # no operator there


def _exported() -> dict[str, set[str]]:
    """Each metric of avlora/metrics.py: its series names (a counter's _total, a histogram's parts)."""
    from prometheus_client.metrics import MetricWrapperBase

    from avlora import metrics
    found = {}
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            (described,) = metric.describe()
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(described.type, [""])
            found[described.name] = {described.name + suffix for suffix in suffixes}
    return found


def test_every_alert_and_panel_query_parses_and_names_real_metrics(rendered):
    import promql_parser

    pod_monitor, rule, dashboard = _monitoring(rendered["production"])
    exported = _exported()
    series = set().union(*exported.values())
    alerts = {r["alert"]: r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]}
    panels = json.loads(dashboard["data"]["avlora.json"])["panels"]
    queries = [target["expr"] for panel in panels for target in panel["targets"]]
    named = {}
    for expr in [*alerts.values(), *queries]:
        promql_parser.parse(expr)  # raises on a syntax error
        named[expr] = set(re.findall(r"\bavlora_\w+", expr))
        assert named[expr] and named[expr] <= series, f"{expr}: {named[expr] - series} not exported"
    # The alerts: a job stuck in a state, a queue with no consumer, the failure rate, the
    # ledger's database errors.
    assert named[alerts["AvloraJobStuck"]] == {"avlora_job_unchanged_seconds"}
    assert named[alerts["AvloraStageQueueStalled"]] == {"avlora_queue_pending", "avlora_queue_in_progress"}
    assert 'state="FAILED"' in alerts["AvloraJobFailureRate"]
    assert named[alerts["AvloraLedgerDatabaseErrors"]] == {"avlora_ledger_database_errors_total"}
    # The dashboard shows every metric.
    shown = set().union(*(named[q] for q in queries))
    assert [name for name, names in exported.items() if not names & shown] == []
@pytest.mark.parametrize("overlay", ALL)
def test_the_web_page_holds_no_privilege_and_reaches_the_public_ports(rendered, overlay):
    """services/web: HTTP probes on the port it listens on, no Secret and no config of the workers
    (it calls the public JobService and ingest's Upload with each user's key), a Service in front;
    with the web-ingress component, an Ingress to that Service and the cookie sent over HTTPS only."""
    from services.web.settings import WebSettings
    from avlora import config

    objects = rendered[overlay]
    deployment = _one(objects, "Deployment", "avlora-web")
    container = _container(deployment)
    assert container["args"] == ["web"]
    assert "envFrom" not in container and "volumes" not in deployment["spec"]["template"]["spec"]
    settings = config.from_env(WebSettings, {e["name"]: e["value"] for e in container["env"] if "value" in e})
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    assert settings.port == port and settings.host == "0.0.0.0"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    for address, service in ((settings.api_addr, "avlora-ledger"), (settings.ingest_addr, "avlora-ingest")):
        host, target = address.rsplit(":", 1)
        assert host == service
        ports = {p["port"]: p["targetPort"] for p in _one(objects, "Service", service)["spec"]["ports"]}
        assert ports[int(target)] == "grpc"  # the public port, never the ledger's internal one
    svc = _one(objects, "Service", "avlora-web")
    assert svc["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["http"]
    ingresses = [o for o in objects if o["kind"] == "Ingress"]
    assert settings.secure_cookie == (overlay == "production-web-ingress") == bool(ingresses)
    for ingress in ingresses:
        (rule,) = ingress["spec"]["rules"]
        backend = rule["http"]["paths"][0]["backend"]["service"]
        assert backend == {"name": "avlora-web", "port": {"name": "http"}}
        assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]
