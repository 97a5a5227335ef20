"""Fixed words and names of the public contract (../shared/contract.md), importable from anywhere."""

API_PREFIX = "/api/v1/"
INFERENCE_PREFIX = "/v1/"
INFERENCE_ROUTES = (
    "models",
    "chat/completions",
    "embeddings",
    "images/generations",
    "audio/transcriptions",
    "audio/speech",
)
INVALID_TOKEN = "Invalid or expired token"  # noqa: S105 (a message, not a secret)
REQUEST_ID_HEADER = "X-Request-Id"
WORKER_ID_HEADER = "X-Worker-Id"
WORKER_NAME_HEADER = "X-Worker-Name"
