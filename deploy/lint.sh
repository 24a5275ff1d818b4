#!/usr/bin/env bash
# Lints of the deployment files (`make lint` runs it). Every tool is a PyPI package of the dev
# extras and works offline (schemas bundled); no Docker, nginx, kubectl or Prometheus needed.
#
#   YAML syntax and style     yamllint (.yamllint), the whole repository
#   Dockerfile                hadolint
#   compose files             check-jsonschema with its bundled compose-spec schema
#   Kubernetes manifests      kubernetes-validate --strict (bundled schemas), oldest and newest
#                             Kubernetes this targets; secret.example.yaml included
#   nginx, PromQL, Prometheus deploy/lint.py (crossplane, promql-parser)
#
# Not run (binaries not on PyPI): `nginx -t`, `promtool check config`, `docker compose config`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"
# Oldest Kubernetes the manifests must apply to (CronJob timeZone is GA from 1.27) and the
# newest schema kubernetes-validate ships.
K8S_VERSIONS=(1.29.0 "")

step() { printf '== %s\n' "$*"; }

step "yamllint"
"$BIN/yamllint" --strict .

step "hadolint Dockerfile"
"$BIN/hadolint" Dockerfile

step "compose files against the compose-spec schema"
"$BIN/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml deploy/docker-compose.yml

for version in "${K8S_VERSIONS[@]}"; do
  step "Kubernetes manifests (kubernetes-validate --strict${version:+ -k $version})"
  "$BIN/kubernetes-validate" --strict --quiet ${version:+-k "$version"} deploy/k8s/*.yaml
done

step "nginx, PromQL, Prometheus"
"$BIN/python" deploy/lint.py
