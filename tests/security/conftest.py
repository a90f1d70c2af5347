"""The parser fuzz tests use the integration API server (real server on each SQL backend, Temporal dev
server and workers behind it)."""

from tests.integration.api.conftest import api_resources, api_url, fleet, http, login, tenant

__all__ = ["api_resources", "api_url", "fleet", "http", "login", "tenant"]
