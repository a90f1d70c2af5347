"""The tracker's signals to workflows, by typed handle: an arrival to the delivery's workflow, an ETA to
the route's. (Client-side calls of the socket server only; the API's and the tools' go through
starters/.)"""

from __future__ import annotations

from temporalio.client import Client

from domain.delivery import ArrivalSignal
from domain.reconcile import delivery_workflow_id
from domain.routes import EtaReport
from workflows.delivery import DeliveryWorkflow
from workflows.route import RouteWorkflow


async def signal_arrived(client: Client, delivery_id: str, sig: ArrivalSignal) -> None:
    handle = client.get_workflow_handle_for(DeliveryWorkflow.run, delivery_workflow_id(delivery_id))
    await handle.signal(DeliveryWorkflow.arrived, sig)


async def report_eta(client: Client, route_id: str, report: EtaReport) -> None:
    await client.get_workflow_handle_for(RouteWorkflow.run, route_id).signal(RouteWorkflow.report_eta, report)
