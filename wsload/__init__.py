"""wsload: load and concurrency testing for JWT-authenticated WebSocket agent-chat backends."""

__version__ = "0.1.0"
