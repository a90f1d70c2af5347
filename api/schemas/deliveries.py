"""Deliveries on the wire, and their conversion to and from the domain types."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints, field_validator

from api.schemas.common import ContactEmail, ContactName, ContactPhone, Coordinates, Input, Place, Skills
from domain.delivery import (
    AttemptPolicy,
    Contact,
    DeliverySpec,
    DeliveryState,
    DeliveryStatus,
    FailureReason,
    Size,
    Stop,
    TimeWindow,
    allowed_actions,
)

Text = Annotated[str, StringConstraints(max_length=1000)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class WindowIn(Input):
    start: AwareDatetime
    end: AwareDatetime


class ContactIn(Input):
    name: ContactName = ""
    phone: ContactPhone = ""
    email: ContactEmail = ""


class StopIn(Place):
    windows: Annotated[list[WindowIn], Field(max_length=10)] = Field(default_factory=list)
    service_minutes: float = Field(default=0, ge=0, le=24 * 60, allow_inf_nan=False)
    contact: ContactIn = Field(default_factory=ContactIn)
    notes: Text = ""


class SizeIn(Input):
    weight_kg: float = Field(default=0, ge=0, le=100_000, allow_inf_nan=False)
    volume_m3: float = Field(default=0, ge=0, le=1_000, allow_inf_nan=False)
    units: int = Field(default=1, ge=0, le=100_000)


class AttemptPolicyIn(Input):
    max_attempts: int = Field(default=3, ge=1, le=10)


class DeliveryCreate(Input):
    dropoff: StopIn
    pickup: StopIn | None = None
    size: SizeIn = Field(default_factory=SizeIn)
    priority: int = Field(default=0, ge=0, le=100)
    required_skills: Skills = Field(default_factory=list)
    external_ref: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    attempt_policy: AttemptPolicyIn = Field(default_factory=AttemptPolicyIn)
    depot_id: uuid.UUID | None = None


class BatchCreate(Input):
    # Items are validated one by one so that one bad item does not sink the others.
    items: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=10_000)]

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return value  # each item is a DeliveryCreate, which refuses a NUL in that item alone


def _stop(s: StopIn) -> Stop:
    return Stop(
        address=s.address,
        lat=s.location.lat,
        lon=s.location.lon,
        windows=[TimeWindow(w.start, w.end) for w in s.windows],
        service_minutes=s.service_minutes,
        contact=Contact(s.contact.name, s.contact.phone, s.contact.email),
        notes=s.notes,
    )


def to_spec(body: DeliveryCreate) -> DeliverySpec:
    return DeliverySpec(
        dropoff=_stop(body.dropoff),
        pickup=_stop(body.pickup) if body.pickup else None,
        size=Size(body.size.weight_kg, body.size.volume_m3, body.size.units),
        priority=body.priority,
        required_skills=sorted(set(body.required_skills)),
        external_ref=body.external_ref,
        attempt_policy=AttemptPolicy(max_attempts=body.attempt_policy.max_attempts),
        depot_id=str(body.depot_id) if body.depot_id else None,
    )


# Actions ------------------------------------------------------------------------------------


class AssignIn(Input):
    vehicle_id: uuid.UUID
    driver_id: uuid.UUID | None = Field(default=None, description="default: the driver whose vehicle this is")


class ReasonIn(Input):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class UnassignIn(Input):
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class RescheduleIn(Input):
    windows: Annotated[list[WindowIn], Field(min_length=1, max_length=10)]


class PositionIn(Input):
    location: Coordinates | None = None


class DeliverIn(Input):
    recipient_name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    location: Coordinates | None = None
    signature_sha256: Sha256 | None = None
    photo_sha256: Sha256 | None = None
    override_distance: bool = Field(
        default=False, description="dispatchers only: accept proof taken far away"
    )


class FailIn(Input):
    reason: FailureReason
    notes: Text = ""
    location: Coordinates | None = None


# Output -------------------------------------------------------------------------------------


class WindowOut(BaseModel):
    start: datetime
    end: datetime


class StopOut(BaseModel):
    address: str
    location: Coordinates
    windows: list[WindowOut]
    service_minutes: float
    contact: dict[str, str]
    notes: str


class ProofOut(BaseModel):
    recipient_name: str
    signature_sha256: str | None
    photo_sha256: str | None
    location: Coordinates | None
    distance_m: float | None
    overridden_by: str | None


class DeliveryOut(BaseModel):
    id: uuid.UUID
    status: DeliveryStatus
    sequence: int
    attempt: int
    max_attempts: int
    external_ref: str | None
    vehicle_id: uuid.UUID | None
    driver_id: uuid.UUID | None
    route_id: str | None = None
    accepted: bool
    pickup: StopOut | None
    dropoff: StopOut
    size: dict[str, float]
    priority: int
    required_skills: list[str]
    late: bool
    late_predicted: bool
    eta: datetime | None
    proof: ProofOut | None
    failures: list[str]
    cancel_reason: str | None
    allowed_actions: list[str]
    created_at: datetime | None
    updated_at: datetime | None


def _stop_out(s: Stop) -> StopOut:
    return StopOut(
        address=s.address,
        location=Coordinates(lat=s.lat, lon=s.lon),
        windows=[WindowOut(start=w.start, end=w.end) for w in s.windows],
        service_minutes=s.service_minutes,
        contact={"name": s.contact.name, "phone": s.contact.phone, "email": s.contact.email},
        notes=s.notes,
    )


def delivery_out(st: DeliveryState) -> DeliveryOut:
    spec = st.spec
    proof = st.proof
    return DeliveryOut(
        id=uuid.UUID(st.delivery_id),
        status=st.status,
        sequence=st.sequence,
        attempt=st.attempt,
        max_attempts=spec.attempt_policy.max_attempts,
        external_ref=spec.external_ref,
        vehicle_id=uuid.UUID(st.vehicle_id) if st.vehicle_id else None,
        driver_id=uuid.UUID(st.driver_id) if st.driver_id else None,
        route_id=st.route_id,
        accepted=st.accepted,
        pickup=_stop_out(spec.pickup) if spec.pickup else None,
        dropoff=_stop_out(spec.dropoff),
        size={"weight_kg": spec.size.weight_kg, "volume_m3": spec.size.volume_m3, "units": spec.size.units},
        priority=spec.priority,
        required_skills=list(spec.required_skills),
        late=st.late,
        late_predicted=st.late_predicted,
        eta=st.eta,
        proof=ProofOut(
            recipient_name=proof.recipient_name,
            signature_sha256=proof.signature_sha256,
            photo_sha256=proof.photo_sha256,
            location=Coordinates(lat=proof.position.lat, lon=proof.position.lon) if proof.position else None,
            distance_m=proof.distance_m,
            overridden_by=proof.overridden_by,
        )
        if proof
        else None,
        failures=list(st.failures),
        cancel_reason=st.cancel_reason,
        allowed_actions=allowed_actions(st.status),
        created_at=st.created_at,
        updated_at=st.updated_at,
    )


class EventOut(BaseModel):
    sequence: int
    type: str
    occurred_at: datetime
    actor: str | None
    from_status: str | None
    to_status: str | None
    data: dict[str, Any]


class BatchItemResult(BaseModel):
    index: int
    outcome: str = Field(description="created, existing or rejected")
    delivery: DeliveryOut | None = None
    error: dict[str, Any] | None = None


class BatchResult(BaseModel):
    created: int
    existing: int
    rejected: int
    items: list[BatchItemResult]


class ProofFileOut(BaseModel):
    sha256: str
    content_type: str
    size_bytes: int
