"""The Temporal data converter every Waybill client and worker uses.

It writes exactly the JSON of temporalio's default converter and reads it into the same values;
only dataclasses are cheaper, both ways. The default encoder deep-copies every dataclass with
`dataclasses.asdict` before encoding it (`DataclassJSONEncoder` below: a third of the time). The
default decoder calls `typing.get_type_hints` on every dataclass it meets, and our domain modules
use postponed annotations, so each decode compiled and evaluated every field's annotation string
again (about a fifth of a worker's CPU per delivery). Here each dataclass's field types are
resolved once and kept.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, get_type_hints

from temporalio.converter import (
    AdvancedJSONEncoder,
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    JSONTypeConverter,
    value_to_type,
)

# (name, resolved type, passed to __init__) per field, in declaration order.
FieldPlan = tuple[tuple[str, Any, bool], ...]


@functools.lru_cache(maxsize=1024)  # bounded: sandboxed workflow modules re-create their classes per run
def _field_plan(cls: type) -> FieldPlan:
    hints = get_type_hints(cls)
    return tuple((f.name, hints[f.name], f.init) for f in dataclasses.fields(cls))


class CachedDataclassConverter(JSONTypeConverter):
    """Decodes dataclasses like temporalio's `value_to_type`, with field types resolved once per class."""

    def __init__(self) -> None:
        self._chain: list[JSONTypeConverter] = [self]  # nested values come back here

    def to_typed_value(self, hint: type, value: Any) -> Any:
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            return JSONTypeConverter.Unhandled
        if not isinstance(value, dict):
            raise TypeError(f"Cannot convert to dataclass {hint}, value is {type(value)} not dict")
        init_values: dict[str, Any] = {}
        late_values: dict[str, Any] = {}
        for name, field_type, init in _field_plan(hint):
            raw = value.get(name, dataclasses.MISSING)
            if raw is dataclasses.MISSING:
                continue  # a missing required field makes the constructor raise, as in temporalio
            try:
                converted = value_to_type(field_type, raw, self._chain)
            except Exception as err:
                raise TypeError(f"Failed converting field {name} on dataclass {hint}") from err
            (init_values if init else late_values)[name] = converted
        obj = hint(**init_values)
        for name, converted in late_values.items():
            object.__setattr__(obj, name, converted)  # init=False fields, frozen classes included
        return obj


TYPE_CONVERTERS: list[JSONTypeConverter] = [CachedDataclassConverter()]


@functools.lru_cache(maxsize=1024)  # bounded, like _field_plan
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


class DataclassJSONEncoder(AdvancedJSONEncoder):
    """Writes the same JSON as temporalio's `AdvancedJSONEncoder`, with cheaper dataclasses.

    The default turns a dataclass into a dict with `dataclasses.asdict`, which rebuilds every nested
    dataclass, list and dict and deep-copies every other value before the encoder walks the result
    again. Here a dataclass becomes a dict of its fields one level at a time: the encoder meets
    nested dataclasses and calls `default` for them in turn, and the other values are encoded as
    they are. Same fields, same values, same key order (the converter sorts keys).
    """

    def default(self, o: Any) -> Any:
        cls: type = type(o)
        if hasattr(cls, "__dataclass_fields__") and not isinstance(o, type):
            return {name: getattr(o, name) for name in _field_names(cls)}
        return super().default(o)


class WaybillPayloadConverter(CompositePayloadConverter):
    """temporalio's default payload converters, with the cheaper JSON encoder and the caching decoder
    in the plain JSON one."""

    def __init__(self) -> None:
        converters = [
            JSONPlainPayloadConverter(encoder=DataclassJSONEncoder, custom_type_converters=TYPE_CONVERTERS)
            if isinstance(c, JSONPlainPayloadConverter)
            else c
            for c in DefaultPayloadConverter.default_encoding_payload_converters
        ]
        super().__init__(*converters)


DATA_CONVERTER = DataConverter(payload_converter_class=WaybillPayloadConverter)
