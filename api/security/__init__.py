"""Password hashing and JWT issue/verify, shared by the API and the socket server."""
