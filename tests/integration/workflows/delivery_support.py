"""Building delivery inputs and running a worker for workflow tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from domain.delivery import Actor, DeliveryInput, DeliveryOptions, DeliverySpec, Position, Stop, TimeWindow
from domain.ids import uuid7

DROP = Position(52.52, 13.405)
DISPATCHER = Actor(user_id="u-dispatch", role="dispatcher")


def make_input(
    org: str | None = None,
    *,
    now: datetime | None = None,
    window_hours: float = 4,
    max_attempts: int = 3,
    options: DeliveryOptions | None = None,
) -> DeliveryInput:
    from domain.delivery import AttemptPolicy

    start = now or datetime.now(UTC)
    spec = DeliverySpec(
        dropoff=Stop(
            address="Unter den Linden 1",
            lat=DROP.lat,
            lon=DROP.lon,
            windows=[TimeWindow(start, start + timedelta(hours=window_hours))],
        ),
        attempt_policy=AttemptPolicy(max_attempts=max_attempts),
    )
    return DeliveryInput(
        delivery_id=str(uuid7()),
        organization_id=org or str(uuid.uuid4()),
        spec=spec,
        created_by="test",
        created_at=start,
        options=options or DeliveryOptions(),
    )


def driver(driver_id: str) -> Actor:
    return Actor(user_id=f"user-{driver_id}", role="driver", driver_id=driver_id)
