"""EventBridge's input transformer, as far as our failure rule uses it, to render a sample event.

moto neither runs input transformers nor delivers events to SNS, so the alert mail a person gets is
rendered here from the applied target's ``input_paths`` and ``input_template``, following the
EventBridge user guide ("Amazon EventBridge input transformation"):

* input paths are JSON paths in dot notation with array indices (``$.detail.containers[0].name``);
  a path that is not in the event defines no variable, and its placeholder is left empty;
* the template is text: EventBridge substitutes ``<name>`` placeholders and sends the rest as it is
  (a template written as a JSON string keeps its quotes and ``\\n`` escapes, which is the bug this
  rendering exists to catch);
* a string value is inserted as is (EventBridge does not escape it); a number as its JSON text; an
  object or array as JSON with its inner quotes removed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_MISSING = object()
_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")


def lookup(event: Any, path: str) -> Any:
    """The value at a dot-notation JSON path, or _MISSING; refuses syntax EventBridge rejects too."""
    if not path.startswith("$"):
        raise ValueError(f"input path {path!r} must start with $")
    value, position = event, 1
    while position < len(path):
        step = _STEP.match(path, position)
        if step is None:
            raise ValueError(f"unsupported input path syntax in {path!r} at {path[position:]!r}")
        key, index = step.groups()
        if key is not None:
            value = value.get(key, _MISSING) if isinstance(value, Mapping) else _MISSING
        else:
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else _MISSING
        if value is _MISSING:
            return _MISSING
        position = step.end()
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value).replace('"', "")
    return json.dumps(value)


def render(input_paths: Mapping[str, str], template: str, event: Mapping[str, Any]) -> str:
    """The message EventBridge would hand to the target for ``event``."""
    values = {name: lookup(event, path) for name, path in input_paths.items()}

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            return match.group(0)  # not a variable: left as written
        value = values[name]
        return "" if value is _MISSING else _text(value)

    return re.sub(r"<([A-Za-z0-9_.-]+)>", fill, template)
