"""VRP benchmark: Waybill's solver against VROOM and PyVRP on Solomon VRPTW and CVRPLIB instances.

    flock /tmp/waybill-bench.lock .venv/bin/python -m bench.vrp [--time-limit 5] [--only R101,...]
        [--solvers waybill,ortools,vroom,pyvrp] [--write-docs]

Every solver gets the same wall-clock limit per instance on one core (OR-Tools and PyVRP are
single-threaded; VROOM runs with one thread at its default exploration level 5). Every solution is
checked by bench/vrp_check.py from the raw instance data. Gaps use each bks.csv row's own
convention: TRUNC1 (Solomon 25/50), DIST (Solomon 100, distance only, double precision; integer
solvers see distances x1000 rounded and travel times x1000 rounded up), EUC2D (CVRP).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from activities.routing.engine import solve
from bench.common.machine import cpu_model
from bench.common.output import DOCS_PATH, write_block
from bench.vrp_check import Verdict, check
from bench.vrp_instances import Bks, Convention, Instance, load, read_bks
from domain.geo import LatLon
from domain.routing import Engine, Job, RoutingProblem, SolveOptions, Stop, TravelMatrix, Vehicle, Window

SCALE = {Convention.TRUNC1: 10, Convention.DIST: 1000, Convention.EUC2D: 1}
GROUPS = (("Solomon 100 (DIST)", "100"), ("Solomon 25/50 (TRUNC1)", "25/50"), ("CVRP (EUC2D)", "cvrp"))
BEGIN, END = "<!-- bench:vrp:begin -->", "<!-- bench:vrp:end -->"


@dataclass
class Scaled:
    """The instance as integer solvers see it (distances, travel times, windows, service)."""

    dist: np.ndarray
    dur: np.ndarray
    ready: list[int] | None
    due: list[int] | None
    service: list[int] | None


def scaled(inst: Instance, conv: Convention) -> Scaled:
    e = np.hypot(np.subtract.outer(inst.x, inst.x), np.subtract.outer(inst.y, inst.y))
    s = SCALE[conv]
    if conv is Convention.TRUNC1:
        dist = dur = np.floor(10 * e + 1e-9).astype(np.int64)
    elif conv is Convention.EUC2D:
        dist = dur = np.floor(e + 0.5).astype(np.int64)
    else:
        dist = np.rint(e * s).astype(np.int64)
        dur = np.ceil(e * s - 1e-9).astype(np.int64)  # never faster than the real arc
    np.fill_diagonal(dist, 0)
    np.fill_diagonal(dur, 0)
    if inst.ready is None or inst.due is None or inst.service is None:
        return Scaled(dist, dur, None, None, None)
    return Scaled(
        dist,
        dur,
        [round(r * s) for r in inst.ready],
        [round(d * s) for d in inst.due],
        [round(v * s) for v in inst.service],
    )


# Solvers: each returns routes of customer numbers ----------------------------------------------


def run_waybill(
    inst: Instance, sc: Scaled, limit: float, engine: Engine = Engine.AUTO
) -> tuple[list[list[int]], str]:
    n = len(inst.x)
    shift = Window(sc.ready[0], sc.due[0]) if sc.ready and sc.due else None
    vehicles = tuple(Vehicle(f"v{k}", 0, capacity=(inst.capacity,), shift=shift) for k in range(inst.fleet))
    jobs = []
    for c in range(1, n):
        windows = (Window(sc.ready[c], sc.due[c]),) if sc.ready and sc.due else ()
        service = sc.service[c] if sc.service else 0
        jobs.append(Job(str(c), Stop(c, windows, service), demand=(inst.demand[c],)))
    problem = RoutingProblem(tuple(LatLon(0, 0) for _ in range(n)), vehicles, tuple(jobs))
    matrix = TravelMatrix(_tuples(sc.dist), {"car": _tuples(sc.dur)})
    plan = solve(problem, matrix, SolveOptions(time_limit_s=limit, engine=engine))
    routes = [[int(s.job_id) for s in r.stops if s.job_id is not None] for r in plan.routes]
    return routes, plan.engine


def run_ortools(inst: Instance, sc: Scaled, limit: float) -> tuple[list[list[int]], str]:
    return run_waybill(inst, sc, limit, Engine.ORTOOLS)


def run_vroom(inst: Instance, sc: Scaled, limit: float) -> tuple[list[list[int]], str]:
    import vroom  # bench-only extra

    problem = vroom.Input()
    problem.set_durations_matrix("car", sc.dur.tolist())
    problem.set_costs_matrix("car", sc.dist.tolist())
    window = [vroom.TimeWindow(sc.ready[0], sc.due[0])] if sc.ready and sc.due else []
    for k in range(inst.fleet):
        kw = {"time_window": window[0]} if window else {}
        problem.add_vehicle(vroom.Vehicle(k + 1, start=0, end=0, capacity=[inst.capacity], **kw))
    for c in range(1, len(inst.x)):
        kw2: dict[str, object] = {}
        if sc.ready and sc.due and sc.service:
            kw2 = {
                "time_windows": [vroom.TimeWindow(sc.ready[c], sc.due[c])],
                "default_service": sc.service[c],
            }
        problem.add_job(vroom.Job(c, location=c, delivery=[inst.demand[c]], **kw2))
    solution = problem.solve(exploration_level=5, nb_threads=1, timeout=timedelta(seconds=limit))
    df = solution.routes
    routes: dict[int, list[int]] = {}
    for vid, kind, jid in zip(df["vehicle_id"], df["type"], df["id"], strict=True):
        if kind == "job":
            routes.setdefault(int(vid), []).append(int(jid))
    return list(routes.values()), f"vroom {importlib.metadata.version('pyvroom')}"


def run_pyvrp(inst: Instance, sc: Scaled, limit: float) -> tuple[list[list[int]], str]:
    import pyvrp
    from pyvrp.stop import MaxRuntime

    m = pyvrp.Model()
    locs = [m.add_location(x=0, y=0) for _ in inst.x]
    depot = m.add_depot(locs[0])
    tw = {"tw_early": sc.ready[0], "tw_late": sc.due[0]} if sc.ready and sc.due else {}
    m.add_vehicle_type(
        num_available=inst.fleet, capacity=[inst.capacity], start_depot=depot, end_depot=depot, **tw
    )
    for c in range(1, len(inst.x)):
        kw: dict[str, int] = {}
        if sc.ready and sc.due and sc.service:
            kw = {"tw_early": sc.ready[c], "tw_late": sc.due[c], "service_duration": sc.service[c]}
        m.add_client(locs[c], delivery=[inst.demand[c]], **kw)
    data = m.data().replace(distance_matrices=[sc.dist], duration_matrices=[sc.dur])
    best = pyvrp.solve(data, MaxRuntime(limit), seed=1, display=False).best
    routes = [[act.idx + 1 for act in r.schedule() if act.is_client()] for r in best.routes()]
    return routes, f"pyvrp {importlib.metadata.version('pyvrp')}"


SOLVERS: dict[str, Callable[[Instance, Scaled, float], tuple[list[list[int]], str]]] = {
    "waybill": run_waybill,
    "ortools": run_ortools,
    "vroom": run_vroom,
    "pyvrp": run_pyvrp,
}


# Running and reporting -------------------------------------------------------------------------


@dataclass
class Result:
    bks: Bks
    solver: str
    verdict: Verdict | None
    seconds: float
    engine: str
    error: str = ""

    @property
    def gap(self) -> float | None:
        if self.verdict is None or not self.verdict.feasible:
            return None
        return 100 * (self.verdict.distance - self.bks.distance) / self.bks.distance


def group_of(bks: Bks) -> str:
    if bks.convention is Convention.EUC2D:
        return "cvrp"
    return "100" if bks.convention is Convention.DIST else "25/50"


def run_one(bks: Bks, solver: str, limit: float) -> Result:
    inst = load(bks)
    sc = scaled(inst, bks.convention)
    began = time.perf_counter()
    try:
        routes, engine = SOLVERS[solver](inst, sc, limit)
    except Exception as exc:  # a peer failing is a result, not a crash of the benchmark
        return Result(bks, solver, None, time.perf_counter() - began, "", f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - began
    return Result(bks, solver, check(inst, bks.convention, routes), seconds, engine)


def cell(r: Result) -> str:
    if r.verdict is None:
        return f"error | {r.seconds:.1f} | no"
    gap = f"{r.gap:+.2f}" if r.gap is not None else "—"
    ok = "yes" if r.verdict.feasible else "**NO**"
    return f"{r.verdict.distance:.2f} ({r.verdict.vehicles}) | {gap} | {r.seconds:.1f} | {ok}"


def table(results: list[Result], solvers: Sequence[str]) -> list[str]:
    head = (
        "| instance | BKS (veh) | "
        + " | ".join(f"{s} dist (veh) | gap % | s | feasible" for s in solvers)
        + " |"
    )
    lines = [head, "|" + "---|" * (2 + 4 * len(solvers))]
    by = {(r.bks.instance, r.bks.convention, r.solver): r for r in results}
    seen = []
    for r in results:
        key = (r.bks.instance, r.bks.convention)
        if key not in seen:
            seen.append(key)
    for name, conv in seen:
        first = by[(name, conv, solvers[0])]
        cells = " | ".join(cell(by[(name, conv, s)]) for s in solvers)
        lines.append(f"| {name} | {first.bks.distance:g} ({first.bks.vehicles}) | {cells} |")
    lines += [
        "",
        "| group | " + " | ".join(f"{s} mean gap % | {s} max gap % | {s} feasible" for s in solvers) + " |",
    ]
    lines.append("|" + "---|" * (1 + 3 * len(solvers)))
    for label, key in GROUPS:
        row = []
        for s in solvers:
            rs = [r for r in results if r.solver == s and group_of(r.bks) == key]
            if not rs:
                row.append("— | — | —")
                continue
            gaps = [r.gap for r in rs if r.gap is not None]
            feasible = sum(1 for r in rs if r.gap is not None)
            mean = f"{sum(gaps) / len(gaps):+.2f}" if gaps else "—"
            worst = f"{max(gaps):+.2f}" if gaps else "—"
            row.append(f"{mean} | {worst} | {feasible}/{len(rs)}")
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return lines


def engines_used(results: list[Result]) -> str:
    return ", ".join(sorted({f"{r.solver}: {r.engine}" for r in results if r.engine}))


def versions() -> str:
    names = ("ortools", "pyvrp", "pyvroom", "numpy")
    found = []
    for n in names:
        try:
            found.append(f"{n} {importlib.metadata.version(n)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{n} (not installed)")
    return ", ".join(found)


def docs_block(results: list[Result], solvers: Sequence[str], args: argparse.Namespace) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            "## VRP solver quality (`bench/vrp.py`)",
            "",
            f"Command: `flock /tmp/waybill-bench.lock .venv/bin/python -m bench.vrp {' '.join(args.argv)}`  ",
            f"Machine: {cpu_model()}, {os.cpu_count()} cores (each solver on one core), "
            f"Python {platform.python_version()}  ",
            f"Packages: {versions()}  ",
            f"Date: {when}; time limit {args.time_limit:g} s per instance and solver (wall clock)  ",
            f"Engines: {engines_used(results)}",
            "",
            "Distance under each BKS row's convention (bench/data/vrp/README.md); (veh) = vehicles used; "
            "gap to the best-known solution; feasible = accepted by bench/vrp_check.py. `waybill` is "
            "`solve(..., Engine.AUTO)`, `ortools` the same call forced to the OR-Tools engine.",
            "",
            *table(results, solvers),
        ]
    )


def write_docs(block: str, path: Path = DOCS_PATH) -> None:
    write_block(path, BEGIN, END, block)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--time-limit", type=float, default=5.0)
    p.add_argument("--only", default="", help="comma-separated instance names (e.g. R101,C101.25,E-n22-k4)")
    p.add_argument("--solvers", default="waybill,ortools,vroom,pyvrp")
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    solvers = [s for s in args.solvers.split(",") if s]
    only = {s for s in args.only.split(",") if s}
    rows = [b for b in read_bks() if not only or b.instance in only]
    results = []
    for bks in rows:
        for s in solvers:
            r = run_one(bks, s, args.time_limit)
            results.append(r)
            extra = (
                f" {r.error}"
                if r.error
                else (
                    ""
                    if r.verdict and r.verdict.feasible
                    else f" {r.verdict.problems[:2] if r.verdict else ''}"
                )
            )
            print(f"{bks.instance:10} {s:8} {cell(r)} {r.engine}{extra}", flush=True)  # noqa: T201
    print("\n".join(["", *table(results, solvers)]))  # noqa: T201
    if args.write_docs:
        write_docs(docs_block(results, solvers, args))
    return 0 if all(r.verdict and r.verdict.feasible for r in results if r.solver == "waybill") else 1


def _tuples(a: np.ndarray) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(x) for x in row) for row in a.tolist())


if __name__ == "__main__":
    raise SystemExit(main())
