"""The console's NLU administration pages: training data, the inbox, model versions.

Admins edit the training data kept in the database (backend/services/nlu_data.py), label what
the bot misunderstood (nlu_inbox.py), retrain in a separate process (bot/nlu_training.py) and
activate a new version behind the quality gate (nlu_models.py). Agents only reach the
"bot misunderstood" control of a conversation, which files the message in the inbox.
Pages are server-rendered like the rest of the console; every action is a form POST with the
CSRF token (the console guard checks it) answered with a redirect, or JSON when asked.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from redis.asyncio import Redis

from backend.services import nlu_data, nlu_inbox, nlu_models
from backend.services.nlu_data import Actor, NluDataError
from backend.settings import Settings, get_settings
from bot.agent import Agent
from bot.console import auth
from bot.console.i18n import language_of, translator
from bot.console.views import _done, _form, _visible, render
from bot.model_rollout import announce
from bot.nlu_training import ensure_evaluated
from nlu.evaluate import plot_confusion_matrix

log = logging.getLogger(__name__)
RESOURCE_KINDS = ("synonym", "regex", "lookup")
DROP_HIGHLIGHT = 0.05  # an intent whose score falls by more than 5 points is marked


@dataclass
class NluConsole:
    """What the NLU pages need beyond the console: settings (retraining, the held-out file),
    the agent (domain intents, the serving model) and Redis (announcing a new version)."""

    settings: Callable[[], Settings]
    agent: Callable[[], Agent]
    redis: Callable[[], Redis | None]

    def domain_intents(self) -> set[str]:
        return set(self.agent().domain.intents)


NLU_CONSOLE = web.AppKey("nlu_console", NluConsole)
_confusion_cache: dict[tuple[str, str], bytes] = {}


def _actor(request: web.Request) -> Actor:
    me = auth.current_staff(request)
    return Actor(me.username, me.id)


def _refused(request: web.Request, detail: str, back: str, status: int = 400) -> web.Response:
    """An edit the data or the models cannot take: the reason in the staff member's words
    where we have them, the service's message as the detail."""
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response({"ok": False, "error": detail}, status=status)
    t = translator(language_of(request))
    return render(request, "nlu_error.html", status=status, message=t["nlu_refused"], detail=detail, back=back)


async def _known_intents(request: web.Request) -> list[str]:
    """Intents of the training data and of domain.yml (a new intent may exist in only one)."""
    return sorted(set(await nlu_data.intents()) | request.app[NLU_CONSOLE].domain_intents())


def _int(value: str | None) -> int | None:
    try:
        return int(value or "")
    except ValueError:
        return None


# -- training data ---------------------------------------------------------------------------------


@auth.admin_only
async def data_page(request: web.Request) -> web.Response:
    search = request.query.get("q", "").strip()[:200]
    found = await nlu_data.find("intent", None, search) if search else []
    return render(
        request, "nlu_data.html", counts=await nlu_data.intent_counts(), search=search, found=found,
        intents=await _known_intents(request),
    )


@auth.admin_only
async def intent_page(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    search = request.query.get("q", "").strip()[:200]
    return render(
        request, "nlu_intent.html", name=name, examples=await nlu_data.find("intent", name, search or None), search=search,
        intents=await _known_intents(request),
    )


def _back(form: dict[str, str], default: str) -> str:
    """Where to go after an edit: a console NLU page named by the form, never another site."""
    back = form.get("back", "")
    return back if back.startswith("/console/nlu") and "//" not in back and back.isprintable() else default


@auth.admin_only
async def add_line(request: web.Request) -> web.Response:
    form = await _form(request)
    kind, name = form.get("kind", "intent"), form.get("name", "").strip()
    back = _back(form, f"/console/nlu/intent/{name}" if kind == "intent" else "/console/nlu/resources")
    try:
        info = await nlu_data.add(kind, name, form.get("text", ""), _actor(request))
    except NluDataError as exc:
        return _refused(request, str(exc), back)
    return _done(request, back, id=info.id)


@auth.admin_only
async def edit_line(request: web.Request) -> web.Response:
    form = await _form(request)
    example_id = _int(request.match_info["id"])
    back = _back(form, "/console/nlu")
    try:
        if example_id is None:
            raise NluDataError("no such training line")
        info = await nlu_data.edit(example_id, form.get("text", ""), _actor(request))
    except NluDataError as exc:
        return _refused(request, str(exc), back)
    return _done(request, back, id=info.id)


@auth.admin_only
async def move_line(request: web.Request) -> web.Response:
    form = await _form(request)
    example_id = _int(request.match_info["id"])
    back = _back(form, "/console/nlu")
    try:
        if example_id is None:
            raise NluDataError("no such training line")
        info = await nlu_data.move(example_id, form.get("intent", ""), _actor(request))
    except NluDataError as exc:
        return _refused(request, str(exc), back)
    return _done(request, back, id=info.id, intent=info.name)


@auth.admin_only
async def delete_line(request: web.Request) -> web.Response:
    form = await _form(request)
    example_id = _int(request.match_info["id"])
    back = _back(form, "/console/nlu")
    try:
        if example_id is None:
            raise NluDataError("no such training line")
        await nlu_data.remove(example_id, _actor(request))
    except NluDataError as exc:
        return _refused(request, str(exc), back)
    return _done(request, back)


@auth.admin_only
async def resources_page(request: web.Request) -> web.Response:
    return render(request, "nlu_resources.html", resources=await nlu_data.resources(), kinds=RESOURCE_KINDS)


# -- inbox -----------------------------------------------------------------------------------------


async def _inbox(request: web.Request, revealed: dict[int, str] | None = None, status: int = 200) -> web.Response:
    query = request.query
    state = query.get("status", "open") if query.get("status") in nlu_inbox.STATUSES else "open"
    reason = query.get("reason") if query.get("reason") in nlu_inbox.REASONS else None
    search = query.get("q", "").strip()[:200]
    groups = await nlu_inbox.groups(state, reason, search or None)
    return render(
        request, "nlu_inbox.html", status=status, groups=groups, state=state, reason=reason or "", search=search,
        statuses=nlu_inbox.STATUSES, reasons=nlu_inbox.REASONS, intents=await _known_intents(request),
        suggested={g.sample.id: nlu_inbox.suggested_example(g.sample) for g in groups}, revealed=revealed or {},
        counts=await nlu_inbox.counts(),
    )


@auth.admin_only
async def inbox_page(request: web.Request) -> web.Response:
    return await _inbox(request)


@auth.admin_only
async def reveal(request: web.Request) -> web.Response:
    """The original text of one item (the service audits who looked); shown in the inbox."""
    item_id = _int(request.match_info["id"])
    try:
        if item_id is None:
            raise NluDataError("no such inbox item")
        text = await nlu_inbox.reveal(item_id, _actor(request))
    except NluDataError as exc:
        return _refused(request, str(exc), "/console/nlu/inbox", 404)
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response({"ok": True, "id": item_id, "text": text})
    return await _inbox(request, {item_id: text})


@auth.admin_only
async def decide(request: web.Request) -> web.Response:
    """Bulk decision on the ticked groups. Confirming uses each group's own intent select and
    edited line, so one click can file groups under different intents."""
    post = await request.post() if request.content_type != "application/json" else None
    form = await _form(request)
    back = _back(form, "/console/nlu/inbox")
    raw_ids = post.getall("ids", []) if post is not None else str(form.get("ids", "")).split(",")
    ids = [i for i in (_int(str(v)) for v in raw_ids) if i is not None]
    decision = form.get("decision", "")
    if not ids:
        return _refused(request, translator(language_of(request))["nlu_nothing_selected"], back)
    actor = _actor(request)
    totals = {"items": 0, "groups": 0, "examples": 0}
    try:
        if decision == "confirm":
            by_intent: dict[str, list[int]] = {}
            for item_id in ids:
                by_intent.setdefault(form.get(f"intent_{item_id}") or form.get("intent", ""), []).append(item_id)
            for intent, chosen in by_intent.items():
                texts = {i: form[f"text_{i}"] for i in chosen if form.get(f"text_{i}", "").strip()}
                result = await nlu_inbox.decide(chosen, "confirm", actor, intent=intent, texts=texts)
                totals = {k: totals[k] + result[k] for k in totals}
        else:
            totals = await nlu_inbox.decide(ids, decision, actor)
    except NluDataError as exc:
        return _refused(request, str(exc), back)
    return _done(request, back, **totals)


async def correct(request: web.Request) -> web.Response:
    """An agent marks a customer message of a conversation as misunderstood and names the
    right intent: the message goes to the inbox for an admin to confirm. `line` counts the
    customer's messages of the transcript (one per Rasa `user` event, as transcript_lines
    lists them), so the text and its parse data come from the tracker, not from the form."""
    info = await _visible(request)
    if isinstance(info, web.Response):
        return info
    form = await _form(request)
    nlu = request.app[NLU_CONSOLE]
    intent = form.get("intent", "")
    index = _int(form.get("line"))
    if intent not in await _known_intents(request) or index is None:
        return _refused(request, f"unknown intent {intent!r}", f"/console/h/{info.id}")
    agent = nlu.agent()
    turns = [e for e in await agent.tracker_store.retrieve(info.conversation_id) if e.get("event") == "user"]
    if not 0 <= index < len(turns):
        return _refused(request, "no such customer message", f"/console/h/{info.id}")
    turn = turns[index]
    item_id = await nlu_inbox.capture(
        str(turn.get("text") or ""), channel=info.channel, conversation_id=info.conversation_id, reason="agent_correction",
        parse_data=turn.get("parse_data") or {}, model_version=agent.nlu.model.meta.id, suggested_intent=intent,
    )
    if item_id is None:  # a button press or an empty message: nothing to learn from
        return _refused(request, "this message has no words to learn from", f"/console/h/{info.id}")
    return _done(request, f"/console/h/{info.id}?corrected=1#transcript", item=item_id)


# -- models ----------------------------------------------------------------------------------------


@auth.admin_only
async def models_page(request: web.Request) -> web.Response:
    jobs = await nlu_models.recent_jobs(5)
    watched = _int(request.query.get("job"))
    job = next((j for j in jobs if j.id == watched), None) or next((j for j in jobs if not j.done), None)
    return render(
        request, "nlu_models.html", versions=await nlu_models.list_versions(), activations=await nlu_models.activations(20),
        jobs=jobs, job=job,
    )


@auth.admin_only
async def retrain(request: web.Request) -> web.Response:
    from bot.nlu_training import start_job  # imported on use: it spawns processes

    job, new = await start_job(_actor(request), request.app[NLU_CONSOLE].settings())
    return _done(request, f"/console/nlu/models?job={job.id}", job=job.as_dict(), new=new)


@auth.admin_only
async def job_status(request: web.Request) -> web.Response:
    job = await nlu_models.get_job(_int(request.match_info["id"]) or 0)
    if job is None:
        return web.json_response({"error": "no such job"}, status=404)
    url = f"/console/nlu/models/{job.version}" if job.version else None
    return web.json_response(job.as_dict() | {"url": url})


async def _evaluated(request: web.Request, version: str) -> tuple[nlu_models.ModelInfo | None, nlu_models.ModelInfo | None]:
    """The version and the active one, both evaluated on the current held-out file."""
    settings = request.app[NLU_CONSOLE].settings()
    active = await nlu_models.active_version()
    for name in {version, active} - {None}:
        await ensure_evaluated(name, settings)
    return await nlu_models.get(version), (await nlu_models.get(active) if active else None)


def _comparison(candidate: dict[str, Any], active: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per intent: the version's precision, recall, F1 beside the active model's."""
    mine, theirs = candidate.get("per_intent") or {}, (active or {}).get("per_intent") or {}
    rows = []
    for intent in sorted(set(mine) | set(theirs)):
        row: dict[str, Any] = {"intent": intent, "support": (mine.get(intent) or theirs.get(intent) or {}).get("support")}
        for key in ("precision", "recall", "f1"):
            new, old = (mine.get(intent) or {}).get(key), (theirs.get(intent) or {}).get(key)
            delta = None if new is None or old is None else new - old
            row[key] = {"new": new, "old": old, "delta": delta, "drop": delta is not None and delta < -DROP_HIGHLIGHT - 1e-9}
        rows.append(row)
    return rows


async def _version_view(request: web.Request, version: str, *, error: str | None = None, status: int = 200) -> web.Response:
    info, active = await _evaluated(request, version)
    if info is None:
        return _refused(request, f"no model version {version!r}", "/console/nlu/models", 404)
    gate = await nlu_models.check_gate(version, request.app[NLU_CONSOLE].domain_intents())
    comparing = active if active is not None and active.version != version else None
    return render(
        request, "nlu_version.html", status=status, v=info, active=comparing, gate=gate, error=error,
        rows=_comparison(info.metrics, comparing.metrics if comparing else None),
    )


@auth.admin_only
async def version_page(request: web.Request) -> web.Response:
    return await _version_view(request, request.match_info["version"])


@auth.admin_only
async def confusion_png(request: web.Request) -> web.Response:
    version = request.match_info["version"]
    info, _ = await _evaluated(request, version)
    confusion = (info.metrics.get("confusion") if info else None) or {}
    if not confusion.get("rows"):
        return web.json_response({"error": "no confusion matrix for this version"}, status=404)
    key = (version, str(info.metrics.get("test_hash")))  # type: ignore[union-attr]
    if key not in _confusion_cache:
        if len(_confusion_cache) >= 8:
            _confusion_cache.clear()
        _confusion_cache[key] = await asyncio.to_thread(_draw, confusion, version)
    return web.Response(body=_confusion_cache[key], content_type="image/png")


def _draw(confusion: dict[str, Any], version: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="confusion-") as tmp:
        path = plot_confusion_matrix(confusion["rows"], confusion["columns"], confusion["matrix"], Path(tmp) / "m.png", version)
        return path.read_bytes()


async def _serve(request: web.Request, version: str) -> None:
    """Tell every worker, and switch this one now rather than at its next poll."""
    from bot.nlu_admin import WATCHER  # imported on use: bot.nlu_admin imports the agent

    await announce(request.app[NLU_CONSOLE].redis(), version)
    if WATCHER in request.app:
        try:
            await request.app[WATCHER].sync()
        except Exception as exc:  # the watcher's own poll tries again
            log.warning("could not switch this worker to %s at once: %s", version, exc)


@auth.admin_only
async def activate(request: web.Request) -> web.Response:
    version = request.match_info["version"]
    form = await _form(request)
    await _evaluated(request, version)
    t = translator(language_of(request))
    try:
        await nlu_models.activate(
            version, _actor(request), override_reason=form.get("override_reason", "")[:2000] or None,
            domain_intents=request.app[NLU_CONSOLE].domain_intents(),
        )
    except nlu_models.GateBlocked as exc:
        if "application/json" in request.headers.get("Accept", ""):
            return web.json_response({"ok": False, "error": "gate", "failures": exc.gate.failures}, status=409)
        return await _version_view(request, version, error=t["nlu_reason_required"], status=409)
    except nlu_models.CorruptModel as exc:
        return _refused(request, str(exc), f"/console/nlu/models/{version}", 409)
    except nlu_models.ModelError as exc:
        return _refused(request, str(exc), "/console/nlu/models", 404)
    await _serve(request, version)
    return _done(request, "/console/nlu/models", version=version)


@auth.admin_only
async def rollback(request: web.Request) -> web.Response:
    try:
        version = await nlu_models.rollback(_actor(request))
    except nlu_models.ModelError as exc:
        return _refused(request, str(exc), "/console/nlu/models", 409)
    await _serve(request, version)
    return _done(request, "/console/nlu/models", version=version)


def register_nlu_console(
    app: web.Application, agent: Callable[[], Agent], redis: Callable[[], Redis | None], settings: Settings | None = None
) -> None:
    app[NLU_CONSOLE] = NluConsole(lambda: settings or get_settings(), agent, redis)
    add = app.router
    add.add_get("/console/nlu", data_page)
    add.add_get("/console/nlu/intent/{name}", intent_page)
    add.add_post("/console/nlu/examples", add_line)
    add.add_post("/console/nlu/examples/{id}/edit", edit_line)
    add.add_post("/console/nlu/examples/{id}/move", move_line)
    add.add_post("/console/nlu/examples/{id}/delete", delete_line)
    add.add_get("/console/nlu/resources", resources_page)
    add.add_get("/console/nlu/inbox", inbox_page)
    add.add_post("/console/nlu/inbox/decide", decide)
    add.add_post("/console/nlu/inbox/{id}/reveal", reveal)
    add.add_post("/console/h/{id}/correct", correct)
    add.add_get("/console/nlu/models", models_page)
    add.add_post("/console/nlu/retrain", retrain)
    add.add_post("/console/nlu/rollback", rollback)
    add.add_get("/console/nlu/jobs/{id}", job_status)
    add.add_get("/console/nlu/models/{version}", version_page)
    add.add_get("/console/nlu/models/{version}/confusion.png", confusion_png)
    add.add_post("/console/nlu/models/{version}/activate", activate)
