from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class Input(BaseModel):
    """Base of every request body: unknown fields are an error, strings are stripped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Coordinates(Input):
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)


Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Skill = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*$")]
Skills = Annotated[list[Skill], Field(max_length=50)]
Phone = Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9 \-()]{5,30}$")]
Email = Annotated[
    str, StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", to_lower=True)
]
