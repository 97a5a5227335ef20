from testing.webhook_receiver import webhook_receiver  # noqa: F401  (the fixture)
