"""The one log sink: JSON lines or readable text, and no registered secret in any line of either."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator

import pytest
from loguru import logger

from integrations.logging import MASK, mask, register_secret, setup_logging

SECRETS = {
    "plain": "AB11-refresh-token-value",
    "quoted": 'client"secret"value',
    "backslashed": "back\\slash\\secret",
    "non_ascii": 'pässwörd"with-quote',
    "newline": "multi\nline-secret",
}


@pytest.fixture(autouse=True)
def _restore_loguru() -> Iterator[None]:
    yield
    logger.remove()
    logger.add(sys.stderr)


def spellings(value: str) -> set[str]:
    """Every way a value can appear in our output: raw, JSON-escaped (ASCII or not), repr."""
    return {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1], repr(value)[1:-1]}


def log_everything(secrets: dict[str, str]) -> None:
    """Put the secrets in a message, in extra fields and in an exception with traceback locals."""
    logger.info("token is {token}", token=secrets["plain"])
    logger.info("plain message with " + secrets["quoted"])
    logger.bind(credentials=dict(secrets)).info("bound extras")
    logger.warning(
        "extras", password=secrets["backslashed"], other=secrets["non_ascii"], text=secrets["newline"]
    )

    def refresh(refresh_token: str) -> None:
        client_secret = secrets["quoted"]  # noqa: F841 - a local the traceback could show
        raise RuntimeError(f"refresh failed for {refresh_token} / {secrets['non_ascii']}")

    try:
        refresh(secrets["plain"])
    except RuntimeError:
        logger.exception("refresh crashed")
    try:
        raise KeyError(secrets["backslashed"])
    except KeyError as exc:
        logger.opt(exception=exc).error("lookup failed: {}", exc)


def test_json_mode_writes_one_json_object_per_line() -> None:
    out = io.StringIO()
    setup_logging("json", "INFO", stream=out)
    logger.info("created invoice {number}", number="10002-202610", client="10002")
    logger.debug("not shown at INFO")
    logger.warning("multi\nline message")

    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["record"]["message"] == "created invoice 10002-202610"
    assert first["record"]["extra"] == {"number": "10002-202610", "client": "10002"}
    assert first["record"]["level"]["name"] == "INFO"
    assert second["record"]["message"] == "multi\nline message"


def test_pretty_mode_writes_readable_lines_with_context_fields_not_already_in_the_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = io.StringIO()
    setup_logging("pretty", "DEBUG", stream=out)
    logger.info("created invoice {number}", number="10002-202610", client="10002")
    logger.debug("no extras")

    lines = out.getvalue().splitlines()
    assert lines[0].endswith("INFO    created invoice 10002-202610 client=10002")
    assert lines[1].endswith("DEBUG   no extras")
    assert "Logging error" not in capsys.readouterr().err  # the format itself must never fail


def test_pretty_mode_shows_the_traceback() -> None:
    out = io.StringIO()
    setup_logging("pretty", "INFO", stream=out)
    try:
        raise ValueError("bad amount")
    except ValueError:
        logger.exception("pricing failed")
    text = out.getvalue()
    assert "ERROR   pricing failed" in text
    assert "Traceback" in text and "ValueError: bad amount" in text


@pytest.mark.parametrize("fmt", ["json", "pretty"])
def test_no_registered_secret_appears_in_any_output_line(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = io.StringIO()
    setup_logging(fmt, "DEBUG", stream=out)
    register_secret(SECRETS)

    log_everything(SECRETS)

    text = out.getvalue()
    leaked_to_stderr = capsys.readouterr().err  # loguru reports sink/format errors there, unmasked
    assert "refresh crashed" in text and "lookup failed" in text
    assert text.count(MASK) >= 8
    for name, value in SECRETS.items():
        for spelling in spellings(value):
            assert spelling not in text, f"{name} leaked as {spelling!r}"
            assert spelling not in leaked_to_stderr, f"{name} leaked to stderr as {spelling!r}"
    if fmt == "json":
        for line in text.splitlines():
            json.loads(line)  # masking kept every line valid JSON


def test_secret_registered_later_is_masked_from_then_on() -> None:
    out = io.StringIO()
    setup_logging("json", "INFO", stream=out)
    logger.info("before: rotated-token-0002")
    register_secret("rotated-token-0002")
    logger.info("after: rotated-token-0002")
    before, after = out.getvalue().splitlines()
    assert "rotated-token-0002" in before  # not a secret yet: nothing to hide
    assert "rotated-token-0002" not in after


def test_json_escaped_forms_of_secrets_are_masked() -> None:
    register_secret(SECRETS["quoted"], SECRETS["backslashed"], SECRETS["non_ascii"])
    for value in (SECRETS["quoted"], SECRETS["backslashed"], SECRETS["non_ascii"]):
        assert mask(value) == MASK
        assert mask(json.dumps({"v": value})) == json.dumps({"v": MASK})
        assert mask(json.dumps({"v": value}, ensure_ascii=False)) == json.dumps({"v": MASK})


def test_register_takes_dicts_and_lists_and_ignores_short_values() -> None:
    register_secret(
        {"api_token": "pk_12345_ABCDEF", "nested": ["key-number-one", {"k": "key-number-two"}]}, 12345
    )
    register_secret("10000", "true")  # ids and flags: too short to be secrets, too common to mask
    assert mask("pk_12345_ABCDEF key-number-one key-number-two") == "*** *** ***"
    assert mask("client 10000 active true") == "client 10000 active true"


def test_a_secret_containing_another_is_masked_whole() -> None:
    register_secret("abcdef", "abcdef-and-more")
    assert mask("x abcdef-and-more y abcdef") == "x *** y ***"
