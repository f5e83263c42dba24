"""The one JSON encoder for money, which the QBO client sends every body through."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from integrations import decimal_json

D = Decimal


def test_decimals_are_written_exactly_and_floats_refused():
    text = decimal_json.dumps(
        {
            "Amount": D("127.02"),
            "Qty": D("1"),
            "Big": D("1E+2"),
            "Tiny": D("0.10"),
            "Name": "Søn's",
            "ok": [True, None, 3],
            "TxnDate": date(2026, 11, 4),
        }
    )
    assert text == (
        '{"Amount":127.02,"Qty":1,"Big":100,"Tiny":0.10,"Name":"S\\u00f8n\'s","ok":[true,null,3],'
        '"TxnDate":"2026-11-04"}'
    )
    assert json.loads(text, parse_float=D)["Amount"] == D("127.02")
    with pytest.raises(TypeError, match="float"):
        decimal_json.dumps({"Amount": 127.02})
    with pytest.raises(ValueError):
        decimal_json.dumps({"Amount": D("NaN")})
    with pytest.raises(TypeError):
        decimal_json.dumps({1: "key must be a string"})
