"""Finding the QBO customer of a registry client."""

from __future__ import annotations

import pytest

from create_invoices.customers import (
    AmbiguousCustomer,
    CustomerProblem,
    InactiveCustomer,
    UnknownCustomer,
    match_customer,
)
from integrations.models import ClientRecord


def customer(cid: str, name: str, active: bool = True, email: str | None = None) -> dict:
    found = {"Id": cid, "DisplayName": name, "Active": active}
    if email:
        found["PrimaryEmailAddr"] = {"Address": email}
    return found


CUSTOMERS = [
    customer("1", "Amy's Bird Sanctuary"),
    customer("2", "10002 - Acme CPA", email="ap@acme.example"),
    customer("3", "100021 - Other Co"),
    customer("4", "10005 - O'Brien & Søn Ltd"),
    customer("5", "10007 - Old Client (deleted)", active=False),
]


def test_by_display_name_ignoring_case_and_surrounding_spaces():
    client = ClientRecord("10005", customer_name="  10005 - o'brien & SØN ltd ")
    assert match_customer(client, CUSTOMERS)["Id"] == "4"


def test_by_display_name_even_when_it_does_not_start_with_the_client_number():
    assert match_customer(ClientRecord("10009", customer_name="Amy's Bird Sanctuary"), CUSTOMERS)["Id"] == "1"


def test_by_client_number_prefix_when_no_name_is_registered():
    assert match_customer(ClientRecord("10002"), CUSTOMERS)["Id"] == "2"
    assert match_customer(ClientRecord("100021"), CUSTOMERS)["Id"] == "3"


@pytest.mark.parametrize("name", ["10002 - Acme", "10002 Acme", "10002Acme", " 10002-Acme", "10002"])
def test_prefix_is_the_number_followed_by_a_non_digit(name):
    assert match_customer(ClientRecord("10002"), [customer("9", name)])["Id"] == "9"


def test_a_longer_number_is_not_the_client():
    with pytest.raises(UnknownCustomer):
        match_customer(
            ClientRecord("10002"), [customer("3", "100021 - Other Co"), customer("1", "Acme 10002")]
        )


def test_an_unknown_name_names_the_client_and_the_name_looked_for():
    with pytest.raises(UnknownCustomer) as caught:
        match_customer(ClientRecord("10008", customer_name="10008 - Nobody's Ltd"), CUSTOMERS)
    message = str(caught.value)
    assert "10008" in message and "10008 - Nobody's Ltd" in message
    assert isinstance(caught.value, CustomerProblem) and isinstance(caught.value, ValueError)
    assert caught.value.client_id == "10008"


def test_an_unknown_client_number_says_what_was_looked_for():
    with pytest.raises(UnknownCustomer, match="starts with the client number 10006"):
        match_customer(ClientRecord("10006"), CUSTOMERS)


def test_an_inactive_customer_cannot_be_invoiced():
    customers = [customer("6", "10006 - Gone Ltd", active=False)]
    with pytest.raises(InactiveCustomer, match="inactive"):
        match_customer(ClientRecord("10006", customer_name="10006 - Gone Ltd"), customers)
    with pytest.raises(InactiveCustomer, match="10006"):
        match_customer(ClientRecord("10006"), customers)


def test_a_customer_qbo_renamed_deleted_is_reported_inactive_not_unknown():
    with pytest.raises(InactiveCustomer, match="10007 - Old Client"):
        match_customer(ClientRecord("10007", customer_name="10007 - Old Client"), CUSTOMERS)


def test_the_active_customer_wins_over_an_inactive_one_with_the_same_prefix():
    customers = [customer("6", "10006 - Old name", active=False), customer("7", "10006 - New name")]
    assert match_customer(ClientRecord("10006"), customers)["Id"] == "7"


def test_several_active_customers_with_the_prefix_are_ambiguous():
    customers = [customer("6", "10006 - Gone Ltd"), customer("7", "10006 - Gone Ltd (US)")]
    with pytest.raises(AmbiguousCustomer) as caught:
        match_customer(ClientRecord("10006"), customers)
    message = str(caught.value)
    assert "10006 - Gone Ltd" in message and "10006 - Gone Ltd (US)" in message and "customer_name" in message
    assert [c["Id"] for c in caught.value.candidates] == ["6", "7"]


def test_a_customer_without_active_flag_counts_as_active():
    assert match_customer(ClientRecord("10002"), [{"Id": "2", "DisplayName": "10002 - Acme"}])["Id"] == "2"


def test_a_registry_name_that_points_at_another_clients_customer_is_refused():
    customers = [customer("2", "10002 - Acme CPA"), customer("3", "10003 - Birch & Co.")]
    with pytest.raises(UnknownCustomer, match="is client 10003's customer"):
        match_customer(ClientRecord("10002", customer_name="10003 - Birch & Co."), customers)
    assert match_customer(ClientRecord("10002", customer_name="10002 - Acme CPA"), customers)["Id"] == "2"
