"""CSV import of deliveries, shared by `waybill import deliveries FILE.csv` and the upload endpoint.

Every row goes through `create_delivery`, the REST API's own path. `external_ref` is required, so a
re-import finds the deliveries it created and creates nothing new. The report says, row by row,
what was created, what existed already and what was rejected and why.
"""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from typing import Any

from fastapi import UploadFile
from pydantic import ValidationError
from temporalio.client import Client

from api.deps import CurrentUser
from api.errors import ProblemError
from api.resources import Resources
from api.schemas.deliveries import DeliveryCreate
from api.schemas.integrations import ImportReport, ImportRow
from api.services.deliveries import create_delivery

COLUMNS = (
    "external_ref",
    "address",
    "lat",
    "lon",
    "window_start",
    "window_end",
    "contact_name",
    "contact_phone",
    "contact_email",
    "weight_kg",
    "volume_m3",
    "units",
    "priority",
    "notes",
)
REQUIRED = ("external_ref", "address", "lat", "lon")
CONCURRENCY = 8


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (not CSV, missing columns, too many rows)."""


def row_body(row: dict[str, str]) -> dict[str, Any]:
    """The DeliveryCreate body for one CSV row (blank optional cells take the API defaults)."""

    def get(name: str) -> str:
        return (row.get(name) or "").strip()

    dropoff: dict[str, Any] = {
        "address": get("address"),
        "location": {"lat": get("lat"), "lon": get("lon")},
        "contact": {
            "name": get("contact_name"),
            "phone": get("contact_phone"),
            "email": get("contact_email"),
        },
        "notes": get("notes"),
    }
    if get("window_start") or get("window_end"):
        dropoff["windows"] = [{"start": get("window_start"), "end": get("window_end")}]
    size = {k: get(k) for k in ("weight_kg", "volume_m3", "units") if get(k)}
    body: dict[str, Any] = {"external_ref": get("external_ref") or None, "dropoff": dropoff, "size": size}
    if get("priority"):
        body["priority"] = get("priority")
    return body


def parse_csv(text: str, max_rows: int) -> list[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = [h.strip() for h in reader.fieldnames or []]
    except csv.Error as exc:
        raise ImportFileError(f"not a CSV file: {exc}") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ImportFileError(
            f"the header lacks the column(s) {', '.join(missing)}; columns: {', '.join(COLUMNS)}"
        )
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise ImportFileError(f"unknown column(s) {', '.join(unknown)}; columns: {', '.join(COLUMNS)}")
    reader.fieldnames = header
    rows: list[tuple[int, dict[str, str]]] = []
    for row in reader:
        if len(rows) >= max_rows:
            raise ImportFileError(f"the file has more than {max_rows} rows (WAYBILL_IMPORT_MAX_ROWS)")
        if any((v or "").strip() for v in row.values() if isinstance(v, str)):
            rows.append((reader.line_num, row))
    return rows


def _validation_reason(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid"))


async def import_upload(
    file: UploadFile, user: CurrentUser, resources: Resources, client: Client
) -> ImportReport:
    """An uploaded CSV file (UTF-8, at most `proof_max_bytes`) imported: 413 or 422 invalid_csv if it
    cannot be."""
    raw = await file.read(resources.settings.proof_max_bytes + 1)
    if len(raw) > resources.settings.proof_max_bytes:
        raise ProblemError(413, "payload_too_large", "the CSV file is too large")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ProblemError(422, "invalid_csv", "the file is not UTF-8 text") from None
    try:
        return await import_deliveries(text, user, resources, client)
    except ImportFileError as exc:
        raise ProblemError(422, "invalid_csv", str(exc)) from None


async def import_deliveries(
    text: str, user: CurrentUser, resources: Resources, client: Client
) -> ImportReport:
    parsed = parse_csv(text, resources.settings.import_max_rows)
    first_line: dict[str, int] = {}
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(line: int, raw: dict[str, str]) -> ImportRow:
        ref = (raw.get("external_ref") or "").strip() or None
        if ref is None:
            return ImportRow(
                row=line,
                outcome="rejected",
                code="external_ref_required",
                reason="external_ref is required, so that importing the file again creates nothing new",
            )
        if first_line.setdefault(ref, line) != line:
            return ImportRow(
                row=line,
                outcome="rejected",
                external_ref=ref,
                code="duplicate_row",
                reason=f"external_ref {ref} already appears on line {first_line[ref]}",
            )
        try:
            body = DeliveryCreate.model_validate(row_body(raw))
        except ValidationError as exc:
            return ImportRow(
                row=line,
                outcome="rejected",
                external_ref=ref,
                code="validation_error",
                reason=_validation_reason(exc),
            )
        async with gate, resources.sessionmaker() as session:
            try:
                result = await create_delivery(body, user, session, client, resources.settings, None)
            except ProblemError as exc:
                return ImportRow(
                    row=line, outcome="rejected", external_ref=ref, code=exc.code, reason=exc.detail
                )
        return ImportRow(
            row=line,
            outcome="created" if result.created else "existing",
            external_ref=ref,
            delivery_id=uuid.UUID(result.state.delivery_id),
        )

    rows = list(await asyncio.gather(*(one(line, raw) for line, raw in parsed)))
    count = {k: sum(r.outcome == k for r in rows) for k in ("created", "existing", "rejected")}
    return ImportReport(**count, rows=rows)
