"""Names of the custom search attributes Waybill registers on Temporal (all Keyword).

The dev server registers them at start (`--search-attribute NAME=Keyword`); a production cluster
registers them once with `temporal operator search-attribute create` (see docs/operations.md).
"""

from __future__ import annotations

ORGANIZATION_ID = "WaybillOrganizationId"
DELIVERY_STATUS = "WaybillDeliveryStatus"
VEHICLE_ID = "WaybillVehicleId"
DRIVER_ID = "WaybillDriverId"
DEPOT_ID = "WaybillDepotId"
EXTERNAL_REF = "WaybillExternalRef"

KEYWORD_ATTRIBUTES: tuple[str, ...] = (
    ORGANIZATION_ID,
    DELIVERY_STATUS,
    VEHICLE_ID,
    DRIVER_ID,
    DEPOT_ID,
    EXTERNAL_REF,
)
