"""Deliveries: create (idempotent, single and batch), list and read the projection, timeline, actions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response, UploadFile
from pydantic import ValidationError

from api.deps import (
    Backends,
    BackendsDep,
    CurrentUser,
    DriverOnly,
    DriverOrStaff,
    Reader,
    ResourcesDep,
    SessionDep,
    TemporalDep,
    Writer,
    temporal_client,
)
from api.errors import ProblemError
from api.http.pagination import Page, PageDep
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
from api.services import deliveries as service
from api.services.audit import AuditAction, audit_by
from api.services.delivery_actions import act, action_outcome, assignment, let_go
from api.services.delivery_proofs import require_uploaded, store_proof
from api.v1 import PREFIX
from domain.delivery import (
    Actor,
    CancelRequest,
    DeliverRequest,
    DeliveryStatus,
    DriverRequest,
    FailRequest,
    Position,
    RescheduleRequest,
    TimeWindow,
)
from domain.roles import Role
from workflows.delivery import DeliveryWorkflow

router = APIRouter(prefix=f"{PREFIX}/deliveries", tags=["deliveries"])
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]


def _location(loc: Any) -> Position | None:
    return Position(loc.lat, loc.lon) if loc is not None else None


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
        result = await service.create_delivery(
            body, user, session, client, resources.settings, idempotency_key
        )
    service.answer_created(response, result)
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
                made = await service.create_delivery(item, user, session, client, resources.settings, None)
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
    return await service.list_deliveries(
        session, user, page, status, vehicle_id, driver_id, (created_from, created_to), (due_from, due_to), q
    )


@router.get("/{delivery_id}", response_model=DeliveryOut)
async def get_delivery(
    delivery_id: uuid.UUID,
    user: Reader,
    session: SessionDep,
    client: TemporalDep,
    consistent: Annotated[bool, Query(description="ask the workflow instead of the projection")] = False,
) -> DeliveryOut:
    row, _ = await service.own_row(session, user, delivery_id)
    return delivery_out(await service.query_state(client, row.id) if consistent else service.row_state(row))


@router.get("/{delivery_id}/events", response_model=list[EventOut])
async def timeline(
    delivery_id: uuid.UUID, user: Reader, session: SessionDep, resources: ResourcesDep
) -> list[EventOut]:
    row, _ = await service.own_row(session, user, delivery_id)
    return await service.timeline(resources, row)


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
    row, _ = await service.own_row(session, user, delivery_id)
    state = await let_go(session, row)
    return delivery_out(await action_outcome(client, state, action_id, resources.settings))


# Dispatcher actions --------------------------------------------------------------------------


async def _staff_act(
    b: Backends,
    user: CurrentUser,
    delivery_id: uuid.UUID,
    update: Any,
    make: Callable[[Actor], Any],
    key: str | None,
) -> DeliveryOut:
    """A dispatcher's action `update` on the delivery, with the request `make` builds for its actor."""
    row = await service.load_row(b.session, user.organization_id, delivery_id)
    req = make(await service.actor_for(b.session, user))
    return delivery_out(await act(b.session, b.client, b.resources.settings, row, update, req, key))


@router.post("/{delivery_id}/assign", response_model=DeliveryOut)
async def assign(
    delivery_id: uuid.UUID, body: AssignIn, user: Writer, b: BackendsDep, idempotency_key: IdemKey = None
) -> DeliveryOut:
    row = await service.load_row(b.session, user.organization_id, delivery_id)
    req = await assignment(b.session, user, body.vehicle_id, body.driver_id)
    return delivery_out(
        await act(
            b.session, b.client, b.resources.settings, row, DeliveryWorkflow.assign, req, idempotency_key
        )
    )


def _staff_action(
    name: str, update: Any, body_type: type[Any], to_request: Callable[[Actor, Any], Any]
) -> None:
    async def endpoint(
        delivery_id: uuid.UUID, body: Any, user: Writer, b: BackendsDep, idempotency_key: IdemKey = None
    ) -> DeliveryOut:
        return await _staff_act(
            b, user, delivery_id, update, lambda actor: to_request(actor, body), idempotency_key
        )

    endpoint.__annotations__["body"] = body_type  # the body's model, for validation and OpenAPI
    router.add_api_route(
        f"/{{delivery_id}}/{name}", endpoint, methods=["POST"], response_model=DeliveryOut, name=name
    )


def _cancel_request(actor: Actor, body: ReasonIn | UnassignIn) -> CancelRequest:
    return CancelRequest(actor, body.reason)


def _reschedule_request(actor: Actor, body: RescheduleIn) -> RescheduleRequest:
    return RescheduleRequest(actor, [TimeWindow(w.start, w.end) for w in body.windows])


_staff_action("unassign", DeliveryWorkflow.unassign, UnassignIn, _cancel_request)
_staff_action("reschedule", DeliveryWorkflow.reschedule, RescheduleIn, _reschedule_request)
_staff_action("cancel", DeliveryWorkflow.cancel, ReasonIn, _cancel_request)


# Driver actions ------------------------------------------------------------------------------


def _driver_action(name: str, update: Any, summary: str) -> None:
    async def endpoint(
        delivery_id: uuid.UUID,
        user: DriverOnly,
        b: BackendsDep,
        body: PositionIn | None = None,
        idempotency_key: IdemKey = None,
    ) -> DeliveryOut:
        row, actor = await service.own_row(b.session, user, delivery_id)
        req = DriverRequest(actor, _location(body.location) if body else None)
        return delivery_out(
            await act(b.session, b.client, b.resources.settings, row, update, req, idempotency_key)
        )

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
    b: BackendsDep,
    idempotency_key: IdemKey = None,
) -> DeliveryOut:
    row, actor = await service.own_row(b.session, user, delivery_id)
    if body.override_distance and user.role is Role.DRIVER:
        raise ProblemError(403, "forbidden", "only a dispatcher can override the proof-of-delivery distance")
    await require_uploaded(b.session, user, row, (body.signature_sha256, body.photo_sha256))
    req = DeliverRequest(
        actor,
        body.recipient_name,
        _location(body.location),
        body.signature_sha256,
        body.photo_sha256,
        body.override_distance,
    )
    state = await act(
        b.session, b.client, b.resources.settings, row, DeliveryWorkflow.deliver, req, idempotency_key
    )
    if state.proof is not None and state.proof.overridden_by:
        # Completed on the driver's behalf, or with proof taken too far away: an override to account for.
        audit_by(
            b.session,
            request,
            user,
            AuditAction.DELIVERY_OVERRIDE,
            target_type="delivery",
            target_id=row.id,
            distance_m=state.proof.distance_m,
            recipient_name=body.recipient_name,
        )
        await b.session.commit()
    return delivery_out(state)


@router.post("/{delivery_id}/fail", response_model=DeliveryOut)
async def fail(
    delivery_id: uuid.UUID, body: FailIn, user: DriverOnly, b: BackendsDep, idempotency_key: IdemKey = None
) -> DeliveryOut:
    row, actor = await service.own_row(b.session, user, delivery_id)
    req = FailRequest(actor, body.reason, body.notes, _location(body.location))
    return delivery_out(
        await act(b.session, b.client, b.resources.settings, row, DeliveryWorkflow.fail, req, idempotency_key)
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
    row, _ = await service.own_row(session, user, delivery_id)
    return await store_proof(session, resources, user, row, file)
