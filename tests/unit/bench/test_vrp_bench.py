"""The VRP benchmark's readers and its independent feasibility check."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.vrp import run_one, scaled
from bench.vrp_check import check
from bench.vrp_instances import DATA, Convention, read_bks, read_cvrplib, read_lkh_tour, read_solomon

TOURS = sorted((DATA / "solomon" / "lkh3_tours").glob("*/*.tour"))


def test_solomon_reader() -> None:
    inst = read_solomon(DATA / "solomon" / "100" / "R101.txt")
    assert (inst.customers, inst.fleet, inst.capacity) == (100, 25, 200)
    assert (inst.x[0], inst.y[0], inst.due[0]) == (35, 35, 230)  # type: ignore[index]
    assert (inst.demand[1], inst.ready[1], inst.due[1], inst.service[1]) == (10, 161, 171, 10)  # type: ignore[index]
    small = read_solomon(DATA / "solomon" / "25" / "R101.txt")  # mixed line ends
    assert small.customers == 25
    assert small.x == inst.x[:26]
    assert small.due == inst.due[:26]


def test_cvrplib_reader() -> None:
    inst = read_cvrplib(DATA / "cvrp" / "E-n22-k4.vrp")
    assert (inst.customers, inst.capacity, inst.x[0], inst.y[0]) == (21, 6000, 145, 215)
    assert inst.demand[0] == 0
    assert sum(inst.demand) > 0
    assert inst.ready is None


def test_bks_rows_use_one_convention_per_instance() -> None:
    rows = read_bks()
    assert len(rows) == 21
    conv = {r.instance: r.convention for r in rows}
    assert conv["R101"] is Convention.DIST
    assert conv["R101.25"] is Convention.TRUNC1
    assert conv["E-n101-k8"] is Convention.EUC2D
    assert {r.instance: r.distance for r in rows}["R101"] == 1642.88


@pytest.mark.parametrize("tour", TOURS, ids=lambda p: p.name)
def test_checker_accepts_the_lkh3_reference_tours(tour: Path) -> None:
    name, n = tour.name.split(".")[:2]
    exact = tour.parent.name == "100_EXACT"
    inst = read_solomon(DATA / "solomon" / ("100" if exact else tour.parent.name) / f"{name}.txt")
    routes = read_lkh_tour(tour, inst.customers)
    verdict = check(inst, Convention.DIST if exact else Convention.TRUNC1, routes)
    assert verdict.feasible, verdict.problems
    cost = int(tour.name.split(".")[-2])
    assert verdict.distance == pytest.approx(cost / (1000 if exact else 10), abs=0.005)
    assert verdict.vehicles == int(tour.name.split(".")[2])
    assert n


def _reference() -> tuple:  # type: ignore[type-arg]
    inst = read_solomon(DATA / "solomon" / "25" / "R101.txt")
    return inst, read_lkh_tour(DATA / "solomon" / "lkh3_tours" / "25" / "R101.25.8.6171.tour", inst.customers)


def test_checker_rejects_a_late_arrival() -> None:
    inst, routes = _reference()
    routes[0] = list(reversed(routes[0]))  # R101 windows are tight: reversed is late somewhere
    verdict = check(inst, Convention.TRUNC1, routes)
    assert not verdict.feasible
    assert any("due" in p for p in verdict.problems)


def test_checker_rejects_missing_duplicate_and_overloaded() -> None:
    inst, routes = _reference()
    assert "not served" in " ".join(check(inst, Convention.TRUNC1, [routes[0][1:], *routes[1:]]).problems)
    assert "more than once" in " ".join(check(inst, Convention.TRUNC1, [*routes, [routes[0][0]]]).problems)
    cvrp = read_cvrplib(DATA / "cvrp" / "E-n22-k4.vrp")
    verdict = check(cvrp, Convention.EUC2D, [list(range(1, 22))])
    assert not verdict.feasible
    assert "over capacity" in verdict.problems[0]


def test_scaled_durations_never_undercut_the_real_arcs() -> None:
    inst = read_solomon(DATA / "solomon" / "100" / "C101.txt")
    sc = scaled(inst, Convention.DIST)
    assert (sc.dur >= sc.dist).all()
    assert sc.due[0] == 1236 * 1000


def test_waybill_solves_a_small_instance_feasibly() -> None:
    bks = next(b for b in read_bks() if b.instance == "C101.25")
    result = run_one(bks, "waybill", 0.5)
    assert result.verdict is not None
    assert result.verdict.feasible, result.verdict.problems
    assert result.gap is not None
    assert result.gap < 5
