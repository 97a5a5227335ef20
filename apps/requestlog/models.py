from __future__ import annotations

from decimal import Decimal

from django.db import models

# Records outlive the keys, workers and users they name, and are written in bulk
# off the request path, so their references carry no database constraint.
_REF = {"null": True, "blank": True, "on_delete": models.DO_NOTHING, "db_constraint": False, "related_name": "+"}
# The org is the first column of the composite indexes below, which serve every query by org:
# an index of its own would only cost each written row another index insert.
_ORG = {**_REF, "db_index": False}


class RequestRecord(models.Model):
    """One row per ``/v1`` and ``/api/v1`` request. Never prompts, outputs or secrets.

    ``uid`` is minted by the server for every request and is what billing keys on;
    ``request_id`` is the id on the response, which a client may have chosen itself
    (and may reuse), so it is indexed but not unique.
    """

    uid = models.CharField(max_length=40, unique=True)
    request_id = models.CharField(max_length=200, db_index=True)
    created_at = models.DateTimeField(db_index=True)
    org = models.ForeignKey("orgs.Organisation", **_ORG)
    api_key = models.ForeignKey("keys.ApiKey", **_REF)
    user = models.ForeignKey("auth.User", **_REF)
    route = models.CharField(max_length=200)
    method = models.CharField(max_length=10)
    model = models.CharField(max_length=200, blank=True)
    status = models.PositiveSmallIntegerField()
    worker = models.ForeignKey("workers.Worker", **_REF)
    worker_name = models.CharField(max_length=100, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    streamed = models.BooleanField(default=False)
    latency_ms = models.FloatField()
    upstream_latency_ms = models.FloatField(null=True, blank=True)
    ttfb_ms = models.FloatField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    # What an explanation of the request needs (apps/requestlog/explanations.py), never a secret:
    # the presented key's public id (also on a 401, when it parsed), ...
    key_public_id = models.CharField(max_length=40, blank=True)
    # ... the limit that refused a 429 (its bucket, the plan, the limit as text, seconds to reset), ...
    limit_bucket = models.CharField(max_length=40, blank=True)
    limit_plan = models.CharField(max_length=100, blank=True)
    limit = models.CharField(max_length=100, blank=True)
    limit_reset_s = models.PositiveIntegerField(null=True, blank=True)
    # ... the timeout that hit a 504 (which one, after how many seconds), ...
    timeout = models.CharField(max_length=100, blank=True)
    timeout_s = models.FloatField(null=True, blank=True)
    # ... and every worker tried, in order: [{"worker_id", "worker", "result"}].
    worker_trail = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The request log's order, id included: a page ends after its rows, even where many
            # records share a timestamp (the keyset cursor is (created_at, id); apps/requestlog/cursors.py).
            models.Index(fields=["org", "-created_at", "-id"], name="record_org_time_id"),
            # A member's log is always narrowed to their own keys' requests: without this, a member
            # with few requests in a busy org has every request of the org read to fill a page.
            models.Index(fields=["org", "user", "-created_at", "-id"], name="record_org_user_time"),
            # The dashboard's recent failures: a walk down this small index, however many successes.
            models.Index(fields=["org", "-created_at"], name="record_org_failed", condition=models.Q(status__gte=400)),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.method} {self.route} {self.status}"


class UsageRecord(models.Model):
    """A billable success: at most one per request (unique ``request_uid``)."""

    request_uid = models.CharField(max_length=40, unique=True)
    request_id = models.CharField(max_length=200)
    created_at = models.DateTimeField(db_index=True)
    org = models.ForeignKey("orgs.Organisation", **_ORG)
    api_key = models.ForeignKey("keys.ApiKey", **_REF)
    route = models.CharField(max_length=200)
    model = models.CharField(max_length=200)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    # Non-token units: images generated, audio requests.
    units = models.PositiveIntegerField(default=0)
    # What the request cost in USD, priced once when it was billed from the plan's prices
    # the gateway held then (apps/plans/pricing.py); a later price change never re-prices it.
    cost = models.DecimalField(max_digits=20, decimal_places=10, default=Decimal(0))

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["org", "-created_at"], name="usage_org_time")]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {self.total_tokens}"


class UsageRollup(models.Model):
    """Billed usage per org, model, key, the key's user and hour: what usage reports read.

    Kept exact by the record writer (:mod:`apps.requestlog.rollups`): incremented in the
    transaction that inserts the usage rows, and only by the rows that transaction really
    inserted, so a replayed batch counts nothing twice. ``manage.py rebuild_rollups``
    recomputes it from the usage rows.
    """

    org = models.ForeignKey("orgs.Organisation", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    hour = models.DateTimeField()
    model = models.CharField(max_length=200)
    # 0 for "none": a unique constraint holds NULLs distinct, which would split one row in two.
    # The user is the key's, taken when the usage was written (for reports "by member").
    api_key_id = models.BigIntegerField(default=0)
    user_id = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    units = models.BigIntegerField(default=0)
    cost = models.DecimalField(max_digits=20, decimal_places=10, default=Decimal(0))

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "hour", "model", "api_key_id", "user_id"], name="usage_rollup_key")
        ]

    def __str__(self) -> str:
        return f"{self.org_id} {self.hour:%Y-%m-%d %H}h {self.model} {self.total_tokens}"


class RequestRollup(models.Model):
    """Inference requests (``/v1``) per org, the key's user, hour and status class (2 for 2xx, ...).

    What the dashboard counts requests and errors from (usage counts successes only). Kept
    like :class:`UsageRollup`: in the transaction that inserts the records, once per record.
    """

    org = models.ForeignKey("orgs.Organisation", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    hour = models.DateTimeField()
    user_id = models.BigIntegerField(default=0)
    status_class = models.PositiveSmallIntegerField()
    requests = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "hour", "user_id", "status_class"], name="request_rollup_key")
        ]

    def __str__(self) -> str:
        return f"{self.org_id} {self.hour:%Y-%m-%d %H}h {self.status_class}xx {self.requests}"
