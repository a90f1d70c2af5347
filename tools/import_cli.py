"""`waybill import deliveries FILE.csv --org SLUG`: the CSV import of the upload endpoint, from a shell.

Deliveries are created as the organization's first active admin (or `--as EMAIL`), through the same
path as the REST API; workers (`waybill worker` or `waybill dev`) run their workflows. Prints the
per-row report as JSON and exits 1 if any row was rejected.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from api.deps import CurrentUser
from api.resources import Resources
from api.services.delivery_import import ImportFileError, import_deliveries
from db.repositories.accounts import OrganizationRepository
from db.repositories.cli_lookups import acting_user
from domain.roles import Role
from plumbing.settings import ConfigError, Settings


async def _acting_user(resources: Resources, org_slug: str, email: str | None) -> CurrentUser:
    async with resources.sessionmaker() as session:
        org = await OrganizationRepository(session).by_slug(org_slug)
        if org is None:
            raise ConfigError(f"no organization with slug {org_slug!r}")
        user = await acting_user(session, org.id, email)
    if user is None or user.role not in (Role.ADMIN.value, Role.DISPATCHER.value):
        raise ConfigError(f"no active admin or dispatcher {email or ''} in {org_slug!r} to import as")
    return CurrentUser(user.id, user.organization_id, Role(user.role), user.email, user.name)


async def run_import(settings: Settings, path: Path, org_slug: str, as_email: str | None) -> int:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    resources = await Resources.open(settings)
    try:
        user = await _acting_user(resources, org_slug, as_email)
        try:
            report = await import_deliveries(text, user, resources, await resources.temporal.get())
        except ImportFileError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    finally:
        await resources.close()
    sys.stdout.write(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
    sys.stdout.write(f"created {report.created}, existing {report.existing}, rejected {report.rejected}\n")
    return 1 if report.rejected else 0
