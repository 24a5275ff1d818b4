#!/usr/bin/env bash
# Optional benchmark (not CI, not a test): Rasa 3.6.21's default NLU pipeline (DIET) against our
# NLU, trained on the same files (data/nlu.yml + data/synonyms.yml) and tested on the held-out
# tests/data/nlu_test.yml. Prints one table: intent accuracy, intent macro-F1, entity F1 (exact
# span + type, micro over the test file's entity types), train seconds, parse latency p50/p99
# (ms, one message per call, in-process, after warm-up) and the speed-ups of ours over Rasa.
#
# Usage (from anywhere; the first run installs Rasa, ~3 GiB, several minutes):
#
#     bash benchmarks/rasa_compare.sh
#
# Environment (all optional):
#     RASA_VENV=.rasa-venv        Python 3.10 venv with rasa==3.6.21 (git-ignored; reused if
#                                 present, pip runs again only when benchmarks/rasa/requirements.txt
#                                 changes)
#     PYTHON310=...               interpreter for that venv (default: python3.10 on PATH, else
#                                 pyenv's newest 3.10.x)
#     OURS_PYTHON=.venv/bin/python  project interpreter (Python 3.11+, project installed)
#     OUT=reports/rasa_compare    where table.md, report.json and the predictions go (git-ignored)
#     WARMUP=50 REPEATS=3         parse calls before timing; timed passes over the test messages
#     RASA_TIMEOUT=3600           seconds allowed for Rasa's side (train + parse); PIP_TIMEOUT=1800
#     KEEP_WORK=1                 keep the scratch folder (models, data copy, logs) in /tmp
#
# Rasa's side runs in a scratch folder with HOME, RASA_CACHE_DIRECTORY and the working directory
# pointing into it, telemetry off, and nothing downloaded at run time (this pipeline has no
# pretrained embeddings). Training logs of both sides go to $OUT/rasa_side.log, $OUT/ours_side.log.
# Each step runs under `timeout`; the scratch folder is removed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RASA_VENV="${RASA_VENV:-$ROOT/.rasa-venv}"
OURS_PYTHON="${OURS_PYTHON:-$ROOT/.venv/bin/python}"
OUT="${OUT:-$ROOT/reports/rasa_compare}"
WARMUP="${WARMUP:-50}"
REPEATS="${REPEATS:-3}"
RASA_TIMEOUT="${RASA_TIMEOUT:-3600}"
PIP_TIMEOUT="${PIP_TIMEOUT:-1800}"
REQUIREMENTS="$ROOT/benchmarks/rasa/requirements.txt"
SCRIPT="$ROOT/benchmarks/rasa_compare.py"

log() { printf '[rasa_compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

START=$SECONDS
WORK="$(mktemp -d "${TMPDIR:-/tmp}/rasa-compare.XXXXXX")"
cleanup() {
    if [ "${KEEP_WORK:-0}" = 1 ]; then log "scratch folder kept: $WORK"; else rm -rf "$WORK"; fi
}
CHILD=""
on_signal() {  # stop the running step (timeout passes TERM on to its command), then clean up
    if [ -n "$CHILD" ]; then kill -TERM "$CHILD" 2>/dev/null || true; wait "$CHILD" 2>/dev/null || true; fi
    exit 130
}
trap cleanup EXIT
trap on_signal INT TERM

bounded() {  # seconds, command...: run it under timeout, in the background so signals reach us
    local limit="$1" rc=0
    shift
    timeout -k 30 "$limit" "$@" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}
mkdir -p "$OUT"

find_python310() {
    if [ -n "${PYTHON310:-}" ]; then echo "$PYTHON310"; return 0; fi
    if command -v python3.10 >/dev/null 2>&1 && python3.10 -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then
        command -v python3.10; return 0
    fi
    if command -v pyenv >/dev/null 2>&1; then  # a pyenv shim that is not active in this shell
        local version
        version="$(pyenv versions --bare 2>/dev/null | grep -E '^3\.10(\.[0-9]+)?$' | sort -V | tail -n 1 || true)"
        if [ -n "$version" ] && [ -x "$(pyenv root)/versions/$version/bin/python3.10" ]; then
            echo "$(pyenv root)/versions/$version/bin/python3.10"; return 0
        fi
    fi
    return 1
}

# -- the Rasa venv (Python 3.10) --------------------------------------------------------------
if [ ! -x "$RASA_VENV/bin/python" ]; then
    PY310="$(find_python310)" || die "Python 3.10 not found (set PYTHON310=/path/to/python3.10)"
    log "creating $RASA_VENV with $PY310"
    "$PY310" -m venv "$RASA_VENV"
fi
"$RASA_VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 10), sys.version' \
    || die "$RASA_VENV is not a Python 3.10 venv; remove it and run again"
STAMP="$RASA_VENV/.rasa-compare-requirements"
if ! cmp -s "$REQUIREMENTS" "$STAMP"; then
    log "installing $(grep -v '^#' "$REQUIREMENTS" | xargs) into $RASA_VENV (several minutes the first time)"
    bounded "$PIP_TIMEOUT" "$RASA_VENV/bin/python" -m pip install --quiet -r "$REQUIREMENTS" \
        > "$OUT/pip.log" 2>&1 || { tail -n 30 "$OUT/pip.log" >&2; die "pip install failed (log: $OUT/pip.log)"; }
    cp "$REQUIREMENTS" "$STAMP"
fi
INSTALLED=$SECONDS

# -- the project's interpreter ----------------------------------------------------------------
[ -x "$OURS_PYTHON" ] || OURS_PYTHON="$(command -v python3)"
"$OURS_PYTHON" -c 'import sys; assert sys.version_info >= (3, 11); import nlu, yaml' 2>/dev/null \
    || die "$OURS_PYTHON is not the project's Python 3.11+ with nlu installed (make install, or set OURS_PYTHON)"

run_side() {  # side, interpreter, timeout seconds
    local side="$1" python="$2" limit="$3" rc=0
    bounded "$limit" "$python" "$SCRIPT" --side "$side" --work "$WORK" --warmup "$WARMUP" --repeats "$REPEATS" \
        > "$OUT/${side}_side.log" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
        tail -n 40 "$OUT/${side}_side.log" >&2
        [ "$rc" = 124 ] && die "$side side timed out after ${limit}s (log: $OUT/${side}_side.log)"
        die "$side side failed with exit code $rc (log: $OUT/${side}_side.log)"
    fi
    grep -E "^(gold|rasa|ours)[ :]" "$OUT/${side}_side.log" | sed 's/^/    /' >&2 || true
}

log "reading $ROOT/tests/data/nlu_test.yml and config.yml"
run_side gold "$OURS_PYTHON" 300
log "Rasa: training DIET (100 epochs) and parsing; this takes several minutes"
RASA_START=$SECONDS
run_side rasa "$RASA_VENV/bin/python" "$RASA_TIMEOUT"
RASA_END=$SECONDS
log "ours: training and parsing"
run_side ours "$OURS_PYTHON" 900
OURS_END=$SECONDS

bounded 300 "$OURS_PYTHON" "$SCRIPT" --side report --work "$WORK" --out "$OUT" --rasa-venv "$RASA_VENV"
echo
echo "Wall clock: $((SECONDS - START)) s in all (venv check/install $((INSTALLED - START)) s, Rasa side $((RASA_END - RASA_START)) s, ours side $((OURS_END - RASA_END)) s). Reports in $OUT/."
