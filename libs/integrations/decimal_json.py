"""JSON for money: every Decimal written exactly as a number ("127.02", never 127.0199999).

QBO checks ``Amount == Qty × UnitPrice`` to the cent (error 6070), so money must never pass
through binary floating point on its way out: floats are refused, not converted.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def dumps(body: Any) -> str:
    """``body`` as compact JSON text; Decimal as exact numbers, dates as ISO 8601 strings."""
    parts: list[str] = []
    _encode(body, parts)
    return "".join(parts)


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot write {value} as JSON")
        out.append(format(value, "f"))  # never exponent notation: 1E+2 -> 100
    elif isinstance(value, float):
        raise TypeError("floats are not allowed in a request body: use Decimal")
    elif value is None or isinstance(value, bool | int | str):
        out.append(json.dumps(value))
    elif isinstance(value, datetime | date):
        out.append(json.dumps(value.isoformat()))
    elif isinstance(value, dict):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings (got {key!r})")
            out.append(("," if index else "") + json.dumps(key) + ":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot write {type(value).__name__} as JSON")
