from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.utils import user_email
from django.http import HttpRequest

from pendra_console.client_address import request_client_address


class AccountAdapter(DefaultAccountAdapter):
    def get_client_ip(self, request: HttpRequest) -> str:
        # allauth's own per-address limits see the client as our sign-in throttle does:
        # X-Forwarded-For only through PENDRA_TRUSTED_PROXIES, so a shared load balancer's
        # address does not lock every user out together.
        return request_client_address(request)

    def populate_username(self, request: HttpRequest, user: Any) -> None:
        # One identity: the username is the email, as for every user the services create.
        user.username = user_email(user)
