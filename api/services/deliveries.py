"""Delivery operations behind the router: idempotent creation and reads. Actions (workflow Updates)
are in delivery_actions.py; the create's SQL in db/repositories/delivery_creates.py."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import CurrentUser
from api.errors import ProblemError, not_found, temporal_unavailable
from api.http.pagination import Page, PageParams, make_page
from api.resources import Resources
from api.schemas.deliveries import DeliveryCreate, DeliveryOut, EventOut, delivery_out, to_spec
from api.services.crud import require_reference
from db.models import DeliveryRow
from db.repositories import delivery_creates as creates
from db.repositories.deliveries import DeliveryRepository, DeliverySearch
from db.repositories.fleet import DepotRepository, DriverRepository
from db.repositories.projection import projection_values
from domain.delivery import (
    Actor,
    DeliveryInput,
    DeliverySpec,
    DeliveryState,
    DeliveryStatus,
    SpecError,
    never_started,
    start_input,
    validate_spec,
)
from domain.ids import uuid7
from domain.reconcile import delivery_workflow_id
from domain.roles import Role
from plumbing.codec import from_jsonable
from plumbing.settings import Settings
from starters.deliveries import delivery_options, start_delivery_workflow
from workflows.delivery import DeliveryWorkflow


def request_hash(body: DeliveryCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Created:
    state: DeliveryState
    created: bool  # False: an earlier request (same Idempotency-Key or external_ref) made it


def answer_created(response: Response, result: Created) -> None:
    """Where the delivery is; 200 and Idempotent-Replayed when an earlier request created it."""
    response.headers["Location"] = f"/api/v1/deliveries/{result.state.delivery_id}"
    if not result.created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"


@dataclass(frozen=True)
class _Call:
    """One create request: who asks, over which session and client, under which key."""

    user: CurrentUser
    session: AsyncSession
    client: Client
    settings: Settings
    key: str | None
    digest: str  # the request hash, with a key


async def create_delivery(
    body: DeliveryCreate,
    user: CurrentUser,
    session: AsyncSession,
    client: Client,
    settings: Settings,
    idempotency_key: str | None,
) -> Created:
    spec = to_spec(body)
    now = datetime.now(UTC)
    try:
        validate_spec(spec, now)
    except SpecError as exc:
        raise ProblemError(422, "invalid_delivery", str(exc)) from None
    org = user.organization_id
    if body.depot_id is not None:
        # Another organization's depot answers like one that does not exist (no existence oracle),
        # and is never written: auto-dispatch would put the delivery in that organization's plan.
        await require_reference(DepotRepository(session, org), body.depot_id, "depot_id")
        await session.commit()  # hands the connection back: the common path below does not use it
    call = _Call(
        user, session, client, settings, idempotency_key, request_hash(body) if idempotency_key else ""
    )
    if not spec.external_ref:
        # The common case, in one round trip on PostgreSQL (two statements on SQLite).
        initial = _initial_state(uuid7(), org, spec, now)
        new_row = _row_values(initial, org, now, state_as_text=True)
        if await creates.insert_new(session, new_row, idempotency_key, call.digest):
            await _start_new(call, initial)
            return Created(initial, created=True)
    return await _create_or_replay(call, spec, now)


async def _create_or_replay(call: _Call, spec: DeliverySpec, now: datetime) -> Created:
    """A create with an external_ref, or a repeat of an earlier request (same Idempotency-Key or
    external_ref): the delivery that request made, or a new one."""
    session, org = call.session, call.user.organization_id
    delivery_id = uuid7()
    if call.key:
        delivery_id, claimed_with = await creates.claim_key(session, org, call.key, call.digest, delivery_id)
        if claimed_with != call.digest:
            raise ProblemError(
                422, "idempotency_key_reused", "this Idempotency-Key was used for a different request body"
            )
    if spec.external_ref and (existing := await creates.by_ref(session, org, spec.external_ref)) is not None:
        if existing.id != delivery_id and call.key:
            await session.rollback()
            raise ProblemError(409, "external_ref_taken", "another delivery already has this external_ref")
        await session.commit()
        return await _existing(call, row_state(existing))
    initial = _initial_state(delivery_id, org, spec, now)
    try:
        inserted = await creates.insert_row(session, _row_values(initial, org, now))
        await session.commit()
    except IntegrityError:
        await session.rollback()
        if (
            spec.external_ref
            and (existing := await creates.by_ref(session, org, spec.external_ref)) is not None
        ):
            # The row is there from the first request's commit even if its workflow is still starting.
            await session.commit()
            return await _existing(call, row_state(existing))
        raise
    if inserted:
        await _start_new(call, initial)
        return Created(initial, created=True)
    # A repeat of an earlier request (same Idempotency-Key) whose row is written.
    row = await DeliveryRepository(session, org).owned(delivery_id)
    await session.commit()  # hands the connection back before the Temporal call
    return await _existing(call, row_state(row) if row is not None else initial)


async def _existing(call: _Call, state: DeliveryState) -> Created:
    """The answer to a create that an earlier request made. That request may have stopped between
    its row and its workflow start (killed, or Temporal unavailable): a row its workflow never wrote
    is started here, so a replayed create never answers with a delivery that cannot move."""
    if never_started(state):
        user, options = call.user, delivery_options(call.settings)
        params = start_input(state, f"{user.role.value}:{user.id}", options)
        await ensure_started(call.client, params, call.settings)
    return Created(state, created=False)


async def ensure_started(client: Client, params: DeliveryInput, settings: Settings) -> None:
    """Start the workflow of a row that may have none; a running or finished one is left as it is."""
    try:
        await start_delivery_workflow(client, params, settings.temporal_task_queue)
    except WorkflowAlreadyStartedError:
        pass  # closed already, so it existed
    except RPCError:
        raise temporal_unavailable() from None


def _initial_state(
    delivery_id: uuid.UUID, org: uuid.UUID, spec: DeliverySpec, now: datetime
) -> DeliveryState:
    return DeliveryState(
        delivery_id=str(delivery_id),
        organization_id=str(org),
        status=DeliveryStatus.PENDING,
        spec=spec,
        created_at=now,
        updated_at=now,
        pending_since=now,
    )


def _row_values(
    initial: DeliveryState, org: uuid.UUID, now: datetime, *, state_as_text: bool = False
) -> dict[str, Any]:
    """The projection row of a new delivery (sequence 0): the workflow's own projection overwrites it.

    `state_as_text`: the state as JSON text, for the prepared statements of
    db/repositories/delivery_creates.py; otherwise as a JSON value for the JSON column."""
    values = {**projection_values(initial, state_as_text=state_as_text), "sequence": 0}
    return {"id": uuid.UUID(initial.delivery_id), "organization_id": org, "created_at": now, **values}


def _workflow_input(initial: DeliveryState, user: CurrentUser, settings: Settings) -> DeliveryInput:
    assert initial.created_at is not None
    return DeliveryInput(
        delivery_id=initial.delivery_id,
        organization_id=initial.organization_id,
        spec=initial.spec,
        created_by=f"{user.role.value}:{user.id}",
        created_at=initial.created_at,
        options=delivery_options(settings),
    )


async def _start_new(call: _Call, initial: DeliveryState) -> None:
    """Start the workflow of a row this request inserted; without Temporal, undo what a retry cannot find."""
    params = _workflow_input(initial, call.user, call.settings)
    try:
        await start_delivery_workflow(call.client, params, call.settings.temporal_task_queue)
    except WorkflowAlreadyStartedError:
        pass  # cannot happen for a fresh id; kept for symmetry with the replay path
    except RPCError:
        if not call.key:
            # Without a key a retry makes a new delivery: remove the row that has no workflow.
            await creates.delete_row(call.session, uuid.UUID(initial.delivery_id))
            await call.session.commit()
        raise temporal_unavailable() from None


async def load_row(session: AsyncSession, org: uuid.UUID, delivery_id: uuid.UUID) -> DeliveryRow:
    row = await DeliveryRepository(session, org).owned(delivery_id)
    if row is None:
        raise not_found("delivery", delivery_id)
    return row


def row_state(row: DeliveryRow) -> DeliveryState:
    return from_jsonable(DeliveryState, row.state)


async def query_state(client: Client, delivery_id: uuid.UUID) -> DeliveryState:
    handle = client.get_workflow_handle_for(DeliveryWorkflow.run, delivery_workflow_id(str(delivery_id)))
    try:
        return await handle.query(DeliveryWorkflow.state)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise not_found("delivery", delivery_id) from None
        raise


async def actor_for(session: AsyncSession, user: CurrentUser) -> Actor:
    """Who acts; drivers also carry their driver record (only users with role driver have one)."""
    driver = None
    if user.role is Role.DRIVER:
        driver = await DriverRepository(session, user.organization_id).by_user(user.id)
    return Actor(user_id=str(user.id), role=user.role.value, driver_id=str(driver.id) if driver else None)


async def own_row(
    session: AsyncSession, user: CurrentUser, delivery_id: uuid.UUID
) -> tuple[DeliveryRow, Actor]:
    """The delivery as the caller may see it, and the caller as an actor (one driver lookup serves both)."""
    row = await load_row(session, user.organization_id, delivery_id)
    actor = await actor_for(session, user)
    if user.role is Role.DRIVER and (actor.driver_id is None or str(row.driver_id) != actor.driver_id):
        # Drivers see only the deliveries assigned to them; others do not exist for them.
        raise not_found("delivery", delivery_id)
    return row, actor


def _utc_bound(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ProblemError(400, "naive_datetime", "give date-times with a UTC offset")
    return value


async def list_deliveries(
    session: AsyncSession,
    user: CurrentUser,
    page: PageParams,
    statuses: list[DeliveryStatus] | None,
    vehicle_id: uuid.UUID | None,
    driver_id: uuid.UUID | None,
    created: tuple[datetime | None, datetime | None],
    due: tuple[datetime | None, datetime | None],
    text: str | None,
) -> Page[DeliveryOut]:
    """A page of the organization's deliveries (a driver's own only), by creation or due time ranges
    (from inclusive, to exclusive) and text in external_ref or address."""
    drivers: list[uuid.UUID | None] = []
    if user.role is Role.DRIVER:
        me = await DriverRepository(session, user.organization_id).by_user(user.id)
        drivers.append(me.id if me else None)
    if driver_id:
        drivers.append(driver_id)
    search = DeliverySearch(
        statuses=[s.value for s in statuses or []],
        vehicle_id=vehicle_id,
        driver_ids=drivers,
        created_from=_utc_bound(created[0]),
        created_before=_utc_bound(created[1]),
        due_from=_utc_bound(due[0]),
        due_before=_utc_bound(due[1]),
        text=text,
    )
    repo = DeliveryRepository(session, user.organization_id)
    rows = await repo.search(search, after=page.after, limit=page.limit + 1)
    return make_page(rows, page, lambda r: delivery_out(row_state(r)))


async def timeline(resources: Resources, row: DeliveryRow) -> list[EventOut]:
    """The delivery's events from the history store, oldest first."""
    events = await resources.history.events(row.organization_id, row.id)
    return [
        EventOut(
            sequence=e.sequence,
            type=e.type,
            occurred_at=e.occurred_at,
            actor=e.actor,
            from_status=e.data.get("from"),
            to_status=e.data.get("to"),
            data={k: v for k, v in e.data.items() if k not in ("from", "to")},
        )
        for e in events
    ]
