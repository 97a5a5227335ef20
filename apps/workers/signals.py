"""What the workers app announces to apps above it (webhooks), which it may not import."""

from django.dispatch import Signal

# Sent inside the transaction of the change: worker=Worker, from_state=str, to_state=str, reason=str.
worker_state_changed = Signal()
