"""What happened to one request, in plain language, assembled from its record (one place).

Support staff, operators and the org's own people read the same explanation, in the API
and on the console's support page: which key and org, which limit fired (bucket, plan,
limit, reset), which workers were tried and what each returned, which timeout hit, the
retries, and whether the request was billed and how much. It is built only from the
record, its usage row and the key the record names: never a prompt or an output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import Any

from apps.keys.selectors import keys_by_public_id
from apps.requestlog.models import RequestRecord, UsageRecord

# Statuses the gateway records that HTTPStatus does not name.
_REASONS = {499: "Client Closed Request"}
_TIMEOUTS = {
    "idle": "the worker sent nothing for {seconds:g} s (the {kind} idle limit)",
    "total": "the {kind} request took longer than its {seconds:g} s limit",
}


@dataclass
class Fact:
    topic: str  # key, org, limit, workers, timeout, retries, billing, outcome, error
    text: str


@dataclass
class Explanation:
    record: RequestRecord
    org: Any  # the Organisation, or None when no key was recognised
    key: Any  # the ApiKey named (also the refused one of a 401), or None
    usage: UsageRecord | None
    summary: str = ""
    facts: list[Fact] = field(default_factory=list)


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return _REASONS.get(status, "")


def explain_records(records: list[RequestRecord]) -> list[Explanation]:
    """One explanation per record, in the records' order; two queries whatever their number."""
    usages = {u.request_uid: u for u in UsageRecord.objects.filter(request_uid__in=[r.uid for r in records])}
    keys = keys_by_public_id({r.key_public_id for r in records if r.key_public_id})
    explained = []
    for record in records:
        key = keys.get(record.key_public_id) if record.key_public_id else None
        if key is None and record.api_key_id:
            key = record.api_key
        org = record.org if record.org_id else (key.org if key is not None else None)
        explained.append(_explain(record, org=org, key=key, usage=usages.get(record.uid)))
    return explained


def _explain(record: RequestRecord, *, org: Any, key: Any, usage: UsageRecord | None) -> Explanation:
    explanation = Explanation(record=record, org=org, key=key, usage=usage)
    facts = explanation.facts
    when = record.created_at.strftime("%d %b %Y, %H:%M:%S UTC")
    facts.append(
        Fact(
            "outcome",
            f"{record.method} {record.route} answered {record.status} {reason(record.status)} "
            f"on {when} after {record.latency_ms:g} ms.",
        )
    )
    facts.append(Fact("key", _key_text(record, key)))
    facts.append(
        Fact("org", f"Organisation {org.name} ({org.slug})." if org is not None else "No organisation: no key known.")
    )
    if record.limit_bucket:
        plan = f" on plan {record.limit_plan}" if record.limit_plan else ""
        reset = f"; it reset {record.limit_reset_s} s later" if record.limit_reset_s is not None else ""
        facts.append(Fact("limit", f'The "{record.limit_bucket}" limit fired: {record.limit}{plan}{reset}.'))
    facts.append(Fact("workers", _workers_text(record)))
    if record.timeout:
        facts.append(Fact("timeout", f"The {record.timeout} timeout hit: {_timeout_text(record)}."))
    if record.attempts > 1:
        facts.append(Fact("retries", f"Retried {record.attempts - 1} time(s) on another worker."))
    elif record.attempts == 1:
        facts.append(Fact("retries", "No retry: one worker was tried."))
    facts.append(Fact("billing", _billing_text(usage)))
    if record.error:
        facts.append(Fact("error", f"The client was told: {record.error}"))
    explanation.summary = _summary(record, usage)
    return explanation


def _key_text(record: RequestRecord, key: Any) -> str:
    if key is None:
        if record.key_public_id:
            return f"Key pnd_{record.key_public_id} was presented; no such key exists."
        if record.status == 401:
            return "No API key was presented, or what was presented is not a well-formed Pendra key."
        return "No API key (a signed-in session or no credentials)."
    owner = key.user.email if key.user_id and key.user else "a deleted user"
    text = f"Key {key.prefix} (“{key.name}”) of {owner}."
    if record.status == 401:
        text += " " + _refused_because(key, record.created_at)
    return text


def _refused_because(key: Any, at: datetime) -> str:
    """Why the key was refused at ``at``, by the one "usable at" rule's parts (apps.keys.models)."""
    stamp = "%d %b %Y, %H:%M UTC"
    if key.revoked_at is not None and key.revoked_at <= at:
        return f"It was refused because it had been revoked on {key.revoked_at.strftime(stamp)}."
    if key.expires_at is not None and key.expires_at <= at:
        return f"It was refused because it had expired on {key.expires_at.strftime(stamp)}."
    if key.grace_until is not None and key.grace_until <= at:
        return f"It was refused because it was rotated and its grace ended on {key.grace_until.strftime(stamp)}."
    if not key.secret_hash:
        return "It was refused because its secret had not been revealed yet (a scheduled rotation's successor)."
    if key.user_id and not key.user.is_active:
        return "It was refused because its user is deactivated."
    return "The key was usable then, so the secret presented did not match (a mistyped, truncated or forged key)."


def _workers_text(record: RequestRecord) -> str:
    trail = [entry for entry in record.worker_trail if isinstance(entry, dict)]
    if trail:
        tried = "; ".join(
            f"{entry.get('worker', '?')} ({entry.get('worker_id', '?')}): {entry.get('result', '?')}" for entry in trail
        )
        return f"Workers tried, in order: {tried}."
    if record.worker_name:
        return f"Served by worker {record.worker_name} ({record.worker_id})."
    if record.status == 503:
        return f"No worker was tried: none healthy was serving {record.model or 'the model'}."
    return "No worker was tried: the request was answered before routing."


def _timeout_text(record: RequestRecord) -> str:
    kind, _, phase = record.timeout.rpartition(" ")
    template = _TIMEOUTS.get(phase, "it ran out after {seconds:g} s")
    return template.format(kind=kind or record.timeout, seconds=record.timeout_s or 0)


def _billing_text(usage: UsageRecord | None) -> str:
    if usage is None:
        return "Not billed: only successful requests are billed."
    text = (
        f"Billed {usage.total_tokens} tokens ({usage.prompt_tokens} prompt, "
        f"{usage.completion_tokens} completion) for {usage.model}"
    )
    return text + (f", {usage.units} unit(s)." if usage.units else ".")


def _summary(record: RequestRecord, usage: UsageRecord | None) -> str:
    status = record.status
    if 200 <= status < 300:
        billed = f"billed {usage.total_tokens} tokens" if usage is not None else "not billed"
        worker = f" by {record.worker_name}" if record.worker_name else ""
        return f"Succeeded ({status}): answered{worker}; {billed}."
    if status == 401:
        return "Refused (401): the API key was not accepted."
    if status == 429 and record.limit_bucket:
        plan = f" of plan {record.limit_plan}" if record.limit_plan else ""
        return f'Refused (429): the "{record.limit_bucket}" limit{plan} was used up ({record.limit}).'
    if status == 504 and record.timeout:
        return f"Timed out (504): the {record.timeout} timeout ({record.timeout_s or 0:g} s) hit."
    if status == 502:
        names = ", ".join(str(entry.get("worker", "?")) for entry in record.worker_trail if isinstance(entry, dict))
        return f"Failed (502): the worker(s) tried failed: {names or record.worker_name or 'unknown'}."
    return f"{status} {reason(status)}: {record.error or 'see the facts below'}."
