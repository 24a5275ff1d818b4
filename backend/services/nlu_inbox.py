"""The NLU inbox: customer messages the bot may have misunderstood, for admins to label.

Captured: messages that fell back (`nlu_fallback`), scored below the inbox threshold, led to an
escalation to a person, or that an agent corrected in the console. Near-duplicates share a
`group_key` (the words without accents, digits or codes), so one decision covers the group.
A confirmed group becomes training examples; "out of scope" makes it an `out_of_scope`
example; "ignore" only closes it.

Customer text is personal data: lists show it masked (phone numbers, customer codes, e-mail
addresses); showing the original is an explicit, audited action.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from backend.clock import utcnow
from backend.db import read_scope, session_scope
from backend.models import NluExample, NluInboxItem
from backend.services import nlu_data
from backend.services.nlu_data import Actor, NluDataError, audit

REASONS = ("fallback", "low_confidence", "escalation", "agent_correction")
DECISIONS = ("confirm", "out_of_scope", "ignore")
STATUSES = ("open", "confirmed", "out_of_scope", "ignored")
OUT_OF_SCOPE_INTENT = "out_of_scope"
MAX_TEXT = 1000

_PHONE = re.compile(r"(?<![\w+])(?:\+?84|0)(?:[ .-]?\d){8,10}(?!\d)")
_CODE = re.compile(r"\b[A-Za-z]{2}\d{8,12}\b")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
_KEY_DROP = re.compile(r"[^a-z ]+")
# What a confirmed example uses in place of the customer's own number / code: the shape the
# classifier needs, none of the person.
STAND_INS = {"phone": "0912345678", "customer_code": "PE0400012345"}
# Entities annotated as [surface](entity); others carry their value: [surface]{"entity": ..., "value": ...}
_PLAIN_ENTITIES = {"customer_code", "phone", "ticket_id", "month", "kwh", "location"}


def mask(text: str) -> str:
    """Phone numbers, customer codes and e-mail addresses with their middle hidden."""

    def hide(match: re.Match[str]) -> str:
        value = match.group(0)
        keep = 2 if len(value) <= 8 else 3
        return value[:keep] + "•" * max(1, len(value) - 2 * keep) + value[-keep:]

    return _EMAIL.sub(lambda m: "•••@" + m.group(0).split("@", 1)[1], _CODE.sub(hide, _PHONE.sub(hide, text)))


# Particles and forms of address that change nothing a classifier should learn
# ("... vậy ạ", "em ơi ...", "giúp mình ..."), without diacritics.
_FILLERS = frozenset(
    "a ah ak oi nhe nha ne vay the day nhi ha hen di ad ban em anh chi minh toi to giup dum ho voi luon cai kia".split()
)


def group_key(text: str) -> str:
    """Near-duplicates share a key: the distinct words without diacritics, numbers, codes,
    punctuation, particles or forms of address, abbreviations expanded ("ko dc" = "không
    được"), in alphabetical order."""
    from nlu.normalize import normalize

    plain = normalize(_EMAIL.sub(" ", _CODE.sub(" ", _PHONE.sub(" ", text)))).plain
    words = sorted({w for w in _KEY_DROP.sub(" ", plain).split() if w not in _FILLERS})
    return " ".join(words)[:255] or "(no words)"


@dataclass(frozen=True)
class InboxItem:
    id: int
    text: str
    masked: str
    group_key: str
    channel: str
    conversation_id: str
    reason: str
    predicted_intent: str | None
    confidence: float | None
    ranking: list[dict[str, Any]]
    entities: list[dict[str, Any]]
    suggested_intent: str | None
    status: str
    resolved_intent: str | None
    created_at: datetime


@dataclass
class InboxGroup:
    key: str
    items: list[InboxItem] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.items)

    @property
    def sample(self) -> InboxItem:
        return self.items[0]

    @property
    def reasons(self) -> list[str]:
        return sorted({i.reason for i in self.items})

    @property
    def predicted(self) -> str | None:
        return self.sample.predicted_intent

    @property
    def suggested(self) -> str | None:
        return next((i.suggested_intent for i in self.items if i.suggested_intent), None)

    @property
    def last_seen(self) -> datetime:
        return max(i.created_at for i in self.items)


def _item(row: NluInboxItem) -> InboxItem:
    return InboxItem(
        row.id, row.text, mask(row.text), row.group_key, row.channel, row.conversation_id, row.reason, row.predicted_intent,
        row.confidence, list(row.ranking or []), list(row.entities or []), row.suggested_intent, row.status, row.resolved_intent,
        row.created_at,
    )


async def capture(
    text: str,
    *,
    channel: str,
    conversation_id: str,
    reason: str,
    parse_data: dict[str, Any] | None = None,
    model_version: str | None = None,
    suggested_intent: str | None = None,
) -> int | None:
    """Put a message in the inbox; returns its id (None for a message with no words, such as
    a button payload or an empty text, which there is nothing to learn from)."""
    if reason not in REASONS:
        raise ValueError(f"unknown inbox reason {reason!r}")
    text = " ".join(str(text).split())[:MAX_TEXT]
    if not text or text.startswith("/"):
        return None
    parse_data = parse_data or {}
    intent = parse_data.get("intent") or {}
    ranking = [{"name": r.get("name"), "confidence": r.get("confidence")} for r in (parse_data.get("intent_ranking") or [])[:10]]
    entities = [
        {k: e.get(k) for k in ("entity", "value", "start", "end")} for e in parse_data.get("entities") or [] if isinstance(e, dict)
    ]
    async with session_scope() as session:
        row = NluInboxItem(
            text=text, group_key=group_key(text), channel=channel[:20], conversation_id=conversation_id[:255], reason=reason,
            predicted_intent=intent.get("name"), confidence=intent.get("confidence"), ranking=ranking, entities=entities,
            suggested_intent=suggested_intent, model_version=model_version, status="open", created_at=utcnow(),
        )
        session.add(row)
        await session.flush()
        return row.id


async def groups(status: str = "open", reason: str | None = None, search: str | None = None, limit: int = 200) -> list[InboxGroup]:
    """Items grouped by near-duplicate key, the largest (then most recent) group first."""
    query = select(NluInboxItem).where(NluInboxItem.status == status)
    if reason:
        query = query.where(NluInboxItem.reason == reason)
    async with read_scope() as session:
        rows = [_item(r) for r in await session.scalars(query.order_by(NluInboxItem.id.desc()).limit(5000))]
    if search:
        needle = group_key(search)
        rows = [r for r in rows if needle in r.group_key]
    grouped: dict[str, InboxGroup] = {}
    for row in rows:
        grouped.setdefault(row.group_key, InboxGroup(row.group_key)).items.append(row)
    ordered = sorted(grouped.values(), key=lambda g: (-g.count, -g.last_seen.timestamp()))
    return ordered[:limit]


async def counts() -> dict[str, int]:
    async with read_scope() as session:
        rows = await session.execute(select(NluInboxItem.status, func.count()).group_by(NluInboxItem.status))
        return {status: int(n) for status, n in rows}


async def items(ids: Iterable[int]) -> list[InboxItem]:
    ids = list(ids)
    if not ids:
        return []
    async with read_scope() as session:
        return [_item(r) for r in await session.scalars(select(NluInboxItem).where(NluInboxItem.id.in_(ids)).order_by(NluInboxItem.id))]


async def reveal(item_id: int, actor: Actor) -> str:
    """The original text of one item; the audit log records who looked."""
    async with session_scope() as session:
        row = await session.get(NluInboxItem, item_id)
        if row is None:
            raise NluDataError(f"no inbox item #{item_id}")
        audit(session, actor, "nlu_inbox_reveal", item=item_id)
        return row.text


def suggested_example(item: InboxItem) -> str:
    """The item as an annotated training line, with the customer's own phone number or code
    replaced by a stand-in of the same kind."""
    spans = sorted(
        (e for e in item.entities if isinstance(e.get("start"), int) and isinstance(e.get("end"), int) and e.get("entity")),
        key=lambda e: e["start"],
    )
    out, cursor = [], 0
    for ent in spans:
        start, end = ent["start"], ent["end"]
        if start < cursor or end > len(item.text) or start >= end:
            continue  # overlapping or out of range: leave the text as it is
        surface = item.text[start:end]
        if "[" in surface or "]" in surface or "(" in surface or ")" in surface:
            continue
        name = str(ent["entity"])
        surface = STAND_INS.get(name, surface)
        out.append(item.text[cursor:start].replace("[", "(").replace("]", ")"))
        if name in _PLAIN_ENTITIES or ent.get("value") in (None, surface):
            out.append(f"[{surface}]({name})")
        else:
            value = str(ent["value"]).replace('"', "'")
            out.append(f'[{surface}]{{"entity": "{name}", "value": "{value}"}}')
        cursor = end
    out.append(item.text[cursor:].replace("[", "(").replace("]", ")"))
    text = "".join(out)
    # Numbers the extractors did not see are still the customer's: replace them too.
    return _PHONE.sub(STAND_INS["phone"], text) if "](phone)" not in text else text


async def decide(
    ids: Iterable[int],
    decision: str,
    actor: Actor,
    *,
    intent: str | None = None,
    texts: dict[int, str] | None = None,
    whole_groups: bool = True,
) -> dict[str, Any]:
    """Decide on items (and, with `whole_groups`, on every open item sharing their groups).

    confirm: each distinct group becomes one training example of `intent` (the item's suggested
    line, or the admin's edited line from `texts`); out_of_scope: the same as examples of
    `out_of_scope`; ignore: closed without training. Returns counts."""
    if decision not in DECISIONS:
        raise NluDataError(f"unknown decision {decision!r}; expected one of {', '.join(DECISIONS)}")
    if decision == "confirm":
        if not intent:
            raise NluDataError("confirming needs the right intent")
        intent = nlu_data.check_name("intent", intent)
    elif decision == "out_of_scope":
        intent = OUT_OF_SCOPE_INTENT
    texts = texts or {}
    chosen = await items(ids)
    if not chosen:
        raise NluDataError("no such inbox items")
    now = utcnow()
    added, closed = 0, 0
    async with session_scope() as session:
        keys = {i.group_key for i in chosen}
        query = select(NluInboxItem).where(NluInboxItem.status == "open")
        query = query.where(NluInboxItem.group_key.in_(keys)) if whole_groups else query.where(NluInboxItem.id.in_([i.id for i in chosen]))
        rows = list(await session.scalars(query.order_by(NluInboxItem.id)))
        by_group: dict[str, list[NluInboxItem]] = {}
        for row in rows:
            by_group.setdefault(row.group_key, []).append(row)
        for key, members in by_group.items():
            example_id = None
            if intent is not None:
                lead = next((i for i in chosen if i.group_key == key), _item(members[0]))
                line = texts.get(lead.id) or suggested_example(lead)
                example_id = await _add_example(session, intent, line, actor)
                added += example_id is not None
            for row in members:
                row.status = {"confirm": "confirmed", "out_of_scope": "out_of_scope", "ignore": "ignored"}[decision]
                row.resolved_intent, row.example_id, row.decided_by, row.decided_at = intent, example_id, actor.staff_id, now
                closed += 1
        audit(session, actor, "nlu_inbox_decide", decision=decision, intent=intent, items=closed, groups=len(by_group), examples=added)
    return {"items": closed, "groups": len(by_group), "examples": added}


async def _add_example(session: Any, intent: str, line: str, actor: Actor) -> int | None:
    """Add the line as an example (an existing identical example is reused)."""
    line = nlu_data.check_line("intent", line)
    existing = await session.scalar(select(NluExample.id).where(NluExample.kind == "intent", NluExample.name == intent, NluExample.text == line))
    if existing:
        return int(existing)
    return (await nlu_data.add("intent", intent, line, actor, session=session)).id


async def export_rows(status: str | None = "open", reveal_text: bool = False, actor: Actor | None = None) -> list[dict[str, Any]]:
    """Inbox items as plain rows for `python -m bot inbox export` (masked unless asked; asking
    is audited)."""
    query = select(NluInboxItem).order_by(NluInboxItem.id)
    if status:
        query = query.where(NluInboxItem.status == status)
    async with read_scope() as session:
        rows = [_item(r) for r in await session.scalars(query)]
    if reveal_text and actor is not None:
        async with session_scope() as session:
            audit(session, actor, "nlu_inbox_reveal", items=len(rows), export=True)
    return [
        {
            "id": r.id, "created_at": r.created_at.isoformat(), "channel": r.channel, "reason": r.reason,
            "text": r.text if reveal_text else r.masked, "predicted_intent": r.predicted_intent, "confidence": r.confidence,
            "status": r.status, "resolved_intent": r.resolved_intent, "group": r.group_key,
        }
        for r in rows
    ]
