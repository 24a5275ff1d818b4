"""The deployment files agree with the service and with each other.

deploy/lint.sh checks syntax and schemas; these tests check what an operator would run into:
a probe on a path the service does not answer, a Service that selects no pod, a proxy in front
of a single worker, a command the CLI does not have, a secret in an example file, a dashboard
panel over a metric nobody exports, an image build that the lock file no longer satisfies.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import crossplane
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from bot.app import MAX_BODY_BYTES
from bot.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
METRICS = {
    "bot_turn_seconds",
    "bot_nlu_confidence",
    "bot_nlu_fallback_total",
    "bot_intent_total",
    "bot_handoff_queue_length",
    "bot_handoff_wait_seconds",
    "bot_outbox_backlog",
    "bot_outbox_failures_total",
    "bot_model_info",
    "bot_http_requests_total",
}
PLACEHOLDER = "CHANGE_ME"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|DATABASE_URL|REDIS_URL")


def k8s_objects() -> list[dict[str, Any]]:
    objects = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        objects += [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    return objects


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [obj for obj in k8s_objects() if obj["kind"] == kind]


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """(workload name, pod spec) of every Deployment, Job and CronJob."""
    for obj in k8s_objects():
        spec = obj.get("spec", {})
        if obj["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if "template" in spec:
            yield f"{obj['kind']}/{obj['metadata']['name']}", spec["template"]["spec"]


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))


def cli_accepts(command: list[str]) -> None:
    """`python -m bot ...` as the CLI parses it (exits on an unknown command or option)."""
    assert command[:3] == ["python", "-m", "bot"], command
    build_parser().parse_args(command[3:])


def serve_defaults() -> Any:
    return build_parser().parse_args(["serve"])


# --- Kubernetes -------------------------------------------------------------------------


def test_every_deployment_is_probed_on_ready_and_health() -> None:
    deployments = of_kind("Deployment")
    assert deployments
    for deployment in deployments:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            name = f"{deployment['metadata']['name']}/{container['name']}"
            assert container["readinessProbe"]["httpGet"]["path"] == "/ready", name
            assert container["livenessProbe"]["httpGet"]["path"] == "/health", name
            # The model loads (or trains) before /health answers: liveness must not kill it then.
            assert container["startupProbe"]["httpGet"]["path"] == "/health", name
            assert container["resources"]["requests"] and container["resources"]["limits"], name


def test_workers_get_time_to_finish_turns_in_flight() -> None:
    grace = getattr(serve_defaults(), "grace", 30.0)
    for deployment in of_kind("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
            assert pre_stop[0] == "sleep"
            assert pod["terminationGracePeriodSeconds"] > float(pre_stop[1]) + grace


def test_pods_run_non_root_on_a_read_only_root_filesystem() -> None:
    for name, pod in pod_specs():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            mounts = [mount["mountPath"] for mount in container["volumeMounts"]]
            # Model archives and matplotlib's cache go to /tmp; the workers also write the logs
            # of retraining jobs started from the console to /app/var.
            assert "/tmp" in mounts, name
            assert name.split("/")[0] != "Deployment" or "/app/var" in mounts, name


def test_k8s_commands_are_commands_of_the_cli() -> None:
    commands = {name: pod["containers"][0]["command"] for name, pod in pod_specs()}
    for command in commands.values():
        cli_accepts(command)
    assert ["python", "-m", "bot", "db", "upgrade"] in commands.values()
    serve = next(c for c in commands.values() if c[3] == "serve")
    port = int(serve[serve.index("--port") + 1])
    deployment = of_kind("Deployment")[0]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == port


def test_service_ingress_hpa_and_pdb_point_at_the_workers() -> None:
    deployment = of_kind("Deployment")[0]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    name = deployment["metadata"]["name"]
    assert deployment["spec"]["replicas"] >= 2

    def selects_workers(selector: dict[str, str]) -> bool:
        return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())

    (service,) = of_kind("Service")
    assert selects_workers(service["spec"]["selector"])
    port_names = {port["name"] for port in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names

    paths = {}
    for ingress in of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] == service["metadata"]["name"]
                paths[path["path"]] = ingress["metadata"]["annotations"]
    assert "/" in paths and "/console/ws" in paths
    # The console's WebSocket idles for long stretches; customers' requests must not.
    assert int(paths["/console/ws"]["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(paths["/"]["nginx.ingress.kubernetes.io/proxy-read-timeout"]) <= 120

    (hpa,) = of_kind("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert hpa["spec"]["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]

    (pdb,) = of_kind("PodDisruptionBudget")
    assert selects_workers(pdb["spec"]["selector"]["matchLabels"])


def test_config_and_secret_are_what_the_workloads_read() -> None:
    (config,) = of_kind("ConfigMap")
    (secret,) = of_kind("Secret")
    for name, pod in pod_specs():
        sources = pod["containers"][0]["envFrom"]
        assert {"configMapRef": {"name": config["metadata"]["name"]}} in sources, name
        assert {"secretRef": {"name": secret["metadata"]["name"]}} in sources, name
    # Settings are read from the environment by these names (backend/settings.py).
    assert {"DATABASE_URL", "REDIS_URL"} <= set(secret["stringData"])
    assert not SECRET_NAME.search(" ".join(config["data"]))


# --- docker compose and nginx -----------------------------------------------------------


def test_compose_runs_two_or_more_workers_behind_the_proxy() -> None:
    services = compose()["services"]
    workers = {name: s for name, s in services.items() if s.get("command", [])[3:4] == ["serve"]}
    assert sum(s.get("deploy", {}).get("replicas", 1) for s in workers.values()) >= 2
    for name, worker in workers.items():
        cli_accepts(worker["command"])
        assert "ports" not in worker, f"{name} must be reached through the proxy only"
        assert "/ready" in " ".join(worker["healthcheck"]["test"])
        assert worker["read_only"] is True and {"/tmp", "/app/var"} <= set(worker["tmpfs"]), name
        assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    migrate = services["migrate"]["command"]
    cli_accepts(migrate)
    assert migrate[3:] == ["db", "upgrade"]

    proxy = services["proxy"]
    assert proxy["ports"]
    assert all(proxy["depends_on"][name]["condition"] == "service_healthy" for name in workers)
    upstream = nginx_directives("upstream")[0]
    servers = [d["args"][0] for d in upstream["block"] if d["directive"] == "server"]
    for name, worker in workers.items():
        port = int(worker["command"][worker["command"].index("--port") + 1])
        assert f"{name}:{port}" in servers


def test_every_long_running_compose_service_has_a_healthcheck() -> None:
    for name, service in compose()["services"].items():
        if service.get("restart") != "no":
            assert service.get("healthcheck", {}).get("test"), name


def nginx_directives(name: str) -> list[dict[str, Any]]:
    parsed = crossplane.parse(str(DEPLOY / "nginx" / "nginx.conf"), single=True)
    assert parsed["status"] == "ok", parsed["errors"]

    def walk(block: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for directive in block:
            yield directive
            yield from walk(directive.get("block", []))

    return [d for d in walk(parsed["config"][0]["parsed"]) if d["directive"] == name]


def location(path: str) -> list[dict[str, Any]]:
    matches = [d["block"] for d in nginx_directives("location") if d["args"][-1] == path]
    assert matches, f"no location for {path}"
    return matches[0]


def headers(block: list[dict[str, Any]]) -> dict[str, str]:
    return {d["args"][0].lower(): d["args"][1] for d in block if d["directive"] == "proxy_set_header"}


def test_nginx_forwards_the_client_and_upgrades_the_console_websocket() -> None:
    (server,) = [d for d in nginx_directives("server") if "block" in d]  # not the upstream's servers
    forwarded = headers(server["block"])
    assert forwarded["x-forwarded-for"] == "$proxy_add_x_forwarded_for"
    # The host with the port the browser used ($host drops it): the console checks the
    # WebSocket's Origin against it, so on :8080 $host would refuse every agent.
    assert forwarded["host"] == "$http_host"
    # A location with its own proxy_set_header inherits none: the WebSocket repeats them all.
    ws = headers(location("/console/ws"))
    assert ws["upgrade"] == "$http_upgrade" and ws["connection"].lower() == "upgrade"
    assert ws["x-forwarded-for"] == "$proxy_add_x_forwarded_for" and ws["host"] == "$http_host"
    # Prometheus reads /metrics on the internal network, never through the proxy.
    assert ["404"] in [d["args"] for d in location("/metrics") if d["directive"] == "return"]


def test_nginx_lets_the_service_answer_oversized_bodies_itself() -> None:
    """Bodies up to the proxy's limit reach the service, which answers a JSON 413 over 64 KB."""
    (limit,) = nginx_directives("client_max_body_size")
    size = limit["args"][0].lower()
    multiplier = {"k": 1024, "m": 1024 * 1024}.get(size[-1], 1)
    assert int(size.rstrip("km")) * multiplier > MAX_BODY_BYTES
    for timeout in ("proxy_read_timeout", "proxy_connect_timeout", "client_body_timeout"):
        assert nginx_directives(timeout), timeout


# --- example files ----------------------------------------------------------------------


def env_example() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / ".env.production.example").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("#"):
            line = line.lstrip("# ")
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*=\S.*", line):
                continue  # prose
        if "=" in line:
            key, value = line.split("=", 1)
            values[key] = value.split("#")[0].strip()
    return values


def test_example_env_file_holds_placeholders_only() -> None:
    values = env_example()
    secrets = {key: value for key, value in values.items() if SECRET_NAME.search(key)}
    assert {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "URL_SIGNING_SECRET"} <= set(secrets)
    assert all(value == PLACEHOLDER for value in secrets.values()), secrets
    # Every variable compose requires (${VAR:?...}) is in the example, so a copy of it works.
    required = set(re.findall(r"\$\{([A-Z_]+):\?", (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")))
    assert required <= set(values)
    assert ".env.production" in (DEPLOY / ".gitignore").read_text(encoding="utf-8").split()


def test_example_secret_holds_placeholders_only() -> None:
    (secret,) = of_kind("Secret")
    for key, value in secret["stringData"].items():
        assert PLACEHOLDER in value, key
        assert value.replace(PLACEHOLDER, "") == "" or "example" in value, key


# --- monitoring -------------------------------------------------------------------------


def metric_names(expression: str) -> set[str]:
    names = set(re.findall(r"\bbot_[a-z_]+\b", expression))
    return {re.sub(r"_(bucket|count|sum)$", "", name) for name in names}


def test_dashboard_charts_exactly_the_service_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "bot-dashboard.json").read_text(encoding="utf-8"))
    used = set()
    titles = []
    for panel in dashboard["panels"]:
        titles.append(panel["title"].lower())
        for target in panel.get("targets", []):
            used |= metric_names(target["expr"])
    assert used == METRICS
    for panel in ("turns / s", "turn latency", "fallback", "intents", "handoff queue", "handoff wait",
                  "outbox backlog", "outbox failures", "model version", "5xx"):
        assert any(panel in title for title in titles), panel
    # The names are a contract with bot/metrics.py (counters gain _total when exported).
    source = (ROOT / "bot" / "metrics.py").read_text(encoding="utf-8")
    for metric in METRICS:
        assert f'"{metric.removesuffix("_total")}"' in source, metric


def test_prometheus_scrapes_the_workers_and_alerts_on_known_metrics() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "bot"]
    assert job["metrics_path"] == "/metrics"
    assert job["dns_sd_configs"][0]["names"] == ["bot"]
    assert job["dns_sd_configs"][0]["port"] == serve_defaults().port
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    for rule in alerts["groups"][0]["rules"]:
        assert metric_names(rule["expr"]) <= METRICS, rule["alert"]


# --- image ------------------------------------------------------------------------------


def lock_pins() -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes) from requirements.lock."""
    pins: dict[str, tuple[Version, int]] = {}
    current = None
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if match := re.match(r"^([A-Za-z0-9._-]+)==([^\s\\;]+)", line):
            current = canonicalize_name(match.group(1))
            pins[current] = (Version(match.group(2)), 0)
        elif "--hash=sha256:" in line and current:
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
    return pins


def test_lock_file_pins_every_runtime_dependency_with_hashes() -> None:
    """`pip install --require-hashes -r requirements.lock` in the Dockerfile fails on a
    dependency that is missing or unhashed: re-run deploy/lock.sh after changing pyproject.toml."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = lock_pins()
    assert all(hashes for _, hashes in pins.values())
    for dependency in pyproject["project"]["dependencies"]:
        requirement = Requirement(dependency)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock: run deploy/lock.sh"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name][0]}, pyproject.toml wants {requirement.specifier}: "
            "run deploy/lock.sh"
        )


@pytest.mark.parametrize("line", [
    "pip install --no-cache-dir --require-hashes -r requirements.lock",
    "pip install --no-cache-dir --no-deps .",
])
def test_dockerfile_installs_from_the_lock(line: str) -> None:
    assert line in (ROOT / "Dockerfile").read_text(encoding="utf-8")


def test_files_the_dockerfile_copies_exist() -> None:
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                if "*" not in source:
                    assert (ROOT / source).exists(), source
