"""Members and invitations: the list for everyone in the org; invite, change role, remove for owners;
and the page an invitation's link opens, signed in or not."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.mail import send_mail
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import urlencode
from django.views import View

from apps.console.access import OrgPage, ServiceRefused, redirect_after_post, service_call
from apps.console.forms import InviteForm, RoleForm
from apps.orgs import invitations, selectors, services
from apps.orgs.models import Invitation, Membership, Role

MEMBERS_PER_PAGE = 100


def invitation_link(request: HttpRequest, token: str) -> str:
    # The token rides in the query string: the access log writes the path only.
    return request.build_absolute_uri(reverse("console:invitation-accept") + "?" + urlencode({"token": token}))


def _send_invitation(*, invitation: Invitation, link: str) -> None:
    context = {"invitation": invitation, "link": link}
    subject = f"Join {invitation.org.name} on Pendra"
    body = render_to_string("console/members/invitation_email.txt", context)
    # After commit: a rolled-back invitation must not have been mailed.
    transaction.on_commit(
        lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [invitation.email], fail_silently=False)
    )


class MemberList(OrgPage):
    scope_map = {"GET": Role.MEMBER}

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        return self.render_members()

    def render_members(self, invite_form: InviteForm | None = None) -> HttpResponse:
        members = selectors.org_members(org=self.org)
        page = Paginator(members, MEMBERS_PER_PAGE).get_page(self.request.GET.get("page"))
        manage = MemberRole.allows(self.role)
        context = self.base_context(
            page=page,
            can={"invite": MemberInvite.allows(self.role), "manage": manage, "remove": MemberRemove.allows(self.role)},
            role_choices=Role.choices,
        )
        if MemberInvite.allows(self.role):
            context["invite_form"] = invite_form or InviteForm()
            context["invitations"] = [i for i in selectors.org_invitations(org=self.org)[:50] if i.status == "pending"]
        return render(self.request, "console/members/list.html", context)


class MemberInvite(MemberList):
    scope_map = {"POST": Role.OWNER}
    http_method_names = ["post"]

    def post(self, request: HttpRequest, slug: str) -> HttpResponse:
        form = InviteForm(request.POST)
        if form.is_valid():
            try:
                with service_call(request, form), transaction.atomic():
                    invitation, token = invitations.invitation_create(
                        org=self.org,
                        actor=request.user,
                        email=form.cleaned_data["email"],
                        role=form.cleaned_data["role"],
                    )
                    _send_invitation(invitation=invitation, link=invitation_link(request, token))
            except ServiceRefused:
                return self.render_members(invite_form=form)
            messages.success(request, f"Invitation sent to {invitation.email}.")
            return redirect_after_post(request, "console:members", self.org.slug)
        return self.render_members(invite_form=form)


class MemberObjectPage(OrgPage):
    http_method_names = ["post"]

    def member(self, member_id: int) -> Membership:
        membership = selectors.org_member(org=self.org, membership_id=member_id)
        if membership is None:
            raise Http404("No such member in this organisation.")
        return membership


class MemberRole(MemberObjectPage):
    scope_map = {"POST": Role.OWNER}

    def post(self, request: HttpRequest, slug: str, member_id: int) -> HttpResponse:
        membership = self.member(member_id)
        form = RoleForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose owner, admin or member.")
            return redirect_after_post(request, "console:members", self.org.slug)
        try:
            with service_call(request):
                services.membership_change_role(
                    membership=membership, role=form.cleaned_data["role"], actor=request.user
                )
        except ServiceRefused:
            return redirect_after_post(request, "console:members", self.org.slug)
        messages.success(request, f"{membership.user.email} is now {Role(form.cleaned_data['role']).label.lower()}.")
        if membership.user_id == request.user.pk:  # you demoted yourself: this page may now be closed to you
            return redirect_after_post(request, "console:org-overview", self.org.slug)
        return redirect_after_post(request, "console:members", self.org.slug)


class MemberRemove(MemberObjectPage):
    scope_map = {"POST": Role.OWNER}

    def post(self, request: HttpRequest, slug: str, member_id: int) -> HttpResponse:
        membership = self.member(member_id)
        try:
            with service_call(request):
                services.membership_remove(membership=membership, actor=request.user)
        except ServiceRefused:
            return redirect_after_post(request, "console:members", self.org.slug)
        messages.success(request, f"Removed {membership.user.email}; their keys in {self.org.name} are revoked.")
        if membership.user_id == request.user.pk:
            return redirect_after_post(request, "console:home")
        return redirect_after_post(request, "console:members", self.org.slug)


class InvitationWithdraw(OrgPage):
    scope_map = {"POST": Role.OWNER}
    http_method_names = ["post"]

    def post(self, request: HttpRequest, slug: str, invitation_id: int) -> HttpResponse:
        invitation = selectors.org_invitation(org=self.org, invitation_id=invitation_id)
        if invitation is None:
            raise Http404("No such invitation in this organisation.")
        try:
            with service_call(request):
                invitations.invitation_revoke(invitation=invitation, actor=request.user)
        except ServiceRefused:
            return redirect_after_post(request, "console:members", self.org.slug)
        messages.success(request, f"Withdrew the invitation to {invitation.email}.")
        return redirect_after_post(request, "console:members", self.org.slug)


class InvitationAccept(View):
    """Where the emailed link lands. Signed out: sign up or sign in, then come back here."""

    def token(self) -> str:
        return (self.request.GET.get("token") or self.request.POST.get("token") or "")[:200]

    def get(self, request: HttpRequest) -> HttpResponse:
        token = self.token()
        invitation = selectors.invitation_by_token(token=token) if token else None
        here = request.get_full_path()
        context: dict[str, Any] = {
            "invitation": invitation,
            "token": token,
            "next_query": urlencode({"next": here}),
            "email_matches": invitation is not None
            and request.user.is_authenticated
            and (request.user.email or "").lower() == invitation.email.lower(),
        }
        status = 200 if invitation is not None else 404
        return render(request, "console/members/accept.html", context, status=status)

    def post(self, request: HttpRequest) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect(f"{reverse('console:invitation-accept')}?{urlencode({'token': self.token()})}")
        try:
            with service_call(request):
                membership = invitations.invitation_accept(token=self.token(), user=request.user)
        except ServiceRefused:
            return redirect(f"{reverse('console:invitation-accept')}?{urlencode({'token': self.token()})}")
        messages.success(
            request, f"Welcome to {membership.org.name}: you are a {membership.get_role_display().lower()}."
        )
        return redirect("console:org-overview", slug=membership.org.slug)
