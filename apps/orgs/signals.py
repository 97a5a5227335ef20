"""What the orgs app announces to the apps above it, which it does not import (DESIGN.md).

Both signals are sent inside the transaction of the change, so a receiver's writes
commit or roll back with it, and a receiver that raises refuses the change.
"""

from django.dispatch import Signal

# Sent before a user joins an org (added by an owner, or by accepting an invitation),
# with ``org``. The plans app refuses (PermissionDenied naming the plan) once the
# plan's cap on members is reached.
member_joining = Signal()

# Sent before a membership is deleted, with ``org``, ``user_id`` and ``actor``. The keys
# app revokes the member's keys in the org: a former member's key must not keep working.
member_leaving = Signal()
