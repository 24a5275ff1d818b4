# syntax=docker/dockerfile:1
#
# EVN customer-care chatbot: one image for the REST/Telegram/Zalo server.
#
#   docker build -t evn-care-bot .
#   docker run --rm -p 5005:5005 evn-care-bot          # SQLite in /app/var, in-memory stores
#   docker compose up --build                          # PostgreSQL + Redis, see docker-compose.yml
#   deploy/: production-like stack (nginx, 2+ workers, migrate job), Kubernetes, Grafana
#
# Dependencies come from requirements.lock (exact versions with hashes); `deploy/lock.sh`
# regenerates it after pyproject.toml changes.
#
# The NLU model is trained at build time into /app/models, so the container starts in seconds.
# Project files and the model are owned by root and read-only for the service user; only
# /app/var (the default SQLite database) and /tmp are written to.

############################
# Builder: a venv with the project and its dependencies installed.
############################
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Every dependency ships manylinux wheels for CPython 3.11 (numpy, scikit-learn, asyncpg, ...),
# so no compiler or -dev packages are needed.
RUN python -m venv /opt/venv

WORKDIR /src

# Dependencies first, from the lock file alone, so this layer is reused while only code changes.
# Every pin carries its hashes: pip refuses a file that differs from the one that was locked.
# requirements.lock is made by deploy/lock.sh from pyproject.toml (Python 3.11, linux).
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

# Then the project itself. README.md is optional (pyproject names it; setuptools only warns if
# it is missing); listing it as a wildcard next to a file that exists lets the build go on without it.
COPY pyproject.toml README.md* ./
COPY bot/ bot/
COPY nlu/ nlu/
COPY actions/ actions/
COPY backend/ backend/
# --no-deps: everything it needs is installed above, at the locked versions.
RUN pip install --no-cache-dir --no-deps . \
    && python -c "import bot, nlu, actions, backend"

############################
# Runtime: the venv, the project files and a trained model; no build tools, non-root.
############################
FROM python:3.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="evn-care-bot" \
      org.opencontainers.image.description="Customer-care chatbot for electricity customers in Vietnam (Rasa-compatible)"

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PROJECT_DIR=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    LOG_JSON=true

RUN groupadd --system --gid 10001 bot \
    && useradd --system --uid 10001 --gid bot --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin bot

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
COPY domain.yml config.yml endpoints.yml credentials.yml ./
COPY data/ data/
# The held-out NLU set: the quality gate of retraining (bot/nlu_training.py) evaluates on it.
COPY tests/data/nlu_test.yml tests/data/nlu_test.yml

# Train the NLU model now (scikit-learn, a few seconds, no downloads) so start-up only loads it.
# /app/var holds the default SQLite database and is the only directory the service may write
# (besides /tmp: model archives fetched from the database, matplotlib's font cache).
RUN python -m nlu train --data data/ --config config.yml --out models/ \
    && mkdir -p /app/var \
    && chown 10001:10001 /app/var

# Numeric uid:gid (the `bot` user above) so that runtimes enforcing runAsNonRoot can verify it.
USER 10001:10001

EXPOSE 5005

# aiohttp drains on SIGTERM (in-flight turns finish, `serve --grace` seconds at most); give the
# container at least that long to stop (docker stop -t, compose stop_grace_period, Kubernetes
# terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM

# No curl in slim images: probe /health with Python's urllib (non-2xx or no answer -> exit 1).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:5005/health', timeout=4).status == 200 else 1)"]

# Bring the schema up to date, then replace the shell with the server so it is PID 1 and gets
# SIGTERM directly (aiohttp shuts down gracefully on it). Any other command can be given instead,
# e.g. `docker compose run --rm bot python -m bot seed`.
CMD ["sh", "-c", "python -m bot db upgrade && exec python -m bot serve --host 0.0.0.0 --port 5005"]
