from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from apps.console.navigation import ConsoleNav, org_overview_url


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Straight to the user's first organisation; a list of them (or the staff links) otherwise."""
    nav = ConsoleNav(request)
    if nav.org is not None:
        url = org_overview_url(nav.org.slug)
        if url is not None:
            return redirect(url)
    return render(request, "console/home.html", {"nav": nav})
