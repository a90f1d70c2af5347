"""The HTTP API (FastAPI) and the socket server (api/sockets)."""
