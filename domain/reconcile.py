"""The delivery reconciler's input and report: delivery rows and DeliveryWorkflows out of step.

Every delivery is a `DeliveryWorkflow` (id `delivery-{id}`) whose projection is its `deliveries` row.
The reconciler finds a non-terminal row without a running workflow, and a running workflow without a
row, and (unless asked for a dry run) repairs what it can; see docs/operations.md ("Reconciling
deliveries and workflows").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

# Names of the delivery workflow as Temporal knows it, for callers that cannot import workflows/.
DELIVERY_WORKFLOW_TYPE = "DeliveryWorkflow"
DELIVERY_STATE_QUERY = "state"
RECONCILE_SCHEDULE_ID = "delivery-reconcile"
MAX_FINDINGS = 100  # findings listed in a report (the counts cover them all): keeps history small


def delivery_workflow_id(delivery_id: str) -> str:
    return f"delivery-{delivery_id}"


class FindingKind(StrEnum):
    MISSING_WORKFLOW = "missing_workflow"  # a non-terminal row whose workflow does not exist
    CLOSED_WORKFLOW = "closed_workflow"  # a non-terminal row whose workflow has closed
    MISSING_ROW = "missing_row"  # a running workflow without a row


class FindingAction(StrEnum):
    STARTED = "started"  # the workflow was started from the row (same input the API builds)
    PROJECTED = "projected"  # the row was written from the workflow's state
    REPORTED = "reported"  # dry run: found, left as it is
    UNREPAIRABLE = "unrepairable"  # needs an operator (detail says why)


@dataclass(frozen=True)
class ReconcileInput:
    requested_by: str = "schedule"
    repair: bool = True  # False: a dry run, report only
    organization_id: str | None = None  # None: every organization
    grace_seconds: float | None = None  # None: WAYBILL_RECONCILE_GRACE_SECONDS


@dataclass(frozen=True)
class Finding:
    delivery_id: str
    kind: FindingKind
    action: FindingAction
    detail: str = ""


@dataclass
class ReconcileResult:
    checked: int = 0  # non-terminal rows older than the grace period
    workflows_checked: int = 0  # running delivery workflows started before the grace period
    missing_workflow: int = 0
    closed_workflow: int = 0
    missing_row: int = 0
    repaired: int = 0
    unrepairable: int = 0
    dry_run: bool = False
    findings: list[Finding] = field(default_factory=list)  # the first MAX_FINDINGS
    checked_at: datetime | None = None

    @property
    def found(self) -> int:
        return self.missing_workflow + self.closed_workflow + self.missing_row

    def add(self, finding: Finding) -> None:
        if finding.kind is FindingKind.MISSING_WORKFLOW:
            self.missing_workflow += 1
        elif finding.kind is FindingKind.CLOSED_WORKFLOW:
            self.closed_workflow += 1
        else:
            self.missing_row += 1
        if finding.action in (FindingAction.STARTED, FindingAction.PROJECTED):
            self.repaired += 1
        elif finding.action is FindingAction.UNREPAIRABLE:
            self.unrepairable += 1
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(finding)
