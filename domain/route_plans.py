"""Route plans and auto-dispatch: what RoutePlanWorkflow and DispatchWorkflow carry.

A plan request names a depot and a service date; an activity turns the deliveries and vehicles
in the database into a RoutingProblem (`LoadedProblem`), the routing activity solves it, and the
apply activity assigns deliveries through their workflows and hands each vehicle its stops.
"""

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from domain.routing import RoutePlan, RoutingProblem


class PlanStatus(StrEnum):
    OPTIMIZING = "optimizing"
    PLANNED = "planned"  # waiting for `apply` (created with auto_apply=false)
    APPLYING = "applying"
    APPLIED = "applied"
    DISCARDED = "discarded"  # never applied (expired or superseded)
    FAILED = "failed"


@dataclass(frozen=True)
class PlanRequest:
    organization_id: str
    plan_id: str
    depot_id: str
    service_date: str | None  # ISO date ("2026-11-28"); None: today, in the depot's time zone
    requested_by: str
    delivery_ids: list[str] | None = None  # None: every open delivery of the depot for the date
    vehicle_ids: list[str] | None = None  # None: every active vehicle based at the depot
    time_limit_s: float = 5.0
    auto_apply: bool = True
    # Re-optimise what is already planned (auto-dispatch): assigned deliveries may move between
    # vehicles, stops already started stay where they are.
    include_assigned: bool = False
    apply_expires_s: int = 24 * 3600  # an unapplied plan is discarded after this
    routing_task_queue: str = "waybill-routing"  # where the optimize_routes activity runs


@dataclass(frozen=True)
class VehicleRef:
    vehicle_id: str
    driver_id: str | None
    name: str


@dataclass(frozen=True)
class StopRef:
    """What a job's stop means in the outside world (to build RouteStops from the plan)."""

    delivery_id: str
    address: str
    lat: float
    lon: float
    window_start: datetime | None = None
    window_end: datetime | None = None
    pickup_address: str | None = None
    pickup_lat: float | None = None
    pickup_lon: float | None = None
    pickup_window_start: datetime | None = None
    pickup_window_end: datetime | None = None


@dataclass(frozen=True)
class LoadedProblem:
    problem: RoutingProblem
    origin: datetime  # second 0 of the problem
    shift: str  # the service date as text: part of each route id
    vehicles: list[VehicleRef]
    stops: list[StopRef]  # one per job, same ids
    skipped: dict[str, str] = field(default_factory=dict)  # delivery id -> why it was left out


@dataclass(frozen=True)
class ApplyInput:
    request: PlanRequest
    loaded: LoadedProblem
    plan: RoutePlan


@dataclass(frozen=True)
class ApplyResult:
    outcomes: dict[str, str]  # delivery id -> "assigned", "unchanged", "skipped: <why>"
    routes: list[str]  # RouteWorkflow ids that received stops
    changed_vehicles: list[str]


@dataclass(frozen=True)
class PlanState:
    plan_id: str
    status: PlanStatus
    request: PlanRequest
    plan: RoutePlan | None = None
    result: ApplyResult | None = None
    error: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # delivery id -> why it was not planned
    applied_by: str | None = None
    origin: datetime | None = None  # second 0 of the plan's times
    shift: str | None = None  # the service date the plan is for (part of each route id)
    updated_at: datetime | None = None


@dataclass(frozen=True)
class ApplyPlanRequest:
    actor: str


@dataclass(frozen=True)
class DispatchInput:
    organization_id: str
    depot_id: str
    debounce_s: float = 30.0
    time_limit_s: float = 5.0
    routing_task_queue: str = "waybill-routing"
    pending: list[str] = field(default_factory=list)  # carried over continue-as-new
    batches: int = 0


@dataclass(frozen=True)
class DispatchState:
    depot_id: str
    pending: list[str]
    batches: int
    last_plan_id: str | None = None
    last_status: str | None = None
    last_error: str | None = None
    stopping: bool = False


@dataclass(frozen=True)
class DeliveryNotice:
    """Signal to a depot's DispatchWorkflow: a delivery appeared or went away."""

    delivery_id: str
    event: str  # "created" or "cancelled"
    # The delivery's organization: a depot's dispatch takes in only its own organization's deliveries.
    # Empty in notices sent before it existed.
    organization_id: str = ""


DISPATCH_NOTICE_SIGNAL = "delivery_notice"  # DispatchWorkflow.delivery_notice, by name (no import cycle)


def dispatch_workflow_id(depot_id: str) -> str:
    return f"dispatch-{depot_id}"
