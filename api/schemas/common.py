from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from api.http.nul import NUL_MESSAGE, contains_nul


class Input(BaseModel):
    """Base of every request body: unknown fields are an error, strings are stripped, and no text may
    hold a NUL (PostgreSQL refuses it; api/http/nul.py), so that is a 422 naming the field on every
    backend."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # One call per field (a few us per delivery create); nested Input models check themselves. A
        # subclass whose raw fields another Input model validates later may override it.
        if contains_nul(value):
            raise PydanticCustomError("nul_character", NUL_MESSAGE)
        return value


class Output(BaseModel):
    """Base of a response made from a row: read from its attributes (`Out.model_validate(row)`)."""

    model_config = ConfigDict(from_attributes=True)


class Coordinates(Input):
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)


Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
# A stop's address and the person to reach there, as deliveries and orders take them.
ContactName = Annotated[str, StringConstraints(max_length=200)]
ContactPhone = Annotated[str, StringConstraints(max_length=40)]
ContactEmail = Annotated[str, StringConstraints(max_length=320)]
Skill = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*$")]
Skills = Annotated[list[Skill], Field(max_length=50)]
Phone = Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9 \-()]{5,30}$")]
Email = Annotated[
    str, StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", to_lower=True)
]


class Place(Input):
    """An address and where it is (the base of a delivery's stop and an order's shipping address)."""

    address: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    location: Coordinates
