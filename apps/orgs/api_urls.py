from django.urls import URLPattern, URLResolver, path

from apps.orgs import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("me", api.MeView.as_view(), name="api-me"),
    path("orgs/", api.OrgListView.as_view(), name="api-orgs"),
    path("orgs/<slug:slug>/", api.OrgDetailView.as_view(), name="api-org"),
    path("orgs/<slug:slug>/members/", api.MemberListView.as_view(), name="api-members"),
    path("orgs/<slug:slug>/members/<int:member_id>/", api.MemberDetailView.as_view(), name="api-member"),
    path("orgs/<slug:slug>/transfer-ownership/", api.TransferOwnershipView.as_view(), name="api-transfer-ownership"),
    path("orgs/<slug:slug>/invitations/", api.InvitationListView.as_view(), name="api-invitations"),
    path(
        "orgs/<slug:slug>/invitations/<int:invitation_id>/",
        api.InvitationDetailView.as_view(),
        name="api-invitation",
    ),
    path("orgs/<slug:slug>/audit-events/", api.AuditEventListView.as_view(), name="api-audit-events"),
    path("invitations/accept/", api.InvitationAcceptView.as_view(), name="api-invitation-accept"),
]
