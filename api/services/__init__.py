"""The service layer between routers and repositories: what an endpoint does, without HTTP or SQL."""
