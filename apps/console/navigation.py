"""What the base layout shows around every page: the org switcher, the side navigation, the request id.

The sections are named by URL name and take the org's slug as their one argument. A
section whose page is not (yet) routed is left out of the menu rather than breaking
every page: the console's sections land one at a time.

A page extends ``base.html`` and fills ``title``, ``breadcrumbs`` (``<li>`` items, the last
with ``aria-current="page"``) and ``content``; entrance pages (sign-in and the like) extend
``entrance.html``. The current org is the one whose slug is the URL's ``slug`` argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

from apps.orgs.models import Membership, Organisation, Role, role_at_least
from apps.orgs.platform import is_operator, is_support
from apps.orgs.selectors import memberships_of
from pendra_console.request_id import current_request_id


@dataclass(frozen=True)
class Section:
    label: str
    url_name: str
    # The weakest org role that sees the link; the view itself enforces the same rule.
    min_role: str = Role.MEMBER


ORG_SECTIONS = (
    Section("Overview", "console:org-overview"),
    # Members see their own keys' numbers on both (the views narrow them).
    Section("Dashboard", "console:dashboard"),
    Section("Usage", "console:usage"),
    Section("API keys", "console:keys"),
    Section("Members", "console:members"),
    Section("Plan", "console:plan"),
    # Members see their own keys' requests only (the view narrows the list).
    Section("Request log", "console:requests"),
    Section("Audit log", "console:audit", min_role=Role.ADMIN),
    Section("Webhooks", "console:webhooks", min_role=Role.ADMIN),
    Section("Security", "console:org-security", min_role=Role.OWNER),
)


@dataclass(frozen=True)
class NavLink:
    label: str
    url: str
    active: bool


def _reverse(url_name: str, *args: Any) -> str | None:
    try:
        return reverse(url_name, args=args)
    except NoReverseMatch:
        return None


def org_overview_url(slug: str) -> str | None:
    return _reverse("console:org-overview", slug)


class ConsoleNav:
    """Computed on first use in a template, so pages that show no navigation query nothing."""

    def __init__(self, request: HttpRequest) -> None:
        self.request = request
        self.user = getattr(request, "user", None)
        match = getattr(request, "resolver_match", None)
        self.url_name = f"{match.namespace}:{match.url_name}" if match and match.namespace else ""
        self.slug = (match.kwargs.get("slug") if match else None) or ""

    @cached_property
    def memberships(self) -> list[Membership]:
        if self.user is None or not self.user.is_authenticated:
            return []
        return list(memberships_of(user=self.user))

    @cached_property
    def current(self) -> Membership | None:
        """The membership of the org in the URL, else the user's first; None for staff without orgs."""
        for membership in self.memberships:
            if membership.org.slug == self.slug:
                return membership
        return self.memberships[0] if self.memberships else None

    @property
    def org(self) -> Organisation | None:
        return self.current.org if self.current else None

    @property
    def role(self) -> str:
        return self.current.role if self.current else ""

    @cached_property
    def org_links(self) -> list[NavLink]:
        current = self.current
        if current is None:
            return []
        links = []
        for section in ORG_SECTIONS:
            url = _reverse(section.url_name, current.org.slug)
            if url is not None and role_at_least(current.role, section.min_role):
                links.append(NavLink(section.label, url, active=self.url_name == section.url_name))
        return links

    @cached_property
    def switcher(self) -> list[NavLink]:
        """Every org of the user, each linking to its overview (or the console's home)."""
        links = []
        for membership in self.memberships:
            url = org_overview_url(membership.org.slug) or reverse("console:home")
            links.append(NavLink(membership.org.name, url, active=membership is self.current))
        return links

    @cached_property
    def platform_links(self) -> list[NavLink]:
        links = []
        for label, url_name, allowed in (
            ("Support", "console:support", is_support(self.user) or is_operator(self.user)),
            ("Workers", "console:workers", is_operator(self.user)),
            ("Platform audit", "console:platform-audit", is_operator(self.user)),
        ):
            url = _reverse(url_name) if allowed else None
            if url is not None:
                links.append(NavLink(label, url, active=self.url_name == url_name))
        return links


def console(request: HttpRequest) -> dict[str, Any]:
    """Template context processor (settings.TEMPLATES)."""
    return {
        "nav": ConsoleNav(request),
        # Error pages quote it; the same id is in the X-Request-Id header and the logs.
        "request_id": getattr(request, "request_id", None) or current_request_id.get(),
    }
