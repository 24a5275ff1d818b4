"""NLU model versions in the database: archives with checksums, evaluations, the quality gate,
activation and rollback, and the retraining jobs' records.

A model version is the archive (tar) of a model folder written by `NLUModel.save`, stored with
its SHA-256 so every worker can fetch it from the shared database (no shared disk needed) and
refuse one that was corrupted. Which version serves is the newest row of `nlu_activations`;
workers notice it change (bot/model_rollout.py) and swap models without a restart.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from backend.clock import utcnow
from backend.db import read_scope, session_scope
from backend.models import NluActivation, NluModelVersion, NluTrainJob
from backend.services.nlu_data import Actor, audit

MODEL_FILES = ("meta.json", "model.joblib")
# The gate: a new version may not lose more than this on the held-out set...
MAX_MACRO_F1_DROP = 0.01
# ...nor may any intent's F1 drop by more than this.
MAX_INTENT_F1_DROP = 0.05
STALE_JOB = timedelta(minutes=30)


class ModelError(ValueError):
    """A model version cannot be stored, found or activated as asked."""


class CorruptModel(ModelError):
    """The stored archive does not match its checksum, or is not a model folder."""


class GateBlocked(ModelError):
    """Activation refused by the quality gate; `gate` says why. An override needs a reason."""

    def __init__(self, gate: GateResult) -> None:
        super().__init__("; ".join(gate.failures))
        self.gate = gate


@dataclass(frozen=True)
class ModelInfo:
    version: str
    created_at: datetime
    checksum: str
    size: int
    data_hash: str
    metrics: dict[str, Any]
    active: bool = False

    @property
    def accuracy(self) -> float | None:
        return self.metrics.get("accuracy")

    @property
    def macro_f1(self) -> float | None:
        return self.metrics.get("macro_f1")


@dataclass(frozen=True)
class ActivationInfo:
    version: str
    actor: str
    override_reason: str | None
    created_at: datetime


@dataclass
class GateResult:
    """Candidate vs active model on the same held-out data, intent by intent."""

    passed: bool
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # intent -> {"active": f1 | None, "candidate": f1 | None, "delta": ...}
    intents: dict[str, dict[str, float | None]] = field(default_factory=dict)
    macro_f1: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "failures": self.failures, "warnings": self.warnings, "macro_f1": self.macro_f1}


@dataclass(frozen=True)
class JobInfo:
    id: int
    status: str
    stage: str
    progress: int
    error: str | None
    version: str | None
    created_at: datetime
    finished_at: datetime | None
    requested_by: int | None = None

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed")

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "status": self.status, "stage": self.stage, "progress": self.progress,
            "error": self.error, "version": self.version, "done": self.done,
        }


# -- archives --------------------------------------------------------------------------------------


def pack(model_dir: Path) -> bytes:
    """The model folder as an uncompressed tar (the joblib file is compressed already), with
    fixed metadata so the same folder always gives the same bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in MODEL_FILES:
            data = (Path(model_dir) / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def unpack(archive: bytes, checksum: str, target: Path) -> Path:
    """Verify and extract an archive into `target` (a folder NLUModel.load reads)."""
    if hashlib.sha256(archive).hexdigest() != checksum:
        raise CorruptModel("the model archive does not match its checksum")
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
            for name in MODEL_FILES:
                member = tar.getmember(name)
                source = tar.extractfile(member)
                if source is None:
                    raise CorruptModel(f"{name} in the archive is not a file")
                (target / name).write_bytes(source.read())
    except (tarfile.TarError, KeyError) as exc:
        raise CorruptModel(f"the model archive is not a model folder: {exc}") from None
    return target


def _info(row: NluModelVersion, active: str | None) -> ModelInfo:
    return ModelInfo(row.version, row.created_at, row.checksum, row.size, row.data_hash, dict(row.metrics or {}), row.version == active)


async def register(model_dir: Path, actor: Actor, metrics: dict[str, Any] | None = None) -> ModelInfo:
    """Store a trained model folder as a version (idempotent for the same version id)."""
    meta = json.loads((Path(model_dir) / "meta.json").read_text(encoding="utf-8"))
    archive = pack(model_dir)
    checksum = hashlib.sha256(archive).hexdigest()
    async with session_scope() as session:
        row = await session.get(NluModelVersion, meta["id"])
        if row is None:
            row = NluModelVersion(
                version=meta["id"], archive=archive, checksum=checksum, size=len(archive), data_hash=meta.get("data_hash", ""),
                metrics=metrics if metrics is not None else dict(meta.get("metrics") or {}), created_by=actor.staff_id, created_at=utcnow(),
            )
            session.add(row)
            audit(session, actor, "nlu_model_register", version=row.version, checksum=checksum)
        elif metrics is not None:
            row.metrics = metrics
        return _info(row, None)


async def fetch(version: str) -> tuple[bytes, str]:
    async with read_scope() as session:
        row = (await session.execute(select(NluModelVersion.archive, NluModelVersion.checksum).where(NluModelVersion.version == version))).first()
    if row is None:
        raise ModelError(f"no model version {version!r}")
    return bytes(row[0]), row[1]


async def set_metrics(version: str, metrics: dict[str, Any]) -> None:
    async with session_scope() as session:
        await session.execute(update(NluModelVersion).where(NluModelVersion.version == version).values(metrics=metrics))


# -- which version serves --------------------------------------------------------------------------


async def active_version() -> str | None:
    async with read_scope() as session:
        return await session.scalar(select(NluActivation.version).order_by(NluActivation.id.desc()).limit(1))


async def get(version: str) -> ModelInfo | None:
    active = await active_version()
    async with read_scope() as session:
        row = await session.get(NluModelVersion, version)
        return _info(row, active) if row else None


async def list_versions(limit: int = 100) -> list[ModelInfo]:
    """Newest first, without the archives."""
    active = await active_version()
    async with read_scope() as session:
        rows = await session.execute(
            select(
                NluModelVersion.version, NluModelVersion.created_at, NluModelVersion.checksum, NluModelVersion.size,
                NluModelVersion.data_hash, NluModelVersion.metrics,
            ).order_by(NluModelVersion.created_at.desc(), NluModelVersion.version.desc()).limit(limit)
        )
        return [ModelInfo(v, c, cs, s, d, dict(m or {}), v == active) for v, c, cs, s, d, m in rows]


async def activations(limit: int = 50) -> list[ActivationInfo]:
    async with read_scope() as session:
        rows = await session.scalars(select(NluActivation).order_by(NluActivation.id.desc()).limit(limit))
        return [ActivationInfo(r.version, r.actor, r.override_reason, r.created_at) for r in rows]


def gate(candidate: dict[str, Any], active: dict[str, Any] | None, domain_intents: set[str] | None = None) -> GateResult:
    """Not worse than the active model by more than 1 point of macro-F1, and no intent's F1
    down by more than 5 points, on the same held-out data. Without an active model (the first
    version) the gate passes."""
    result = GateResult(passed=True)
    cand_intents: dict[str, Any] = candidate.get("per_intent") or {}
    if domain_intents is not None:
        unknown = sorted(set(candidate.get("intents") or []) - domain_intents - {"nlu_fallback"})
        if unknown:
            result.warnings.append(f"intents not in domain.yml (the bot will not act on them): {', '.join(unknown)}")
    if "macro_f1" not in candidate:
        result.passed = False
        result.failures.append("the new version has no evaluation on the held-out set")
        return result
    result.macro_f1 = {"candidate": candidate["macro_f1"], "active": None}
    if not active:
        return result
    if active.get("test_hash") != candidate.get("test_hash"):
        result.passed = False
        result.failures.append("the two versions were evaluated on different held-out data; re-evaluate first")
        return result
    result.macro_f1["active"] = active.get("macro_f1")
    drop = float(active.get("macro_f1", 0)) - float(candidate["macro_f1"])
    if drop > MAX_MACRO_F1_DROP + 1e-9:
        result.failures.append(f"macro-F1 drops by {drop * 100:.1f} points ({active['macro_f1']:.3f} -> {candidate['macro_f1']:.3f})")
    act_intents: dict[str, Any] = active.get("per_intent") or {}
    for intent in sorted(set(cand_intents) | set(act_intents)):
        new = cand_intents.get(intent, {}).get("f1")
        old = act_intents.get(intent, {}).get("f1")
        delta = None if new is None or old is None else round(new - old, 4)
        result.intents[intent] = {"active": old, "candidate": new, "delta": delta}
        if old is not None and (new if new is not None else 0.0) < old - MAX_INTENT_F1_DROP - 1e-9:
            result.failures.append(f"{intent}: F1 drops by {(old - (new or 0.0)) * 100:.1f} points ({old:.3f} -> {(new or 0.0):.3f})")
    result.passed = not result.failures
    return result


async def check_gate(version: str, domain_intents: set[str] | None = None) -> GateResult:
    candidate = await get(version)
    if candidate is None:
        raise ModelError(f"no model version {version!r}")
    active = await active_version()
    current = await get(active) if active and active != version else None
    return gate(candidate.metrics, current.metrics if current else None, domain_intents)


async def activate(
    version: str, actor: Actor, *, override_reason: str | None = None, domain_intents: set[str] | None = None, check: bool = True
) -> GateResult:
    """Make `version` the one every worker serves. Refused with GateBlocked when the gate fails,
    unless `override_reason` says why (recorded with the activation and in the audit log);
    refused with CorruptModel when the stored archive does not match its checksum."""
    archive, checksum = await fetch(version)
    if hashlib.sha256(archive).hexdigest() != checksum:
        raise CorruptModel(f"version {version}: the stored archive does not match its checksum")
    result = await check_gate(version, domain_intents) if check else GateResult(passed=True)
    reason = (override_reason or "").strip() or None
    if not result.passed and reason is None:
        raise GateBlocked(result)
    async with session_scope() as session:
        session.add(NluActivation(version=version, activated_by=actor.staff_id, actor=actor.name, override_reason=reason, gate=result.as_dict(), created_at=utcnow()))
        audit(session, actor, "nlu_model_activate", version=version, gate_passed=result.passed, override_reason=reason)
    return result


async def rollback(actor: Actor) -> str:
    """Activate the version that served before the current one (no gate: it served already)."""
    history = await activations(limit=1000)
    if not history:
        raise ModelError("no model has been activated yet")
    current = history[0].version
    previous = next((a.version for a in history[1:] if a.version != current), None)
    if previous is None:
        raise ModelError(f"{current} is the only version that has served; nothing to roll back to")
    archive, checksum = await fetch(previous)
    if hashlib.sha256(archive).hexdigest() != checksum:
        raise CorruptModel(f"version {previous}: the stored archive does not match its checksum")
    async with session_scope() as session:
        session.add(NluActivation(version=previous, activated_by=actor.staff_id, actor=actor.name, override_reason=None, gate={"rollback_from": current}, created_at=utcnow()))
        audit(session, actor, "nlu_model_rollback", version=previous, rolled_back=current)
    return previous


# -- retraining jobs -------------------------------------------------------------------------------


def _job(row: NluTrainJob) -> JobInfo:
    return JobInfo(row.id, row.status, row.stage, row.progress, row.error, row.version, row.created_at, row.finished_at, row.requested_by)


async def create_job(actor: Actor) -> tuple[JobInfo, bool]:
    """A queued job, or the job already queued or running (one retraining at a time); the flag
    says whether the job is new. A job silent for 30 minutes is marked failed first."""
    now = utcnow()
    async with session_scope() as session:
        await session.execute(
            update(NluTrainJob)
            .where(NluTrainJob.status.in_(("queued", "running")), NluTrainJob.created_at < now - STALE_JOB)
            .values(status="failed", error="the job stopped without finishing", finished_at=now)
        )
        running = await session.scalar(select(NluTrainJob).where(NluTrainJob.status.in_(("queued", "running"))).limit(1))
        if running is not None:
            return _job(running), False
        row = NluTrainJob(status="queued", stage="queued", progress=0, requested_by=actor.staff_id, created_at=now)
        session.add(row)
        await session.flush()
        audit(session, actor, "nlu_retrain", job=row.id)
        return _job(row), True


async def update_job(job_id: int, **values: Any) -> None:
    if values.get("status") in ("succeeded", "failed"):
        values["finished_at"] = utcnow()
    if values.get("status") == "running" and "started_at" not in values:
        values["started_at"] = utcnow()
    async with session_scope() as session:
        await session.execute(update(NluTrainJob).where(NluTrainJob.id == job_id).values(**values))


async def get_job(job_id: int) -> JobInfo | None:
    async with read_scope() as session:
        row = await session.get(NluTrainJob, job_id)
        return _job(row) if row else None


async def recent_jobs(limit: int = 10) -> list[JobInfo]:
    async with read_scope() as session:
        rows = await session.scalars(select(NluTrainJob).order_by(NluTrainJob.id.desc()).limit(limit))
        return [_job(r) for r in rows]
