"""The org a request's credential is bound to, read without knowing what authenticated it.

An API key acts in one organisation only. The keys app (above orgs) puts its credential
in DRF's ``request.auth``; orgs and plans read it through :class:`OrgCredential`, so
neither imports keys. This module imports no DRF view: the admin API's throttle
(loaded while DRF's ``APIView`` is being defined) depends on it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from apps.orgs.models import Membership


@runtime_checkable
class OrgCredential(Protocol):
    """A credential that acts in one organisation only, as found in ``request.auth``: the org
    it is bound to (None: a staff key, which acts as its user anywhere) and its user's
    membership there, read when it authenticated (None: no longer a member)."""

    @property
    def org_id(self) -> int | None: ...

    @property
    def membership(self) -> Membership | None: ...


def org_credential(request: Any) -> OrgCredential | None:
    """The request's org-bound credential (an API key), or None for a session."""
    credential = request.auth
    return credential if isinstance(credential, OrgCredential) and credential.org_id is not None else None
