from django.urls import URLPattern, URLResolver, path

from apps.orgs.api import audit, invitations, members, orgs

urlpatterns: list[URLPattern | URLResolver] = [
    path("orgs/", orgs.OrgListView.as_view(), name="api-orgs"),
    path("orgs/<slug:slug>/", orgs.OrgDetailView.as_view(), name="api-org"),
    path("orgs/<slug:slug>/members/", members.MemberListView.as_view(), name="api-members"),
    path("orgs/<slug:slug>/members/<int:member_id>/", members.MemberDetailView.as_view(), name="api-member"),
    path(
        "orgs/<slug:slug>/transfer-ownership/",
        members.TransferOwnershipView.as_view(),
        name="api-transfer-ownership",
    ),
    path("orgs/<slug:slug>/invitations/", invitations.InvitationListView.as_view(), name="api-invitations"),
    path(
        "orgs/<slug:slug>/invitations/<int:invitation_id>/",
        invitations.InvitationDetailView.as_view(),
        name="api-invitation",
    ),
    path("orgs/<slug:slug>/audit-events/", audit.AuditEventListView.as_view(), name="api-audit-events"),
    path("invitations/accept/", invitations.InvitationAcceptView.as_view(), name="api-invitation-accept"),
]
