"""A small EventBridge event-pattern matcher for tests.

moto neither implements TestEventPattern nor descends into arrays of objects, so the alert
rule's pattern is checked here instead. Semantics follow the EventBridge documentation:

* a pattern is an object; every key must match (AND); ``$or`` holds alternative sub-patterns;
* a leaf is a list of matchers, any of which may match (OR): literal values (strings, numbers
  compared numerically, booleans, null) or one-key objects ``anything-but``, ``prefix``,
  ``exists``;
* arrays in the event are flattened: a leaf matches if ANY value at that path matches, and a
  nested pattern under an array of objects is matched against the values of all elements;
* a field missing from the event matches only ``{"exists": false}``.

Unsupported operators raise ``ValueError`` so a pattern this matcher cannot judge fails loudly
instead of being reported as (not) matching.
"""

from __future__ import annotations

from typing import Any


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """True when ``event`` matches the EventBridge ``pattern``."""
    return _match_object(pattern, [event])


def _match_object(pattern: dict[str, Any], nodes: list[Any]) -> bool:
    for key, rule in pattern.items():
        if key == "$or":
            if not isinstance(rule, list) or len(rule) < 2:
                raise ValueError("$or needs a list of at least two sub-patterns")
            if not any(_match_object(alternative, nodes) for alternative in rule):
                return False
            continue
        values = _values_at(nodes, key)
        if isinstance(rule, dict):
            objects = [v for v in values if isinstance(v, dict)]
            if not objects or not _match_object(rule, objects):
                return False
        elif isinstance(rule, list):
            if not _match_leaf(rule, values):
                return False
        else:
            raise ValueError(f"pattern value for {key!r} must be a list or an object, got {rule!r}")
    return True


def _values_at(nodes: list[Any], key: str) -> list[Any]:
    """Every value of ``key`` across the given objects, with arrays flattened."""
    found: list[Any] = []
    for node in nodes:
        if not isinstance(node, dict) or key not in node:
            continue
        value = node[key]
        found.extend(_flatten(value))
    return found


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        out: list[Any] = []
        for item in value:
            out.extend(_flatten(item))
        return out
    return [value]


def _match_leaf(matchers: list[Any], values: list[Any]) -> bool:
    for matcher in matchers:
        if isinstance(matcher, dict):
            if _match_operator(matcher, values):
                return True
        elif any(_equal(matcher, value) for value in values):
            return True
    return False


def _match_operator(matcher: dict[str, Any], values: list[Any]) -> bool:
    if len(matcher) != 1:
        raise ValueError(f"a content filter has exactly one operator, got {matcher!r}")
    (operator, argument), *_ = matcher.items()
    if operator == "exists":
        return bool(values) is bool(argument)
    if operator == "prefix":
        return any(isinstance(v, str) and v.startswith(argument) for v in values)
    if operator == "anything-but":
        if isinstance(argument, dict):
            if set(argument) != {"prefix"}:
                raise ValueError(f"unsupported anything-but form {argument!r}")
            return any(isinstance(v, str) and not v.startswith(argument["prefix"]) for v in values)
        excluded = argument if isinstance(argument, list) else [argument]
        return any(not any(_equal(x, v) for x in excluded) for v in values)
    raise ValueError(f"operator {operator!r} is not supported by this matcher")


def _equal(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return float(expected) == float(actual)
    if expected is None or actual is None:
        return expected is None and actual is None
    return type(expected) is type(actual) and expected == actual
