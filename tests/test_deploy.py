"""Issue 15 item 7: the deploy assets parse, match the bridge they deploy (probes, ports, user, grace,
every secret the bridge reads) and name only metrics a running bridge's /metrics exports."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config import parse_config
from bridge.settings import Settings
from tests.harness.bridge_process import BridgeProcess
from tests.harness.fake_slack import FakeSlack
from tests.helpers import suite_fleet

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
KUBE = DEPLOY / "kubernetes"
METRIC = re.compile(r"\bbridge_[a-z0-9_]+")
# Every setting the bridge holds as a secret (SecretStr), by its environment variable name.
SECRET_ENV = sorted(
    n.upper() for n, field in Settings.model_fields.items() if "SecretStr" in str(field.annotation)
)


def documents() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object in deploy/kubernetes/, by kind."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict) and doc.get("kind"), path
            objects[doc["kind"]] = doc
    return objects


def container() -> dict[str, Any]:
    [bridge] = documents()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return bridge


def env_of(bridge: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in bridge["env"]}


def test_every_file_parses_and_kustomize_lists_every_object() -> None:
    objects = documents()
    assert set(objects) >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Kustomization",
    }
    listed = set(objects["Kustomization"]["resources"])
    on_disk = {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == on_disk  # the example Secret is never applied with real values from the repo
    json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    assert yaml.safe_load((DEPLOY / "prometheus-alerts.yaml").read_text())["groups"]


def test_probes_ports_and_service_match_the_bridge() -> None:
    bridge, objects = container(), documents()
    env = env_of(bridge)
    [port] = bridge["ports"]
    assert port["containerPort"] == int(env["BRIDGE_PORT"]["value"]) == 8080  # the image's EXPOSE
    assert env["BRIDGE_HOST"]["value"] == "0.0.0.0"
    assert bridge["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert bridge["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    [service_port] = objects["Service"]["spec"]["ports"]
    assert service_port["targetPort"] == port["name"]
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        spec = objects[kind]["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= labels.items(), kind
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", objects["Deployment"]["metadata"]["name"])
    annotations = objects["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"


def test_non_root_and_sigterm_grace_above_the_configured_shutdown_grace() -> None:
    objects = documents()
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
    assert "--uid 10001" in (REPO / "Dockerfile").read_text()
    config = parse_config(objects["ConfigMap"]["data"]["config.yaml"], "configmap.yaml")
    pre_stop = container()["lifecycle"]["preStop"]["exec"]["command"]
    pause_s = float(pre_stop[-1]) if pre_stop[0] == "sleep" else 0.0
    assert pod["terminationGracePeriodSeconds"] > config.delivery.shutdown_grace_s + pause_s
    mount = container()["volumeMounts"][0]["mountPath"]
    assert env_of(container())["BRIDGE_CONFIG"]["value"] == f"{mount}/config.yaml"


def test_every_secret_comes_from_the_secret_and_redis_is_external() -> None:
    env = env_of(container())
    secret = documents()["Secret"]
    assert "BRIDGE_REPLY_SECRET" in SECRET_ENV and len(SECRET_ENV) >= 6
    for name in [*SECRET_ENV, "REDIS_URL"]:  # REDIS_URL may hold a password
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (secret["metadata"]["name"], name)
        assert secret["stringData"][name] == ""  # the example holds no value
    assert env["REDIS_CLUSTER"]["value"] in ("0", "1")


def named_metrics() -> set[str]:
    texts = [(DEPLOY / "prometheus-alerts.yaml").read_text()]
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    texts += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    names = {name for text in texts for name in METRIC.findall(text)}
    assert names
    return names


def exported(text: str) -> set[str]:
    """Sample names /metrics can export: those written, and each family's (even before a sample)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            if kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


@pytest.fixture
async def running(tmp_path: Path, redis_url: str, fake_slack: FakeSlack) -> AsyncIterator[BridgeProcess]:
    fleet = suite_fleet(tmp_path, redis_url, fake_slack.url)
    try:
        yield await fleet.start(config=yaml.safe_load(documents()["ConfigMap"]["data"]["config.yaml"]))
    finally:
        await fleet.close()


async def test_every_metric_the_dashboard_and_alerts_name_is_exported(running: BridgeProcess) -> None:
    missing = named_metrics() - exported(await running.metrics())
    assert not missing, f"named in deploy/ but not exported by /metrics: {sorted(missing)}"


def test_the_alerts_cover_what_the_issue_asks() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus-alerts.yaml").read_text())["groups"][0]["rules"]
    by_name = {rule["alert"]: rule for rule in rules}
    alerts = {
        "BridgeRedisUnavailable",
        "BridgeSlackAuthFailing",
        "BridgeSlackChannelUnusable",
        "BridgeSlackChannelSaturated",
    }
    assert alerts | {"BridgeDeadLettersRising", "BridgeWebhook5xx"} <= set(by_name)
    for rule in rules:
        assert rule["expr"] and rule["annotations"]["summary"] and rule["labels"]["severity"]
    titles = [
        panel["title"] for panel in json.loads((DEPLOY / "grafana-dashboard.json").read_text())["panels"]
    ]
    for wanted in (
        "Webhooks by outcome",
        "Handovers open",
        "Delivery latency",
        "Outbox pending",
        "Dead letters",
    ):
        assert any(title.startswith(wanted) for title in titles), wanted
    assert "Redis errors" in titles
