"""Checks of the deployment files that no off-the-shelf linter on PyPI makes (run by deploy/lint.sh).

- nginx: deploy/nginx/nginx.conf parses, and every directive is one nginx knows (crossplane).
- PromQL: every query of the Grafana dashboard and every alerting rule parses (promql-parser),
  with Grafana's $__rate_interval / $__interval / $__range read as plain durations.
- Prometheus: the scrape config loads, has the `bot` job, and the rule files it names exist.

Prints one line per problem and exits 1 if there is any; needs no network and no nginx,
Prometheus or Grafana binaries (`nginx -t` and `promtool check` are not run here).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import crossplane
import promql_parser
import yaml

DEPLOY = Path(__file__).resolve().parent
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def nginx_problems(path: Path) -> Iterator[str]:
    result = crossplane.parse(str(path), strict=True, single=True)
    for error in result["errors"]:
        yield f"{path.relative_to(DEPLOY.parent)}: {error['error']}"


def dashboard_queries(path: Path) -> Iterator[tuple[str, str]]:
    """(panel title, expression) of every query, row panels' children included."""
    def panels(items: list[dict]) -> Iterator[dict]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(json.loads(path.read_text(encoding="utf-8"))["panels"]):
        for target in panel.get("targets", []):
            yield panel.get("title", "?"), target["expr"]


def alert_rules(path: Path) -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule.get("record", "?"), rule["expr"]


def promql_problems(where: str, queries: Iterator[tuple[str, str]]) -> Iterator[str]:
    for name, expr in queries:
        text = re.sub(r"\$__\w+", lambda m: GRAFANA_VARIABLES.get(m.group(0), m.group(0)), expr)
        try:
            promql_parser.parse(text)
        except ValueError as exc:
            yield f"{where}: {name!r}: {exc}: {expr}"


def prometheus_problems(path: Path) -> Iterator[str]:
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    jobs = [job.get("job_name") for job in config.get("scrape_configs", [])]
    if "bot" not in jobs:
        yield f"{path.name}: no scrape job named 'bot' (jobs: {jobs})"
    for rule_file in config.get("rule_files", []):
        # Mounted under /etc/prometheus/ by deploy/docker-compose.yml, beside prometheus.yml.
        if not (path.parent / Path(rule_file).name).is_file():
            yield f"{path.name}: rule file {rule_file} is not in {path.parent.relative_to(DEPLOY.parent)}/"


def main() -> int:
    problems = [
        *nginx_problems(DEPLOY / "nginx" / "nginx.conf"),
        *promql_problems("grafana/bot-dashboard.json", dashboard_queries(DEPLOY / "grafana" / "bot-dashboard.json")),
        *promql_problems("prometheus/alerts.yml", alert_rules(DEPLOY / "prometheus" / "alerts.yml")),
        *prometheus_problems(DEPLOY / "prometheus" / "prometheus.yml"),
    ]
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print("nginx.conf, PromQL of the dashboard and alerts, prometheus.yml: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
