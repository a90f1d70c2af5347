"""Every JSON request body is an `Input` model, so none can carry a NUL to the database (issue 17,
defect 6: SQLite stored it, PostgreSQL answered 500) and none accepts unknown fields."""

from __future__ import annotations

import types
import typing

import pytest
from fastapi.datastructures import UploadFile
from fastapi.routing import APIRoute
from pydantic import ValidationError

from api.app import create_app
from api.http.nul import NUL_MESSAGE, contains_nul
from api.schemas.common import Input
from api.schemas.fleet import VehicleCreate
from tests.support import test_settings


def _models(annotation: object) -> list[object]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def test_every_json_body_is_an_input_model() -> None:
    app = create_app(test_settings())
    bodies = 0
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        for param in route.dependant.body_params:
            for model in _models(param.field_info.annotation):
                if model is UploadFile:
                    continue  # files: the CSV import validates each row as a DeliveryCreate
                bodies += 1
                assert isinstance(model, type), (route.path, model)
                assert issubclass(model, Input), (route.path, model)
    assert bodies > 25


def test_nul_is_refused_in_nested_text_and_found_in_containers() -> None:
    with pytest.raises(ValidationError) as info:
        VehicleCreate.model_validate({"name": "Van\x00"})
    assert info.value.errors()[0]["msg"] == NUL_MESSAGE
    assert contains_nul({"a": ["b", ("c", {"d\x00": 1})]})
    assert not contains_nul({"a": ["b", ("c", {"d": 1, "e": 2.5})], "\\u0000": None})
