"""relay: a callback relay for asynchronous generative-media jobs."""

__version__ = "0.1.0"
