"""The figures each fault scenario reports; tests/faults/conftest.py prints them as a table at the end."""

from __future__ import annotations

from dataclasses import dataclass, field

RESULTS: list[Figures] = []


@dataclass
class Figures:
    scenario: str
    deliveries: int = 0
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    positions_lost: int = 0
    extra: dict[str, str] = field(default_factory=dict)  # scenario-specific figures (p99, counts)
    problems: list[str] = field(default_factory=list)  # what each non-zero count is made of

    def __post_init__(self) -> None:
        RESULTS.append(self)  # recorded before any assertion, so a failing scenario still reports

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.stuck or self.positions_lost)

    def line(self) -> str:
        extra = "".join(f", {k} {v}" for k, v in self.extra.items())
        return (
            f"{self.scenario}: deliveries {self.deliveries}, lost {self.lost}, duplicated {self.duplicated}, "
            f"stuck {self.stuck}, acknowledged positions lost {self.positions_lost}{extra}"
        )

    def assert_clean(self) -> None:
        assert self.clean, self.line() + "\n" + "\n".join(self.problems[:20])
