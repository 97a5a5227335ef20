"""Console pages of one organisation, under ``/orgs/<slug>/``; each view checks the caller's role."""

from django.urls import path

from apps.console import (
    audit_pages,
    budget_pages,
    key_pages,
    member_pages,
    org_pages,
    plan_pages,
    request_pages,
    security_pages,
    usage_pages,
    webhook_pages,
)

urlpatterns = [
    path("", org_pages.OrgOverview.as_view(), name="org-overview"),
    path("rename/", org_pages.OrgRename.as_view(), name="org-rename"),
    path("transfer/", org_pages.OrgTransfer.as_view(), name="org-transfer"),
    path("delete/", org_pages.OrgDelete.as_view(), name="org-delete"),
    path("keys/", key_pages.KeyList.as_view(), name="keys"),
    path("keys/<int:key_id>/", key_pages.KeyDetail.as_view(), name="key-detail"),
    path("keys/<int:key_id>/rotate/", key_pages.KeyRotate.as_view(), name="key-rotate"),
    path("keys/<int:key_id>/reveal/", key_pages.KeyReveal.as_view(), name="key-reveal"),
    path("keys/<int:key_id>/revoke/", key_pages.KeyRevoke.as_view(), name="key-revoke"),
    path("keys/<int:key_id>/budget/", budget_pages.KeyBudgetSet.as_view(), name="key-budget"),
    path("budget/", budget_pages.OrgBudgetSet.as_view(), name="org-budget"),
    path("members/", member_pages.MemberList.as_view(), name="members"),
    path("members/invite/", member_pages.MemberInvite.as_view(), name="member-invite"),
    path("members/<int:member_id>/role/", member_pages.MemberRole.as_view(), name="member-role"),
    path("members/<int:member_id>/remove/", member_pages.MemberRemove.as_view(), name="member-remove"),
    path(
        "invitations/<int:invitation_id>/withdraw/",
        member_pages.InvitationWithdraw.as_view(),
        name="invitation-withdraw",
    ),
    path("dashboard/", usage_pages.DashboardPage.as_view(), name="dashboard"),
    path("usage/", usage_pages.UsagePage.as_view(), name="usage"),
    path("plan/", plan_pages.PlanPage.as_view(), name="plan"),
    path("plan/change/", plan_pages.PlanChange.as_view(), name="plan-change"),
    path("requests/", request_pages.RequestLog.as_view(), name="requests"),
    path("requests/<str:request_id>/", request_pages.RequestExplanation.as_view(), name="org-request"),
    path("audit/", audit_pages.AuditLog.as_view(), name="audit"),
    path("webhooks/", webhook_pages.WebhookList.as_view(), name="webhooks"),
    path("webhooks/<uuid:endpoint_id>/", webhook_pages.WebhookDeliveries.as_view(), name="webhook-deliveries"),
    path(
        "webhooks/<uuid:endpoint_id>/deliveries/<uuid:delivery_id>/resend/",
        webhook_pages.WebhookResend.as_view(),
        name="webhook-resend",
    ),
    path("webhooks/<uuid:endpoint_id>/delete/", webhook_pages.WebhookDelete.as_view(), name="webhook-delete"),
    path("security/", security_pages.OrgSecurity.as_view(), name="org-security"),
]
