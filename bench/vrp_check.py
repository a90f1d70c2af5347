"""Independent feasibility check of a VRP solution, from the raw instance data only.

It shares no code with Waybill's solver: distances are recomputed from coordinates under the
instance's convention; the schedule is simulated from the file's ready times, due dates and
service times (service starts at max(arrival, ready) and must start by the due date; the vehicle
must be back by the depot's due date); every customer must be served exactly once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.vrp_instances import Convention, Instance

EPS = 1e-9


@dataclass
class Verdict:
    feasible: bool
    distance: float  # under the instance's convention
    vehicles: int
    problems: list[str] = field(default_factory=list)


def arc(inst: Instance, conv: Convention, i: int, j: int) -> float:
    d = inst.euclid(i, j)
    if conv is Convention.TRUNC1:
        return math.floor(10 * d) / 10
    if conv is Convention.EUC2D:
        return float(math.floor(d + 0.5))
    return d


def check(inst: Instance, conv: Convention, routes: list[list[int]]) -> Verdict:
    problems: list[str] = []
    used = [r for r in routes if r]
    seen: dict[int, int] = {}
    total = 0.0
    if len(used) > inst.fleet:
        problems.append(f"{len(used)} routes, fleet is {inst.fleet}")
    for k, route in enumerate(used):
        load = 0
        t = inst.ready[0] if inst.ready else 0.0
        prev = 0
        for c in route:
            if not 1 <= c <= inst.customers:
                problems.append(f"route {k}: no customer {c}")
                continue
            seen[c] = seen.get(c, 0) + 1
            load += inst.demand[c]
            total += arc(inst, conv, prev, c)
            if inst.ready is not None and inst.due is not None and inst.service is not None:
                t += arc(inst, conv, prev, c)
                if t > inst.due[c] + EPS:
                    problems.append(f"route {k}: customer {c} reached at {t:.3f}, due {inst.due[c]}")
                t = max(t, inst.ready[c]) + inst.service[c]
            prev = c
        total += arc(inst, conv, prev, 0)
        if inst.due is not None and t + arc(inst, conv, prev, 0) > inst.due[0] + EPS:
            problems.append(f"route {k}: back at the depot after its due date {inst.due[0]}")
        if load > inst.capacity:
            problems.append(f"route {k}: load {load} over capacity {inst.capacity}")
    missing = [c for c in range(1, inst.customers + 1) if c not in seen]
    twice = [c for c, n in seen.items() if n > 1]
    if missing:
        problems.append(f"customers not served: {missing[:10]}{'...' if len(missing) > 10 else ''}")
    if twice:
        problems.append(f"customers served more than once: {twice[:10]}")
    if conv is Convention.TRUNC1:
        total = round(total, 1)  # a sum of one-decimal values
    return Verdict(not problems, total, len(used), problems)
