"""Auto-dispatch per depot: start, read and stop its DispatchWorkflow."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api.deps import Reader, ResourcesDep, SessionDep, TemporalDep, Writer
from api.schemas.routing import DispatchConfig, DispatchOut
from api.services import dispatch as service
from api.v1 import PREFIX

router = APIRouter(prefix=PREFIX + "/depots/{depot_id}/dispatch", tags=["routing"])


@router.put("", response_model=DispatchOut)
async def start_dispatch(
    depot_id: uuid.UUID,
    body: DispatchConfig,
    user: Writer,
    session: SessionDep,
    client: TemporalDep,
    resources: ResourcesDep,
) -> DispatchOut:
    """Turn auto-dispatch on: new and cancelled deliveries of the depot are re-planned in batches.

    Idempotent: if it is already on, it stays on with its current settings."""
    return await service.start(session, client, resources.settings, user, depot_id, body)


@router.get("", response_model=DispatchOut)
async def get_dispatch(
    depot_id: uuid.UUID, user: Reader, session: SessionDep, client: TemporalDep
) -> DispatchOut:
    return await service.read(session, client, user, depot_id)


@router.delete("", response_model=DispatchOut)
async def stop_dispatch(
    depot_id: uuid.UUID, user: Writer, session: SessionDep, client: TemporalDep
) -> DispatchOut:
    """Turn auto-dispatch off; routes already planned stay as they are."""
    return await service.stop(session, client, user, depot_id)
