#!/usr/bin/env bash
# Known vulnerabilities in the image's dependencies (`make audit`): pip-audit over
# requirements.lock, against the PyPI advisory data (PyPI's JSON API, per pinned version).
# --disable-pip: the lock is complete and hashed, so nothing needs resolving or installing.
# --strict: a package that could not be checked fails the audit instead of being skipped.
#
# Found something? Move the pin to a fixed release (deploy/lock.sh --upgrade-package NAME,
# raising the floor in pyproject.toml if needed) and run this again. Extra pip-audit arguments
# pass through, e.g. `deploy/audit.sh -s osv` for OSV's database instead of PyPI's.
#
# Every package failing with "Dependency not found on PyPI" means PyPI's per-version JSON
# (https://pypi.org/pypi/NAME/VERSION/json) is not reachable from this network, not that the
# packages are missing: the audit needs that endpoint (or api.osv.dev with -s osv).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"

"$BIN/pip-audit" --disable-pip --strict --progress-spinner off -r requirements.lock "$@"
