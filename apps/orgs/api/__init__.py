"""Admin API of the orgs app: organisations (:mod:`.orgs`), members and ownership
(:mod:`.members`), invitations (:mod:`.invitations`), audit events (:mod:`.audit`).

Views are thin: parse with the nested InputSerializer, call one service or selector,
shape with the OutputSerializer. Org-scoped views inherit the role check from
:class:`apps.orgs.permissions.OrgScopedAPIView` and declare ``scope_map``.
"""
