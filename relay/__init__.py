"""relay: a callback relay for asynchronous generative-media jobs."""

# The one place the version is written: pyproject.toml reads it (dynamic), and so do --version, the
# OpenAPI document, the relay.started log line and the deliveries' User-Agent.
__version__ = "0.1.0"
