"""Named actors for tests (owner, admin, member, outsider, support, operator), each with a key."""
