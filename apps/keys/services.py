"""Every change to API keys: create, update, revoke, rotate, reveal.

The plaintext key exists only in the return value of :func:`api_key_create`,
:func:`api_key_rotate` and :func:`api_key_reveal`; the row keeps an HMAC of the secret.
After each change the key is evicted from this process's gateway cache so the change
applies to the very next request. The plan's cap on keys is enforced by plans with the
count this app gives it (:func:`apps.keys.selectors.org_held_key_count`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import audit
from apps.keys import selectors, tokens
from apps.keys.authentication import key_cache
from apps.keys.controls import CONTROL_FIELDS, clean_controls, widening
from apps.keys.models import ApiKey
from apps.orgs.models import Organisation
from apps.plans.services import enforce_cap
from apps.webhooks.models import EventType
from apps.webhooks.services import emit_event
from pendra_console.api.exceptions import Conflict, Gone, PermissionDenied, ValidationError

UPDATABLE_FIELDS = frozenset({"name", "expires_at", "rotate_every_days", "rotation_grace_seconds", *CONTROL_FIELDS})
MAX_GRACE = timedelta(days=30)
_PUBLIC_ID_ATTEMPTS = 5


def _validate_policy(*, name: str | None, expires_at: datetime | None, grace_seconds: int | None) -> None:
    if name is not None and not name.strip():
        raise ValidationError({"name": "Name must not be blank."})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "Must be in the future."})
    if grace_seconds is not None and not 0 <= grace_seconds <= MAX_GRACE.total_seconds():
        raise ValidationError({"rotation_grace_seconds": f"Must be between 0 and {int(MAX_GRACE.total_seconds())}."})


def key_event_data(key: ApiKey) -> dict[str, Any]:
    """How a webhook event names a key: never its secret or hash."""
    return {"id": key.pk, "prefix": key.prefix, "name": key.name, "user_id": key.user_id}


def _expired(key: ApiKey, now: datetime) -> bool:
    return key.expired_at is not None or (key.expires_at is not None and key.expires_at <= now)


def _mint() -> tuple[str, str]:
    """A fresh (public id, secret) pair."""
    return tokens.new_public_id(), tokens.new_secret()


def _insert(**fields: Any) -> tuple[ApiKey, str | None]:
    """Create the row with a fresh public id (retrying the astronomically rare collision)."""
    reveal_later = fields.pop("awaiting_reveal", False)
    for _ in range(_PUBLIC_ID_ATTEMPTS):
        public_id, secret = _mint()
        plaintext = tokens.format_key(public_id, secret)
        secret_fields = (
            {"secret_hash": "", "last_four": "", "awaiting_reveal": True}
            if reveal_later
            else {"secret_hash": tokens.hash_secret(secret), "last_four": plaintext[-4:]}
        )
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(public_id=public_id, **secret_fields, **fields)
        except IntegrityError:
            if ApiKey.objects.filter(public_id=public_id).exists():
                continue
            raise
        return key, (None if reveal_later else plaintext)
    raise Conflict("Could not allocate a key id; try again.")


@transaction.atomic
def api_key_create(
    *,
    org: Organisation | None,
    user: Any,
    actor: Any,
    name: str,
    expires_at: datetime | None = None,
    rotate_every_days: int | None = None,
    rotation_grace_seconds: int = 86400,
    **controls: Any,
) -> tuple[ApiKey, str]:
    """The new key and its plaintext, which is never available again.

    ``controls``: any of ``allowed_models``, ``allowed_ips``, ``rpm_limit``, ``tpm_limit``
    (apps/keys/controls.py), inside the org's plan and models.
    """
    unknown = sorted(set(controls) - set(CONTROL_FIELDS))
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be set."))
    controls = clean_controls(org_id=org.pk if org is not None else None, fields=controls)
    _validate_policy(name=name, expires_at=expires_at, grace_seconds=rotation_grace_seconds)
    if rotate_every_days is not None and rotate_every_days < 1:
        raise ValidationError({"rotate_every_days": "Must be at least 1."})
    if org is not None:  # a staff key outside any organisation has no plan and no cap
        # plans: the plan's cap on API keys (403 naming it), counted after it locks the org's plan
        enforce_cap(org=org, what="keys", held=lambda: selectors.org_held_key_count(org=org))
    key, plaintext = _insert(
        org=org,
        user=user,
        name=name.strip(),
        created_by=actor if getattr(actor, "pk", None) else None,
        expires_at=expires_at,
        rotate_every_days=rotate_every_days,
        rotation_grace_seconds=rotation_grace_seconds,
        **controls,
    )
    assert plaintext is not None
    audit(
        actor,
        AuditEvent.Type.KEY_CREATED,
        key,
        data={"prefix": key.prefix, "name": key.name, "user_id": key.user_id},
    )
    return key, plaintext


@transaction.atomic
def api_key_update(*, key: ApiKey, actor: Any, may_widen: bool = True, **fields: Any) -> ApiKey:
    """Change name, expiry, rotation policy or controls. Owner, org and user are fixed for a key's life.

    ``may_widen=False`` (a member on their own key) lets the controls only narrow.
    """
    unknown = sorted(set(fields) - UPDATABLE_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed."))
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.revoked_at is not None:
        raise ValidationError({"key": "A revoked key cannot be changed."})
    if "expires_at" in fields and _expired(key, timezone.now()):
        # Expiry is final: a later date would quietly bring a dead (perhaps leaked) secret back.
        raise ValidationError({"expires_at": "This key has expired and stays expired; create a new key."})
    _validate_policy(
        name=fields.get("name"),
        expires_at=fields.get("expires_at"),
        grace_seconds=fields.get("rotation_grace_seconds"),
    )
    if fields.get("rotate_every_days") is not None and fields["rotate_every_days"] < 1:
        raise ValidationError({"rotate_every_days": "Must be at least 1."})
    controls = clean_controls(org_id=key.org_id, fields=fields)
    if not may_widen and (refused := widening(key=key, cleaned=controls)):
        raise PermissionDenied(" ".join(refused.values()))
    fields |= controls
    changes: dict[str, Any] = {}
    for field, value in fields.items():
        value = value.strip() if isinstance(value, str) else value
        if getattr(key, field) != value:
            changes[field] = {"from": str(getattr(key, field)), "to": str(value)}
            setattr(key, field, value)
    if changes:
        key.save(update_fields=list(changes))
        audit(actor, AuditEvent.Type.KEY_CHANGED, key, data={"prefix": key.prefix, "changes": changes})
        key_cache.evict_now_and_on_commit(key.public_id)
    return key


@transaction.atomic
def api_key_revoke(*, key: ApiKey, actor: Any, reason: str = "") -> ApiKey:
    """Stop the key at once. Revoking a revoked key changes nothing."""
    now = timezone.now()
    n = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=now)
    key.refresh_from_db()
    if n == 1:
        data = {"prefix": key.prefix}
        if reason:
            data["reason"] = reason
        audit(actor, AuditEvent.Type.KEY_REVOKED, key, data=data)
    key_cache.evict_now_and_on_commit(key.public_id)
    return key


@transaction.atomic
def api_key_rotate(
    *, key: ApiKey, actor: Any, grace: timedelta, reveal_later: bool = False
) -> tuple[ApiKey, str | None]:
    """Create the successor; the old secret keeps working for ``grace`` (0: stops now).

    Two concurrent rotations of one key produce one successor: the row lock serialises
    them and ``rotated_from`` is unique, so the loser gets 409. With ``reveal_later`` the
    successor has no secret until :func:`api_key_reveal` (the scheduled rotation uses it).

    The old key keeps working through ``grace``, so a rotation with grace holds one more
    working key for a while and must fit the plan's key cap (rotating the successor again
    and again would otherwise multiply keys); without grace it swaps one key for another.
    An expired key is not rotated: its successor would be a way back in.
    """
    if not timedelta(0) <= grace <= MAX_GRACE:
        raise ValidationError({"grace_seconds": f"Must be between 0 and {int(MAX_GRACE.total_seconds())}."})
    locked = ApiKey.objects.select_for_update().filter(pk=key.pk).first()
    if locked is None:
        raise Conflict("This key no longer exists.")
    if locked.revoked_at is not None:
        raise ValidationError({"key": "A revoked key cannot be rotated."})
    if ApiKey.objects.filter(rotated_from=locked).exists():
        raise Conflict("This key was already rotated; rotate its successor instead.")
    now = timezone.now()
    if _expired(locked, now):
        raise ValidationError({"key": "An expired key cannot be rotated; create a new key."})
    org = locked.org
    if grace > timedelta(0) and org is not None:
        enforce_cap(org=org, what="keys", held=lambda: selectors.org_held_key_count(org=org))
    try:
        with transaction.atomic():
            successor, plaintext = _insert(
                org_id=locked.org_id,
                user_id=locked.user_id,
                name=locked.name,
                created_by=actor if getattr(actor, "pk", None) else None,
                expires_at=locked.expires_at,
                rotate_every_days=locked.rotate_every_days,
                rotation_grace_seconds=locked.rotation_grace_seconds,
                **{field: getattr(locked, field) for field in CONTROL_FIELDS},  # a successor keeps its limits
                rotated_from=locked,
                awaiting_reveal=reveal_later,
            )
    except IntegrityError:
        raise Conflict("This key was already rotated; rotate its successor instead.") from None
    grace_until = now + grace
    # A key already inside an earlier grace window never gets a longer one.
    if locked.grace_until is not None and locked.grace_until < grace_until:
        grace_until = locked.grace_until
    locked.grace_until = grace_until
    locked.rotated_at = now
    locked.save(update_fields=["grace_until", "rotated_at"])
    audit(
        actor,
        AuditEvent.Type.KEY_ROTATED,
        locked,
        data={
            "prefix": locked.prefix,
            "successor_id": successor.pk,
            "successor_prefix": successor.prefix,
            "grace_seconds": int(grace.total_seconds()),
            "scheduled": reveal_later,
        },
    )
    if locked.org is not None:
        emit_event(
            org=locked.org,
            event=EventType.KEY_ROTATED,
            data={
                "key": key_event_data(locked),
                "successor": key_event_data(successor),
                "grace_until": grace_until.isoformat(),
                "scheduled": reveal_later,
            },
        )
    key_cache.evict_now_and_on_commit(locked.public_id)
    return successor, plaintext


@transaction.atomic
def api_key_reveal(*, key: ApiKey, actor: Any) -> tuple[ApiKey, str]:
    """Mint the secret of a key made by a scheduled rotation; works once, then 410."""
    secret = tokens.new_secret()
    plaintext = tokens.format_key(key.public_id, secret)
    n = ApiKey.objects.filter(pk=key.pk, awaiting_reveal=True, revoked_at__isnull=True).update(
        awaiting_reveal=False, secret_hash=tokens.hash_secret(secret), last_four=plaintext[-4:]
    )
    if n != 1:
        raise Gone("This key's secret was already revealed (or the key was revoked); rotate it to get a new one.")
    key.refresh_from_db()
    audit(actor, AuditEvent.Type.KEY_REVEALED, key, data={"prefix": key.prefix})
    key_cache.evict_now_and_on_commit(key.public_id)
    return key, plaintext


@transaction.atomic
def api_keys_revoke_for_member(*, org: Organisation, user_id: int, actor: Any) -> list[ApiKey]:
    """Revoke a leaving member's keys in the org: a former member's key must not keep working."""
    keys = list(ApiKey.objects.filter(org=org, user_id=user_id, revoked_at__isnull=True))
    ApiKey.objects.filter(pk__in=[key.pk for key in keys]).update(revoked_at=timezone.now())
    for key in keys:
        audit(actor, AuditEvent.Type.KEY_REVOKED, key, data={"prefix": key.prefix, "reason": "member removed"})
        key_cache.evict_now_and_on_commit(key.public_id)
    return keys
