"""Worker simulator fixtures: real OpenAI-compatible HTTP servers on loopback."""
