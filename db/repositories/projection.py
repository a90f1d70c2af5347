"""The delivery projection: each DeliveryWorkflow's state as its `deliveries` row, written only forward
(by sequence), so retried or reordered writes never move a row backwards."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import DeliveryRow
from db.upsert import insert_ignoring_into
from domain.delivery import DeliveryState
from plumbing.codec import to_json_text, to_jsonable


def projection_values(state: DeliveryState, *, state_as_text: bool = False) -> dict[str, Any]:
    """The projection row's columns for `state`. With `state_as_text` the `state` column comes as
    JSON text, for statements that bind it as text (one encoding instead of encode, decode and
    encode again)."""
    drop = state.spec.dropoff
    return {
        "sequence": state.sequence,
        "status": state.status.value,
        "external_ref": state.spec.external_ref,
        "attempt": state.attempt,
        "vehicle_id": uuid.UUID(state.vehicle_id) if state.vehicle_id else None,
        "driver_id": uuid.UUID(state.driver_id) if state.driver_id else None,
        "priority": state.spec.priority,
        "dropoff_address": drop.address,
        "dropoff_lat": drop.lat,
        "dropoff_lon": drop.lon,
        "window_start": drop.windows[0].start if drop.windows else None,
        "window_end": drop.windows[-1].end if drop.windows else None,
        "late": state.late,
        "state": to_json_text(state) if state_as_text else to_jsonable(state),
        "updated_at": state.updated_at,
    }


async def write_projection(session: AsyncSession, state: DeliveryState, occurred_at: datetime) -> bool:
    """Write `state` to its row if it is newer than the row (its sequence), or insert the row if
    there is none; `occurred_at` stands in for a missing `created_at`. True if a row was written.
    The projection activity and the reconciler (activities/reconcile.py) both write through here."""
    values = projection_values(state)
    delivery_id = uuid.UUID(state.delivery_id)
    moved = await session.execute(
        update(DeliveryRow)
        .where(DeliveryRow.id == delivery_id, DeliveryRow.sequence < state.sequence)
        .values(**values)
    )
    if moved.rowcount:  # type: ignore[attr-defined]
        return True
    # Not there yet (created outside the API) or already newer: insert-if-absent covers both.
    inserted = await session.execute(
        insert_ignoring_into(session, DeliveryRow, ["id"]).values(
            id=delivery_id,
            organization_id=uuid.UUID(state.organization_id),
            created_at=state.created_at or occurred_at,
            **values,
        )
    )
    return bool(inserted.rowcount)  # type: ignore[attr-defined]
