"""The client number and the invoice marker: one definition, the edge cases the jobs disagreed on."""

from __future__ import annotations

import pytest

from integrations.identifiers import (
    InvoiceMarker,
    find_marker,
    has_marker,
    invoice_marker,
    is_client_number,
    leading_client_number,
)


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("10002 - Acme CPA", "10002"),
        ("  10002 Acme", "10002"),
        ("  10002Acme", "10002"),
        ("１０００２ - fullwidth digits", None),
        ("10002", "10002"),
        ("10002_x", "10002"),
        ("10002-Acme", "10002"),
        ("100021 Other", "100021"),
        ("12 Small", None),
        ("Acme 10002", None),
        ("١٠٠٠٢ - Arabic-Indic digits", None),
        ("12345678901 too long", None),
        ("", None),
        (None, None),
    ],
)
def test_leading_client_number(name, number):
    assert leading_client_number(name) == number


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("10002", True),
        ("123", True),
        ("1234567890", True),
        ("12", False),
        (" 10002", False),
        ("10002x", False),
        ("10002_x", False),
        ("١٠٠٠٢", False),
        (10002, False),
    ],
)
def test_is_client_number(value, valid):
    assert is_client_number(value) is valid


def test_the_marker_is_written_and_found_again_as_a_whole_word():
    marker = invoice_marker("10002", "2026-10")
    assert marker == "invoice-processor:10002:2026-10"
    assert find_marker(f"{marker} (created by the invoice processor)") == InvoiceMarker("10002", "2026-10")
    assert find_marker(f"Voided {marker}") == InvoiceMarker("10002", "2026-10")
    assert has_marker(f"Voided {marker}", "10002", "2026-10")
    assert not has_marker(marker, "1000", "2026-10")
    assert not has_marker(marker, "10002", "2026-01")
    assert not has_marker(None, "10002", "2026-10")
    assert find_marker(f"x{marker}") is None
    assert find_marker("invoice-processor:10002:2026-13") is None


def test_a_marker_cannot_be_built_from_garbage():
    with pytest.raises(ValueError):
        invoice_marker("10 02", "2026-10")
    with pytest.raises(ValueError):
        invoice_marker("10002", "2026-1")
