"""Attribute mapping and attribute condition, evaluated as CEL over `assertion` (cel-python)."""

from __future__ import annotations

import functools

import celpy

from . import replies
from .replies import StsError

ATTRIBUTE_LIMIT = 127  # bytes, per mapped value
_ENV = celpy.Environment()


class CelFailure(Exception):
    """The expression raised (e.g. a missing claim) or produced an error value."""


@functools.lru_cache(maxsize=512)
def _program(expression: str):
    # A syntax error is a provider misconfiguration (Google refuses it at creation).
    return _ENV.program(_ENV.compile(expression))


def evaluate(expression: str, activation: dict):
    try:
        result = _program(expression).evaluate(
            {name: celpy.json_to_cel(value) for name, value in activation.items()}
        )
    except celpy.CELEvalError as exc:
        raise CelFailure(str(exc)) from exc
    if isinstance(result, celpy.CELEvalError):
        raise CelFailure(str(result))
    return result


def _as_attribute(value):
    """Google attributes are strings (google.groups: a list of strings)."""
    if isinstance(value, celpy.celtypes.BoolType):
        return "true" if value else "false"
    if isinstance(value, celpy.celtypes.ListType):
        return [_as_attribute(item) for item in value]
    return str(value)


def map_attributes(mapping: dict[str, str], claims: dict) -> dict[str, str | list[str]]:
    """Google's mapping rules: google.subject must map, each value at most 127 bytes.

    A non-subject attribute whose expression fails (e.g. the claim is absent) is simply
    left unmapped.
    """
    mapped = {}
    for key, expression in mapping.items():
        try:
            mapped[key] = _as_attribute(evaluate(expression, {"assertion": claims}))
        except CelFailure:
            if key == "google.subject":
                raise StsError("invalid_request", replies.sts_subject_unmapped()) from None
    if not mapped.get("google.subject"):
        raise StsError("invalid_request", replies.sts_subject_unmapped())
    for value in mapped.values():
        for item in value if isinstance(value, list) else [value]:
            if len(item.encode()) > ATTRIBUTE_LIMIT:
                raise StsError("invalid_request", replies.STS_ATTRIBUTE_TOO_LONG)
    return mapped


def check_condition(condition: str | None, claims: dict, mapped: dict) -> None:
    """A condition that is false, not a bool, or errors (missing claim) rejects."""
    if not condition:
        return
    activation = {"assertion": claims}
    activation["attribute"] = {k.split(".", 1)[1]: v for k, v in mapped.items() if k.startswith("attribute.")}
    # cel-python resolves `google.` as the google.protobuf package, so bind the dotted names.
    activation.update({k: v for k, v in mapped.items() if k.startswith("google.")})
    try:
        result = evaluate(condition, activation)
    except CelFailure:
        result = None
    if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
        raise StsError("unauthorized_client", replies.STS_CONDITION_FALSE)
