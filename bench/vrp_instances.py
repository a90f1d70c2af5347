"""VRP benchmark instances: Solomon .txt and CVRPLIB .vrp readers, bks.csv, LKH-3 tours.

Data ship in bench/data/vrp (a verbatim copy of shared/benchmarks/vrp; see its README for the
objective conventions). Node 0 is the depot, customers are 1..n, as in the Solomon files.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "vrp"


class Convention(StrEnum):
    TRUNC1 = "TRUNC1"  # arcs floor(10*d)/10, travel time = arc
    DIST = "DIST"  # double precision distance only
    EUC2D = "EUC2D"  # arcs nint(d), no time


@dataclass(frozen=True)
class Instance:
    name: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    demand: tuple[int, ...]
    capacity: int
    fleet: int
    ready: tuple[float, ...] | None = None  # None: no time windows (CVRP)
    due: tuple[float, ...] | None = None
    service: tuple[float, ...] | None = None

    @property
    def customers(self) -> int:
        return len(self.x) - 1

    def euclid(self, i: int, j: int) -> float:
        return math.hypot(self.x[i] - self.x[j], self.y[i] - self.y[j])


@dataclass(frozen=True)
class Bks:
    instance: str
    file: str
    convention: Convention
    distance: float
    vehicles: int


def read_solomon(path: Path, name: str | None = None) -> Instance:
    """The original Solomon text format; lines may end in CRLF or LF, so split on whitespace."""
    tokens = path.read_text().split()
    at = tokens.index("CAPACITY")
    fleet, capacity = int(tokens[at + 1]), int(tokens[at + 2])
    # The customer header ends with "SERVICE TIME" (sometimes "SERVICE   TIME").
    head = tokens.index("CUST")
    start = tokens.index("TIME", tokens.index("SERVICE", head)) + 1
    values = tokens[start:]
    rows = [values[k : k + 7] for k in range(0, len(values) - len(values) % 7, 7)]
    cols = list(zip(*[[float(v) for v in r] for r in rows], strict=True))
    return Instance(
        name=name or path.stem,
        x=cols[1],
        y=cols[2],
        demand=tuple(int(d) for d in cols[3]),
        capacity=capacity,
        fleet=fleet,
        ready=cols[4],
        due=cols[5],
        service=cols[6],
    )


def read_cvrplib(path: Path) -> Instance:
    """TSPLIB/CVRPLIB with NODE_COORD_SECTION, DEMAND_SECTION, DEPOT_SECTION (one depot)."""
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    header: dict[str, str] = {}
    sections: dict[str, list[list[str]]] = {}
    current = None
    for ln in lines:
        if ln.endswith("_SECTION"):
            current = ln
            sections[current] = []
        elif ln == "EOF":
            current = None
        elif current is not None:
            sections[current].append(ln.split())
        elif ":" in ln:
            key, value = ln.split(":", 1)
            header[key.strip()] = value.strip()
    if header.get("EDGE_WEIGHT_TYPE") != "EUC_2D":
        raise ValueError(f"{path.name}: only EUC_2D instances are supported")
    coords = {int(r[0]): (float(r[1]), float(r[2])) for r in sections["NODE_COORD_SECTION"]}
    demand = {int(r[0]): int(r[1]) for r in sections["DEMAND_SECTION"]}
    depot = int(sections["DEPOT_SECTION"][0][0])
    order = [depot] + [n for n in sorted(coords) if n != depot]
    customers = len(order) - 1
    return Instance(
        name=path.stem,
        x=tuple(coords[n][0] for n in order),
        y=tuple(coords[n][1] for n in order),
        demand=tuple(demand[n] for n in order),
        capacity=int(header["CAPACITY"]),
        fleet=customers,  # vehicles are free; one per customer never binds
    )


def convention_of(text: str) -> Convention | None:
    if "truncated" in text:
        return Convention.TRUNC1
    if text.startswith("min distance only"):
        return Convention.DIST
    if "EUC_2D" in text:
        return Convention.EUC2D
    return None  # hierarchical rows: not used here


def read_bks(path: Path = DATA / "bks.csv") -> list[Bks]:
    """The rows this benchmark uses: TRUNC1 for Solomon 25/50, DIST for Solomon 100, EUC2D for CVRP."""
    out = []
    with path.open() as f:
        for row in csv.DictReader(f):
            conv = convention_of(row["convention"])
            if conv is None or (conv is Convention.TRUNC1 and row["customers"] == "100"):
                continue
            out.append(
                Bks(row["instance"], row["file"], conv, float(row["bks_distance"]), int(row["bks_vehicles"]))
            )
    return out


def load(bks: Bks) -> Instance:
    path = DATA / bks.file
    return read_cvrplib(path) if path.suffix == ".vrp" else read_solomon(path, bks.instance)


def read_lkh_tour(path: Path, customers: int) -> list[list[int]]:
    """An LKH-3 TOUR_SECTION split into routes of customer numbers (node 1 and nodes > n+1 are depots)."""
    tokens = path.read_text().split()
    nodes = []
    for tok in tokens[tokens.index("TOUR_SECTION") + 1 :]:
        if tok in ("-1", "EOF"):
            break
        nodes.append(int(tok))
    routes: list[list[int]] = []
    current: list[int] = []
    for node in nodes[1:] + [1]:
        if node == 1 or node > customers + 1:
            if current:
                routes.append(current)
            current = []
        else:
            current.append(node - 1)
    return routes
