"""Delivery operations behind the router: idempotent creation, reads, and workflow Updates."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import JSON, ColumnElement, String, Table, bindparam, delete, insert, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from activities.deliveries import projection_values
from activities.reconcile import delivery_options
from api.deps import CurrentUser
from api.errors import ProblemError, not_found, temporal_unavailable
from api.schemas.deliveries import DeliveryCreate, to_spec
from api.v1.crud import require_reference
from db.models import DeliveryRow, IdempotencyKey
from db.repositories.delivery_writes import Statement, writes_for
from db.repositories.fleet import DepotRepository, DriverRepository
from db.upsert import insert_ignoring
from domain.delivery import (
    Actor,
    DeliveryInput,
    DeliverySpec,
    DeliveryState,
    DeliveryStatus,
    SpecError,
    allowed_actions,
    never_started,
    start_input,
    validate_spec,
)
from domain.ids import uuid7
from domain.roles import Role
from plumbing.codec import from_jsonable
from plumbing.settings import Settings
from workflows.delivery import DeliveryWorkflow

A = TypeVar("A")


def workflow_id(delivery_id: uuid.UUID | str) -> str:
    return f"delivery-{delivery_id}"


def request_hash(body: DeliveryCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Created:
    state: DeliveryState
    created: bool  # False: an earlier request (same Idempotency-Key or external_ref) made it


async def _claim_key(
    session: AsyncSession, org: uuid.UUID, key: str, digest: str, new_id: uuid.UUID
) -> uuid.UUID:
    """The delivery id this Idempotency-Key stands for; the first request to claim it wins."""
    table = IdempotencyKey.__table__
    assert isinstance(table, Table)
    dialect = session.get_bind().dialect.name
    # One statement in the common case: RETURNING yields a row only when this request made the claim.
    claimed = await session.execute(
        insert_ignoring(dialect, table, ["organization_id", "key"])
        .values(organization_id=org, key=key, request_hash=digest, delivery_id=new_id)
        .returning(table.c.delivery_id)
    )
    if claimed.first() is not None:
        return new_id
    earlier = (
        await session.execute(
            select(table.c.request_hash, table.c.delivery_id).where(
                table.c.organization_id == org, table.c.key == key
            )
        )
    ).one()
    if earlier.request_hash != digest:
        raise ProblemError(
            422, "idempotency_key_reused", "this Idempotency-Key was used for a different request body"
        )
    delivery_id: uuid.UUID = earlier.delivery_id
    return delivery_id


async def _by_ref(session: AsyncSession, org: uuid.UUID, ref: str) -> DeliveryRow | None:
    stmt = select(DeliveryRow).where(DeliveryRow.organization_id == org, DeliveryRow.external_ref == ref)
    return (await session.scalars(stmt)).one_or_none()


# The insert statements of the common create (no external_ref), built once: SQLAlchemy then only
# binds parameters to a cached compiled form instead of building and hashing a new statement.
_DELIVERIES = cast(Table, DeliveryRow.__table__)
_KEYS = cast(Table, IdempotencyKey.__table__)
_ROW_COLUMNS = [c.name for c in _DELIVERIES.c if c.name != "id"]


def _row_param(name: str, dialect: str) -> ColumnElement[Any]:
    """The bind parameter of one column of a new row. `state` arrives as JSON text (encoded once,
    see `_row_values`): PostgreSQL casts it to json, SQLite stores the text as it is."""
    if name != "state":
        return bindparam(name, type_=_DELIVERIES.c[name].type)
    text = bindparam(name, type_=String())
    return sql_cast(text, JSON) if dialect == "postgresql" else text


_INSERT_ROW = {
    dialect: insert(_DELIVERIES).values({name: _row_param(name, dialect) for name in ["id", *_ROW_COLUMNS]})
    for dialect in ("postgresql", "sqlite")
}
_KEY_VALUES = {
    "organization_id": bindparam("organization_id", type_=_KEYS.c.organization_id.type),
    "key": bindparam("key", type_=_KEYS.c.key.type),
    "request_hash": bindparam("request_hash", type_=_KEYS.c.request_hash.type),
    "delivery_id": bindparam("delivery_id", type_=_KEYS.c.delivery_id.type),
    "created_at": bindparam("created_at", type_=_KEYS.c.created_at.type),
}
_CLAIM = {
    dialect: insert_ignoring(dialect, _KEYS, ["organization_id", "key"])
    .values(_KEY_VALUES)
    .returning(_KEYS.c.delivery_id)
    for dialect in ("postgresql", "sqlite")
}
# PostgreSQL: claim and projection row in one statement (a data-modifying CTE). The row is
# inserted only if the claim was, so both happen or neither does, in one round trip.
_claim_cte = _CLAIM["postgresql"].cte("claim")
_CLAIM_AND_ROW_PG = Statement.compile(
    insert(_DELIVERIES)
    .from_select(
        ["id", *_ROW_COLUMNS],
        select(_claim_cte.c.delivery_id, *(_row_param(name, "postgresql") for name in _ROW_COLUMNS)),
    )
    .returning(_DELIVERIES.c.id)
)
# PostgreSQL without an Idempotency-Key: the row alone, RETURNING so that a batch reports each one.
_ROW_PG = Statement.compile(
    _INSERT_ROW["postgresql"].returning(_DELIVERIES.c.id), duplicate_means_written=True
)


async def _insert_new(session: AsyncSession, row: dict[str, Any], key: str | None, digest: str) -> bool:
    """Write the idempotency claim (with a key) and the projection row of a delivery without an
    external_ref; False if the key was claimed before (nothing written then).

    Without an external_ref the row cannot conflict with another delivery, so no lookup is needed.
    On PostgreSQL claim and row are one statement, sent with those of concurrent creates
    (db/repositories/delivery_writes.py). On SQLite they are two autocommit statements: no BEGIN/COMMIT round
    trips, and the write lock is held for one statement, not across event loop turns. `session` is
    a fresh one (every caller opens one per create): no transaction is open on it.
    """
    engine = session.bind
    if isinstance(engine, AsyncEngine) and engine.dialect.name == "postgresql":
        if key is None:
            return await writes_for(engine).write(_ROW_PG, row)
        return await writes_for(engine).write(_CLAIM_AND_ROW_PG, _claim_and_row_params(row, key, digest))
    conn = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    dialect = conn.dialect.name
    try:
        if key is None:
            await conn.execute(_INSERT_ROW[dialect], row)
            return True
        # A crash between the two statements leaves a claim without a row: a retry with the key finds
        # the claim and writes the row (the replay path).
        if (await conn.execute(_CLAIM[dialect], _claim_params(row, key, digest))).first() is None:
            return False
        await conn.execute(_INSERT_ROW[dialect], row)
        return True
    finally:
        await session.commit()  # hands the connection back before the Temporal call


def _claim_and_row_params(row: dict[str, Any], key: str, digest: str) -> dict[str, Any]:
    """The parameters of `_CLAIM_AND_ROW_PG`: the row's without "id" (an INSERT takes a parameter named
    like a column as that column's value; the row's id is the claim's delivery_id) and the claim's."""
    return {**{name: value for name, value in row.items() if name != "id"}, **_claim_params(row, key, digest)}


def _claim_params(row: dict[str, Any], key: str, digest: str) -> dict[str, Any]:
    return {
        "organization_id": row["organization_id"],
        "key": key,
        "request_hash": digest,
        "delivery_id": row["id"],
        "created_at": row["created_at"],
    }


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
    digest = request_hash(body) if idempotency_key else ""
    if not spec.external_ref:
        # The common case, in one round trip on PostgreSQL (two statements on SQLite).
        initial = _initial_state(uuid7(), org, spec, now)
        new_row = _row_values(initial, org, now, state_as_text=True)
        if await _insert_new(session, new_row, idempotency_key, digest):
            await _start_new(
                session, client, _workflow_input(initial, user, settings), settings, idempotency_key
            )
            return Created(initial, created=True)
    delivery_id = uuid7()
    if idempotency_key:
        delivery_id = await _claim_key(session, org, idempotency_key, digest, delivery_id)
    if spec.external_ref and (existing := await _by_ref(session, org, spec.external_ref)) is not None:
        if existing.id != delivery_id and idempotency_key:
            await session.rollback()
            raise ProblemError(409, "external_ref_taken", "another delivery already has this external_ref")
        await session.commit()
        return await _existing(client, row_state(existing), user, settings)
    initial = _initial_state(delivery_id, org, spec, now)
    values = _row_values(initial, org, now)
    try:
        result = await session.execute(
            insert_ignoring(session.get_bind().dialect.name, _DELIVERIES, ["id"])
            .values(values)
            .returning(_DELIVERIES.c.id)
        )
        inserted = result.first() is not None
        await session.commit()
    except IntegrityError:
        await session.rollback()
        if spec.external_ref and (existing := await _by_ref(session, org, spec.external_ref)) is not None:
            # The row is there from the first request's commit even if its workflow is still starting.
            await session.commit()
            return await _existing(client, row_state(existing), user, settings)
        raise
    if inserted:
        await _start_new(session, client, _workflow_input(initial, user, settings), settings, idempotency_key)
        return Created(initial, created=True)
    # A repeat of an earlier request (same Idempotency-Key) whose row is written.
    row = await session.get(DeliveryRow, delivery_id)
    await session.commit()  # hands the connection back before the Temporal call
    return await _existing(client, row_state(row) if row is not None else initial, user, settings)


async def _existing(client: Client, state: DeliveryState, user: CurrentUser, settings: Settings) -> Created:
    """The answer to a create that an earlier request made. That request may have stopped between
    its row and its workflow start (killed, or Temporal unavailable): a row its workflow never wrote
    is started here, so a replayed create never answers with a delivery that cannot move."""
    if never_started(state):
        options = delivery_options(settings)
        await ensure_started(client, start_input(state, f"{user.role.value}:{user.id}", options), settings)
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

    `state_as_text`: the state as JSON text, for the prepared statements (`_INSERT_ROW`,
    `_CLAIM_AND_ROW_PG`); otherwise as a JSON value for the JSON column."""
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


async def _start_new(
    session: AsyncSession,
    client: Client,
    params: DeliveryInput,
    settings: Settings,
    idempotency_key: str | None,
) -> None:
    """Start the workflow of a row this request inserted; without Temporal, undo what a retry cannot find."""
    try:
        await start_delivery_workflow(client, params, settings.temporal_task_queue)
    except WorkflowAlreadyStartedError:
        pass  # cannot happen for a fresh id; kept for symmetry with the replay path
    except RPCError:
        if not idempotency_key:
            # Without a key a retry makes a new delivery: remove the row that has no workflow.
            await session.execute(delete(DeliveryRow).where(DeliveryRow.id == uuid.UUID(params.delivery_id)))
            await session.commit()
        raise temporal_unavailable() from None


async def start_delivery_workflow(
    client: Client, params: DeliveryInput, task_queue: str, rpc_timeout: timedelta | None = None
) -> None:
    """Start `delivery-{id}`; a running one is reused, a finished one is never started again."""
    await client.start_workflow(
        DeliveryWorkflow.run,
        params,
        id=workflow_id(params.delivery_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        rpc_timeout=rpc_timeout,
    )


async def load_row(session: AsyncSession, org: uuid.UUID, delivery_id: uuid.UUID) -> DeliveryRow:
    row = await session.get(DeliveryRow, delivery_id)
    if row is None or row.organization_id != org:
        raise not_found("delivery", delivery_id)
    return row


def row_state(row: DeliveryRow) -> DeliveryState:
    return from_jsonable(DeliveryState, row.state)


async def query_state(client: Client, delivery_id: uuid.UUID) -> DeliveryState:
    handle = client.get_workflow_handle_for(DeliveryWorkflow.run, workflow_id(delivery_id))
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


_REJECTIONS = {
    "InvalidTransition": (409, "invalid_transition"),
    "NotAssignedDriver": (403, "not_assigned_driver"),
    "Forbidden": (403, "forbidden"),
    "InvalidWindows": (422, "invalid_windows"),
    "ProofTooFar": (422, "proof_too_far"),
    "ProofRequired": (422, "proof_required"),
    "OverrideRequired": (422, "override_required"),
    "ReasonRequired": (422, "reason_required"),
    "InvalidId": (422, "invalid_reference"),
}


# Temporal answers that say "not reachable now": the action was most likely not delivered.
_UNREACHABLE = frozenset(
    {RPCStatusCode.UNAVAILABLE, RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.DEADLINE_EXCEEDED}
)


def action_id(action: str, key: str | None) -> str:
    """The Update id of an action: derived from the caller's Idempotency-Key, so that a retry is
    the same Update (Temporal de-duplicates by id and answers with the first outcome); random
    without one. Hashed: any key fits, and ids stay short and URL-safe."""
    if key is None:
        return f"{action}-{uuid.uuid4().hex}"
    return f"{action}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def action_location(delivery_id: uuid.UUID | str, update_id: str) -> str:
    return f"/api/v1/deliveries/{delivery_id}/actions/{update_id}"


async def run_update(
    client: Client,
    state: DeliveryState,
    update: UpdateMethodMultiParam[[DeliveryWorkflow, A], DeliveryState],
    arg: A,
    *,
    action: str,
    key: str | None,
    settings: Settings,
) -> DeliveryState:
    """Run an action's Update and answer with its outcome within `action_wait_seconds`.

    A rejection becomes a problem with the current status and the allowed actions; an outcome not
    known in time is 202 `action_pending` with where to learn it; Temporal out of reach is 503.
    Callers hold no database connection meanwhile (a dead worker must not drain the pool)."""
    handle = client.get_workflow_handle_for(DeliveryWorkflow.run, workflow_id(state.delivery_id))
    update_id = action_id(action, key)

    async def send() -> DeliveryState:
        try:
            return await handle.execute_update(update, arg, id=update_id)
        except RPCError as exc:
            if exc.status is not RPCStatusCode.NOT_FOUND or not never_started(state):
                raise
        # The create stopped between its row and its workflow start: start it, then act on it.
        params = start_input(state, "system:recovered", delivery_options(settings))
        await ensure_started(client, params, settings)
        return await handle.execute_update(update, arg, id=update_id)

    return await _outcome(client, state, update_id, send, settings)


async def action_outcome(
    client: Client, state: DeliveryState, update_id: str, settings: Settings
) -> DeliveryState:
    """The outcome of an earlier action (GET .../actions/{id}): 200 once known, 202 while pending,
    404 action_not_found if Temporal has no record of it (it was not applied: safe to send again)."""
    handle = client.get_workflow_handle_for(DeliveryWorkflow.run, workflow_id(state.delivery_id))
    update = handle.get_update_handle(update_id, result_type=DeliveryState)

    async def poll() -> DeliveryState:
        try:
            result: DeliveryState = await update.result()
            return result
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                raise ProblemError(
                    404,
                    "action_not_found",
                    f"no action {update_id} is known for this delivery: it was not applied",
                ) from None
            raise

    return await _outcome(client, state, update_id, poll, settings)


async def _outcome(
    client: Client,
    state: DeliveryState,
    update_id: str,
    wait: Callable[[], Awaitable[DeliveryState]],
    settings: Settings,
) -> DeliveryState:
    try:
        async with asyncio.timeout(settings.action_wait_seconds):
            return await wait()
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise await _not_known_yet(client, state, update_id) from None
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type in _REJECTIONS:
            status, code = _REJECTIONS[cause.type]
            details: dict[str, Any] = dict(cause.details[0]) if cause.details else {}
            # `status` is the HTTP status in a problem document: the delivery's goes in current_status.
            details["current_status"] = details.pop("status", None)
            raise ProblemError(status, code, cause.message, **details) from None
        raise
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:  # the workflow has finished: nothing is allowed any more
            raise ProblemError(
                409,
                "invalid_transition",
                f"the delivery is {state.status.value}",
                current_status=state.status.value,
                allowed_actions=allowed_actions(state.status),
            ) from None
        if exc.status in _UNREACHABLE:
            raise temporal_unavailable(action_id=update_id) from None
        raise


async def _not_known_yet(client: Client, state: DeliveryState, update_id: str) -> ProblemError:
    """202 if Temporal answers (the action waits for a worker and applies when one polls), 503 if
    it does not (the action most likely never arrived). Either way the Location tells the outcome,
    and a retry under the same Idempotency-Key can never apply the action twice."""
    location = action_location(state.delivery_id, update_id)
    try:
        await client.workflow_service.get_system_info(
            GetSystemInfoRequest(), retry=False, timeout=timedelta(seconds=1)
        )
    except RPCError:
        return temporal_unavailable(action_id=update_id, location=location)
    return ProblemError(
        202,
        "action_pending",
        "the action is accepted for processing but its outcome is not known yet; "
        "GET the Location for it, or retry with the same Idempotency-Key",
        headers={"Location": location, "Retry-After": "1"},
        action_id=update_id,
        location=location,
    )
