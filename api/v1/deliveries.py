"""Deliveries: create (idempotent, single and batch), list and read the projection, timeline, actions."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, UploadFile
from pydantic import ValidationError
from sqlalchemy import or_, select

from api.deps import CurrentUser, ResourcesDep, SessionDep, TemporalDep, require_roles, temporal_client
from api.errors import ProblemError
from api.http.pagination import Page, PageDep, make_page
from api.resources import Resources
from api.schemas.deliveries import (
    AssignIn,
    BatchCreate,
    BatchItemResult,
    BatchResult,
    DeliverIn,
    DeliveryCreate,
    DeliveryOut,
    EventOut,
    FailIn,
    PositionIn,
    ProofFileOut,
    ReasonIn,
    RescheduleIn,
    UnassignIn,
    delivery_out,
)
from api.services.audit import AuditAction, audit_by
from api.services.deliveries import (
    action_outcome,
    actor_for,
    create_delivery,
    load_row,
    query_state,
    row_state,
    run_update,
)
from api.v1 import PREFIX
from api.v1.crud import require_reference
from db.models import DeliveryRow, Driver, ProofFile
from db.repositories.fleet import DriverRepository, VehicleRepository
from domain.delivery import (
    Actor,
    AssignRequest,
    CancelRequest,
    DeliverRequest,
    DeliveryState,
    DeliveryStatus,
    DriverRequest,
    FailRequest,
    Position,
    RescheduleRequest,
    TimeWindow,
)
from domain.roles import ALL_ROLES, FLEET_WRITERS, Role
from workflows.delivery import DeliveryWorkflow

router = APIRouter(prefix=f"{PREFIX}/deliveries", tags=["deliveries"])
Reader = Annotated[CurrentUser, Depends(require_roles(*ALL_ROLES))]
Writer = Annotated[CurrentUser, Depends(require_roles(*FLEET_WRITERS))]
DriverOrStaff = Annotated[CurrentUser, Depends(require_roles(Role.DRIVER, *FLEET_WRITERS))]
DriverOnly = Annotated[CurrentUser, Depends(require_roles(Role.DRIVER))]
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]

PROOF_TYPES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff", "image/webp": b"RIFF"}


def _location(loc: Any) -> Position | None:
    return Position(loc.lat, loc.lon) if loc is not None else None


async def _own_row(
    user: CurrentUser, session: SessionDep, delivery_id: uuid.UUID
) -> tuple[DeliveryRow, Actor]:
    """The delivery and the caller as an actor (one driver lookup serves both)."""
    row = await load_row(session, user.organization_id, delivery_id)
    actor = await actor_for(session, user)
    if user.role is Role.DRIVER and (actor.driver_id is None or str(row.driver_id) != actor.driver_id):
        # Drivers see only the deliveries assigned to them; others do not exist for them.
        raise ProblemError(404, "delivery_not_found", f"delivery {delivery_id} was not found")
    return row, actor


async def _let_go(session: SessionDep, row: DeliveryRow) -> DeliveryState:
    """The row's state, and the session's connection back to the pool: what follows may wait on
    Temporal for seconds (a dead worker), and waiting callers must not drain the pool."""
    state = row_state(row)
    await session.close()
    return state


async def _act(
    session: SessionDep,
    client: TemporalDep,
    resources: Resources,
    row: DeliveryRow,
    update: Any,
    req: Any,
    key: str | None,
) -> DeliveryState:
    """Run an action on the delivery `row`."""
    state = await _let_go(session, row)
    action = update.__name__  # the Update's method name: part of the Update id (action_id)
    return await run_update(client, state, update, req, action=action, key=key, settings=resources.settings)


# Create --------------------------------------------------------------------------------------


@router.post("", status_code=201, response_model=DeliveryOut)
async def create(
    body: DeliveryCreate,
    user: Writer,
    request: Request,
    response: Response,
    idempotency_key: IdemKey = None,
) -> DeliveryOut:
    # The busiest endpoint takes its resources, client and session without dependencies, each of
    # which FastAPI resolves anew per request; on PostgreSQL its common path never uses the session.
    resources: Resources = request.app.state.resources
    client = await temporal_client(resources)
    async with resources.sessionmaker() as session:
        result = await create_delivery(body, user, session, client, resources.settings, idempotency_key)
    response.headers["Location"] = f"/api/v1/deliveries/{result.state.delivery_id}"
    if not result.created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return delivery_out(result.state)


@router.post(
    ":batch", response_model=BatchResult, summary="Create up to WAYBILL_DELIVERY_BATCH_MAX deliveries"
)
async def create_batch(
    body: BatchCreate, user: Writer, client: TemporalDep, resources: ResourcesDep
) -> BatchResult:
    limit = resources.settings.delivery_batch_max
    if len(body.items) > limit:
        raise ProblemError(413, "batch_too_large", f"a batch holds at most {limit} deliveries")
    gate = asyncio.Semaphore(16)

    async def one(index: int, raw: dict[str, Any]) -> BatchItemResult:
        try:
            item = DeliveryCreate.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            return BatchItemResult(
                index=index,
                outcome="rejected",
                error={"code": "validation_error", "detail": f"{where}: {first['msg']}"},
            )
        async with gate, resources.sessionmaker() as session:
            try:
                made = await create_delivery(item, user, session, client, resources.settings, None)
            except ProblemError as exc:
                return BatchItemResult(
                    index=index, outcome="rejected", error={"code": exc.code, "detail": exc.detail}
                )
        return BatchItemResult(
            index=index, outcome="created" if made.created else "existing", delivery=delivery_out(made.state)
        )

    items = await asyncio.gather(*(one(i, raw) for i, raw in enumerate(body.items)))
    counts = {k: sum(1 for r in items if r.outcome == k) for k in ("created", "existing", "rejected")}
    return BatchResult(**counts, items=list(items))


# Read ----------------------------------------------------------------------------------------


@router.get("", response_model=Page[DeliveryOut])
async def list_deliveries(
    user: Reader,
    session: SessionDep,
    page: PageDep,
    status: Annotated[list[DeliveryStatus] | None, Query()] = None,
    vehicle_id: uuid.UUID | None = None,
    driver_id: uuid.UUID | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    due_from: Annotated[datetime | None, Query(description="drop-off window ends at or after")] = None,
    due_to: Annotated[datetime | None, Query(description="drop-off window ends before")] = None,
    q: Annotated[str | None, Query(max_length=100, description="text in external_ref or address")] = None,
) -> Page[DeliveryOut]:
    stmt = select(DeliveryRow).where(DeliveryRow.organization_id == user.organization_id)
    if user.role is Role.DRIVER:
        me = await DriverRepository(session, user.organization_id).by_user(user.id)
        stmt = stmt.where(DeliveryRow.driver_id == (me.id if me else None))
    if status:
        stmt = stmt.where(DeliveryRow.status.in_([s.value for s in status]))
    if vehicle_id:
        stmt = stmt.where(DeliveryRow.vehicle_id == vehicle_id)
    if driver_id:
        stmt = stmt.where(DeliveryRow.driver_id == driver_id)
    for column, bound, op in (
        (DeliveryRow.created_at, created_from, "ge"),
        (DeliveryRow.created_at, created_to, "lt"),
        (DeliveryRow.window_end, due_from, "ge"),
        (DeliveryRow.window_end, due_to, "lt"),
    ):
        if bound is not None:
            if bound.tzinfo is None:
                raise ProblemError(400, "naive_datetime", "give date-times with a UTC offset")
            stmt = stmt.where(column >= bound if op == "ge" else column < bound)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(
            or_(
                DeliveryRow.external_ref.ilike(pattern, escape="\\"),
                DeliveryRow.dropoff_address.ilike(pattern, escape="\\"),
            )
        )
    if page.after is not None:
        stmt = stmt.where(DeliveryRow.id > page.after)
    rows = list(await session.scalars(stmt.order_by(DeliveryRow.id).limit(page.limit + 1)))
    return make_page(rows, page, lambda r: delivery_out(row_state(r)))


@router.get("/{delivery_id}", response_model=DeliveryOut)
async def get_delivery(
    delivery_id: uuid.UUID,
    user: Reader,
    session: SessionDep,
    client: TemporalDep,
    consistent: Annotated[bool, Query(description="ask the workflow instead of the projection")] = False,
) -> DeliveryOut:
    row, _ = await _own_row(user, session, delivery_id)
    return delivery_out(await query_state(client, row.id) if consistent else row_state(row))


@router.get("/{delivery_id}/events", response_model=list[EventOut])
async def timeline(
    delivery_id: uuid.UUID, user: Reader, session: SessionDep, resources: ResourcesDep
) -> list[EventOut]:
    row, _ = await _own_row(user, session, delivery_id)
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


@router.get(
    "/{delivery_id}/actions/{action_id}",
    response_model=DeliveryOut,
    summary="The outcome of an action that answered 202 action_pending",
    responses={202: {"description": "still pending: try again after Retry-After"}},
)
async def action_result(
    delivery_id: uuid.UUID,
    action_id: Annotated[str, Path(max_length=100, pattern=r"^[a-z_]+-[0-9a-f]{32}$")],
    user: Reader,
    session: SessionDep,
    client: TemporalDep,
    resources: ResourcesDep,
) -> DeliveryOut:
    row, _ = await _own_row(user, session, delivery_id)
    state = await _let_go(session, row)
    return delivery_out(await action_outcome(client, state, action_id, resources.settings))


# Dispatcher actions --------------------------------------------------------------------------


@router.post("/{delivery_id}/assign", response_model=DeliveryOut)
async def assign(
    delivery_id: uuid.UUID,
    body: AssignIn,
    user: Writer,
    session: SessionDep,
    client: TemporalDep,
    resources: ResourcesDep,
    idempotency_key: IdemKey = None,
) -> DeliveryOut:
    row = await load_row(session, user.organization_id, delivery_id)
    await require_reference(VehicleRepository(session, user.organization_id), body.vehicle_id, "vehicle_id")
    driver_id = body.driver_id
    if driver_id is None:
        usual = await session.scalars(
            select(Driver)
            .where(
                Driver.organization_id == user.organization_id,
                Driver.vehicle_id == body.vehicle_id,
                Driver.active.is_(True),
            )
            .order_by(Driver.id)
            .limit(1)
        )
        found = usual.first()
        driver_id = found.id if found else None
    else:
        await require_reference(DriverRepository(session, user.organization_id), driver_id, "driver_id")
    req = AssignRequest(
        await actor_for(session, user), str(body.vehicle_id), str(driver_id) if driver_id else None
    )
    return delivery_out(
        await _act(session, client, resources, row, DeliveryWorkflow.assign, req, idempotency_key)
    )


@router.post("/{delivery_id}/unassign", response_model=DeliveryOut)
async def unassign(
    delivery_id: uuid.UUID,
    body: UnassignIn,
    user: Writer,
    session: SessionDep,
    client: TemporalDep,
    resources: ResourcesDep,
    idempotency_key: IdemKey = None,
) -> DeliveryOut:
    row = await load_row(session, user.organization_id, delivery_id)
    req = CancelRequest(await actor_for(session, user), body.reason)
    return delivery_out(
        await _act(session, client, resources, row, DeliveryWorkflow.unassign, req, idempotency_key)
    )


@router.post("/{delivery_id}/reschedule", response_model=DeliveryOut)
async def reschedule(
    delivery_id: uuid.UUID,
    body: RescheduleIn,
    user: Writer,
    session: SessionDep,
    client: TemporalDep,
    resources: ResourcesDep,
    idempotency_key: IdemKey = None,
) -> DeliveryOut:
    row = await load_row(session, user.organization_id, delivery_id)
    req = RescheduleRequest(
        await actor_for(session, user), [TimeWindow(w.start, w.end) for w in body.windows]
    )
    return delivery_out(
        await _act(session, client, resources, row, DeliveryWorkflow.reschedule, req, idempotency_key)
    )


@router.post("/{delivery_id}/cancel", response_model=DeliveryOut)
async def cancel(
    delivery_id: uuid.UUID,
    body: ReasonIn,
    user: Writer,
    session: SessionDep,
    client: TemporalDep,
    resources: ResourcesDep,
    idempotency_key: IdemKey = None,
) -> DeliveryOut:
    row = await load_row(session, user.organization_id, delivery_id)
    req = CancelRequest(await actor_for(session, user), body.reason)
    return delivery_out(
        await _act(session, client, resources, row, DeliveryWorkflow.cancel, req, idempotency_key)
    )


# Driver actions ------------------------------------------------------------------------------


def _driver_action(name: str, update: Any, summary: str) -> None:
    async def endpoint(
        delivery_id: uuid.UUID,
        user: DriverOnly,
        session: SessionDep,
        client: TemporalDep,
        resources: ResourcesDep,
        body: PositionIn | None = None,
        idempotency_key: IdemKey = None,
    ) -> DeliveryOut:
        row, actor = await _own_row(user, session, delivery_id)
        req = DriverRequest(actor, _location(body.location) if body else None)
        return delivery_out(await _act(session, client, resources, row, update, req, idempotency_key))

    router.add_api_route(
        f"/{{delivery_id}}/{name}",
        endpoint,
        methods=["POST"],
        response_model=DeliveryOut,
        summary=summary,
        name=name.replace("-", "_"),
    )


_driver_action("accept", DeliveryWorkflow.accept, "Driver accepts the assignment")
_driver_action("pick-up", DeliveryWorkflow.pick_up, "Driver has picked up the goods")
_driver_action("depart", DeliveryWorkflow.depart, "Driver is on the way to the drop-off")
_driver_action("arrive", DeliveryWorkflow.arrive, "Driver has arrived at the drop-off")


@router.post("/{delivery_id}/deliver", response_model=DeliveryOut)
async def deliver(
    delivery_id: uuid.UUID,
    body: DeliverIn,
    request: Request,
    user: DriverOrStaff,
    session: SessionDep,
    client: TemporalDep,
    resources: ResourcesDep,
    idempotency_key: IdemKey = None,
) -> DeliveryOut:
    row, actor = await _own_row(user, session, delivery_id)
    if body.override_distance and user.role is Role.DRIVER:
        raise ProblemError(403, "forbidden", "only a dispatcher can override the proof-of-delivery distance")
    for digest in filter(None, (body.signature_sha256, body.photo_sha256)):
        found = await session.scalars(
            select(ProofFile).where(
                ProofFile.organization_id == user.organization_id,
                ProofFile.delivery_id == row.id,
                ProofFile.sha256 == digest,
            )
        )
        if found.first() is None:
            raise ProblemError(
                422, "unknown_proof_file", f"no proof file {digest} was uploaded for this delivery"
            )
    req = DeliverRequest(
        actor,
        body.recipient_name,
        _location(body.location),
        body.signature_sha256,
        body.photo_sha256,
        body.override_distance,
    )
    state = await _act(session, client, resources, row, DeliveryWorkflow.deliver, req, idempotency_key)
    if state.proof is not None and state.proof.overridden_by:
        # Completed on the driver's behalf, or with proof taken too far away: an override to account for.
        audit_by(
            session,
            request,
            user,
            AuditAction.DELIVERY_OVERRIDE,
            target_type="delivery",
            target_id=row.id,
            distance_m=state.proof.distance_m,
            recipient_name=body.recipient_name,
        )
        await session.commit()
    return delivery_out(state)


@router.post("/{delivery_id}/fail", response_model=DeliveryOut)
async def fail(
    delivery_id: uuid.UUID,
    body: FailIn,
    user: DriverOnly,
    session: SessionDep,
    client: TemporalDep,
    resources: ResourcesDep,
    idempotency_key: IdemKey = None,
) -> DeliveryOut:
    row, actor = await _own_row(user, session, delivery_id)
    req = FailRequest(actor, body.reason, body.notes, _location(body.location))
    return delivery_out(
        await _act(session, client, resources, row, DeliveryWorkflow.fail, req, idempotency_key)
    )


@router.post(
    "/{delivery_id}/proof",
    status_code=201,
    response_model=ProofFileOut,
    summary="Upload a proof-of-delivery photo or signature (PNG, JPEG or WebP)",
)
async def upload_proof(
    delivery_id: uuid.UUID,
    file: UploadFile,
    user: DriverOrStaff,
    session: SessionDep,
    resources: ResourcesDep,
) -> ProofFileOut:
    row, _ = await _own_row(user, session, delivery_id)
    limit = resources.settings.proof_max_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ProblemError(413, "file_too_large", f"proof files may be at most {limit} bytes")
    kind = next((t for t, magic in PROOF_TYPES.items() if data.startswith(magic)), None)
    if kind is None:
        raise ProblemError(415, "unsupported_media_type", "upload a PNG, JPEG or WebP image")
    digest = await resources.blobs.put(data)
    exists = await session.scalars(
        select(ProofFile).where(ProofFile.organization_id == user.organization_id, ProofFile.sha256 == digest)
    )
    if exists.first() is None:
        session.add(
            ProofFile(
                organization_id=user.organization_id,
                delivery_id=row.id,
                sha256=digest,
                content_type=kind,
                size_bytes=len(data),
                uploaded_by=user.id,
            )
        )
        await session.commit()
    return ProofFileOut(sha256=digest, content_type=kind, size_bytes=len(data))
