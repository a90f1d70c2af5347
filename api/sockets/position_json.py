"""A position as JSON: how the socket server caches, publishes and sends an accepted fix.

Each accepted position is encoded once (`fix_json`), when it is accepted (api/sockets/ingest.py): the
bus message, the cached latest position and the dispatchers' `positions` frames are made of those same
bytes (api/sockets/fanout.py forwards them without decoding; `POSITIONS_HEAD` is the shape they share).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.positions import Fix


@dataclass(frozen=True, slots=True)
class VehicleRef:
    organization_id: UUID
    vehicle_id: UUID
    driver_id: UUID | None
    # The start of every position message of this vehicle (`fix_json`), made once per connection.
    json_head: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        driver = json.dumps(str(self.driver_id) if self.driver_id else None)
        object.__setattr__(self, "json_head", f'{{"vehicle_id":"{self.vehicle_id}","driver_id":{driver},')


# A positions message on the bus and to dispatchers is exactly this, the positions' JSON joined by
# commas, and "]}" (what `encode_json` makes of {"type": "positions", "positions": [...]} too).
POSITIONS_HEAD = '{"type":"positions","positions":['
POSITIONS_TAIL = "]}"


def fix_message(ref: VehicleRef, f: Fix) -> dict[str, Any]:
    """A position as it is cached, published and sent to dispatchers (`fix_json` encodes it)."""
    return {
        "vehicle_id": str(ref.vehicle_id),
        "driver_id": str(ref.driver_id) if ref.driver_id else None,
        "seq": f.seq,
        "recorded_at": f.recorded_at.isoformat(),
        "lat": f.lat,
        "lon": f.lon,
        "accuracy_m": f.accuracy_m,
        "speed_mps": f.speed_mps,
        "heading_deg": f.heading_deg,
    }


def _number(value: float | None) -> str:
    # float's repr is what json.dumps writes for a finite float; accepted fixes have no NaN or infinity.
    return repr(value) if type(value) is float else json.dumps(value)


def fix_json(ref: VehicleRef, f: Fix) -> str:
    """`encode_json(fix_message(ref, f))`, built directly (a quarter of the CPU): the hot path's encoding."""
    return (
        f'{ref.json_head}"seq":{f.seq},"recorded_at":"{f.recorded_at.isoformat()}",'
        f'"lat":{_number(f.lat)},"lon":{_number(f.lon)},"accuracy_m":{_number(f.accuracy_m)},'
        f'"speed_mps":{_number(f.speed_mps)},"heading_deg":{_number(f.heading_deg)}}}'
    )


def positions_payload(texts: list[str]) -> bytes:
    """The bus message (and dispatcher frame) carrying these `fix_json` texts."""
    return (POSITIONS_HEAD + ",".join(texts) + POSITIONS_TAIL).encode()


def fix_from_message(data: dict[str, Any]) -> Fix:
    return Fix(
        seq=int(data["seq"]),
        recorded_at=datetime.fromisoformat(data["recorded_at"]),
        lat=float(data["lat"]),
        lon=float(data["lon"]),
        accuracy_m=data.get("accuracy_m"),
        speed_mps=data.get("speed_mps"),
        heading_deg=data.get("heading_deg"),
    )
