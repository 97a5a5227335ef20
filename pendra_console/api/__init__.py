"""The shared admin-API kit: what every app's DRF views use, owned by no app.

- :mod:`.exceptions`: plain domain exceptions that services raise (no DRF in them);
  :mod:`pendra_console.errors` maps them to the JSON error contract for every surface.
- :mod:`.serializers`: strict input, the documented error shapes for the OpenAPI schema.
- :mod:`.pagination`: the page envelope and the helper views paginate with.

The org-scoped base view (``OrgScopedAPIView``) is the orgs app's, because the role
check it applies is orgs' rule (DESIGN.md) and this package sits below every app.
"""
