"""Retraining from the database's training data, as a job outside the chat workers.

The console (or `python -m bot nlu retrain`) records a job and starts `python -m bot nlu
train-job ID` as a separate process, so training never competes with customers' turns for the
event loop. The job trains on the database's data with config.yml's pipeline, evaluates the
new model on the held-out set (and the active model on the same set, if it was last evaluated
on another version of it), stores the model as a new version and reports progress as it goes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from backend import db
from backend.services import nlu_data, nlu_models
from backend.services.nlu_data import Actor
from backend.settings import Settings
from nlu.evaluate import evaluate
from nlu.model import NLUModel, PipelineConfig
from nlu.training_data import TrainingData, load_training_data

log = logging.getLogger(__name__)


def held_out_path(settings: Settings) -> Path:
    return settings.nlu_test_data or settings.project_dir / "tests" / "data" / "nlu_test.yml"


def evaluation(model: NLUModel, test_file: Path) -> dict[str, Any]:
    """The model on the held-out file: headline numbers, per-intent P/R/F1, confusion matrix.
    Held-out examples of intents the model does not know are left out (and counted)."""
    data = load_training_data(test_file)
    known = set(model.meta.intents)
    kept = [e for e in data.examples if e.intent in known]
    result = evaluate(model, TrainingData(examples=kept))
    report = result.intent_report
    per_intent = {
        name: {"precision": v["precision"], "recall": v["recall"], "f1": v["f1-score"], "support": v["support"]}
        for name, v in report.items()
        if isinstance(v, dict) and "support" in v and name not in ("macro avg", "weighted avg")
    }
    return result.summary() | {
        "test_data": str(test_file),
        "test_hash": hashlib.sha256(Path(test_file).read_bytes()).hexdigest(),
        "skipped": len(data.examples) - len(kept),
        "intents": list(model.meta.intents),
        "per_intent": per_intent,
        "confusion": {"rows": result.confusion_rows, "columns": result.confusion_columns, "matrix": result.confusion},
    }


async def load_version(version: str, cache_dir: Path) -> NLUModel:
    """A stored version as a model, verified against its checksum, cached on local disk."""
    archive, checksum = await nlu_models.fetch(version)
    target = cache_dir / version
    folder = await asyncio.to_thread(nlu_models.unpack, archive, checksum, target)
    return await asyncio.to_thread(NLUModel.load, folder)


async def run_job(job_id: int, settings: Settings) -> str | None:
    """Run a recorded job to the end; returns the new version (None when it failed)."""

    async def stage(name: str, progress: int) -> None:
        await nlu_models.update_job(job_id, stage=name, progress=progress)

    try:
        await nlu_models.update_job(job_id, status="running", stage="loading training data", progress=5)
        if not await nlu_data.has_data():
            raise ValueError("the database holds no training data; run `python -m bot nlu import` first")
        data = await nlu_data.training_data()
        if len(data.intents) < 2:
            raise ValueError(f"training needs examples of at least two intents, found {data.intents}")
        pipeline = PipelineConfig.from_file(settings.project_dir / "config.yml")
        await stage(f"training on {len(data.examples)} examples", 20)
        model = await asyncio.to_thread(NLUModel.train, data, pipeline)
        await stage("evaluating on the held-out set", 60)
        test_file = held_out_path(settings)
        metrics = await asyncio.to_thread(evaluation, model, test_file)
        model.meta.metrics = {k: metrics[k] for k in ("test_data", "examples", "accuracy", "macro_f1", "weighted_f1")}
        await stage("comparing with the active model", 80)
        await ensure_evaluated(await nlu_models.active_version(), settings, metrics["test_hash"])
        await stage("saving the new version", 90)
        job = await nlu_models.get_job(job_id)
        actor = Actor(f"job {job_id}", job.requested_by if job else None)
        with tempfile.TemporaryDirectory(prefix="nlu-job-") as tmp:
            folder = model.save(Path(tmp) / model.meta.id)
            info = await nlu_models.register(folder, actor, metrics)
        await nlu_models.update_job(job_id, status="succeeded", stage="done", progress=100, version=info.version)
        return info.version
    except Exception as exc:
        log.exception("retraining job %s failed", job_id)
        await nlu_models.update_job(job_id, status="failed", stage="failed", error=str(exc)[:2000])
        return None


async def ensure_evaluated(version: str | None, settings: Settings, test_hash: str | None = None) -> None:
    """Make sure `version`'s stored evaluation is on the current held-out file (the gate
    compares like with like)."""
    if version is None:
        return
    info = await nlu_models.get(version)
    test_file = held_out_path(settings)
    current = test_hash or hashlib.sha256(test_file.read_bytes()).hexdigest()
    if info is None or info.metrics.get("test_hash") == current:
        return
    with tempfile.TemporaryDirectory(prefix="nlu-eval-") as tmp:
        model = await load_version(version, Path(tmp))
    metrics = await asyncio.to_thread(evaluation, model, test_file)
    await nlu_models.set_metrics(version, metrics)


async def start_job(actor: Actor, settings: Settings, *, in_process: bool = False) -> tuple[nlu_models.JobInfo, bool]:
    """Record a job and start it in its own process (or, for the CLI, in this one). Returns the
    job and whether it is new (a retraining already under way is returned instead)."""
    job, new = await nlu_models.create_job(actor)
    if not new:
        return job, False
    if in_process:
        await run_job(job.id, settings)
    else:
        spawn_job(job.id, settings)
    return job, True


def spawn_job(job_id: int, settings: Settings) -> subprocess.Popen[bytes]:
    """`python -m bot nlu train-job ID` in a new session (it outlives a restarting worker),
    on the same database as this process."""
    env = dict(os.environ)
    env["DATABASE_URL"] = db.current_url()
    env["PROJECT_DIR"] = str(settings.project_dir)
    log_dir = settings.project_dir / "var"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"train-job-{job_id}.log", "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", "nlu", "train-job", str(job_id)],
            cwd=str(settings.project_dir), env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
