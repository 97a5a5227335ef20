"""Console forms over real HTTP (a server process, not Django's test client): CSRF token and all."""

from __future__ import annotations

import re

import httpx


def csrf_token(browser: httpx.Client, path: str) -> str:
    """The form's CSRF token (the page is fetched, which also sets the CSRF cookie)."""
    page = browser.get(path)
    assert page.status_code == 200, page.text[:300]
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def post_form(browser: httpx.Client, path: str, data: dict[str, str]) -> httpx.Response:
    return browser.post(path, data={**data, "csrfmiddlewaretoken": csrf_token(browser, path)})


def sign_in(browser: httpx.Client, email: str, password: str) -> httpx.Response:
    """Post the sign-in form; on success the browser holds the session cookie."""
    return post_form(browser, "/accounts/login/", {"login": email, "password": password})
