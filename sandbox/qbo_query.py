"""A real (small) parser and evaluator for the QBO query language.

``SELECT * | COUNT(*) FROM <Entity> [WHERE <field> <op> <value> [AND ...]]
[ORDERBY <field> [ASC|DESC][, ...]] [STARTPOSITION n] [MAXRESULTS n]`` with the operators
``= < > <= >= IN LIKE`` (``LIKE`` knows only ``%``), quoted strings with ``\\'`` escapes, numbers,
``true``/``false``; keywords, names and values are case-insensitive, as QBO documents.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_RESULTS = 1000
DEFAULT_MAX_RESULTS = 100


class QueryError(Exception):
    """A query QBO would refuse: ``code`` 4000 (cannot be parsed) or 4001 (invalid)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass
class Condition:
    field: str
    op: str
    values: list[Any]


@dataclass
class Query:
    entity: str
    count: bool = False
    conditions: list[Condition] = field(default_factory=list)
    order_by: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    start_position: int = 1
    max_results: int = DEFAULT_MAX_RESULTS


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:\\.|[^'\\])*')
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<punct>[(),*])
      | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
      | (?P<word>[A-Za-z_][\w.]*)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos, text = [], 0, text.strip().rstrip(";")
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise QueryError(
                "4000", f'QueryParserError: Encountered "{text[pos : pos + 20]}" at column {pos + 1}'
            )
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1])


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def next(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise QueryError("4000", "QueryParserError: Encountered <EOF> where more was expected")
        self.pos += 1
        return token

    def keyword(self, *words: str) -> bool:
        token = self.peek()
        if token and token[0] == "word" and token[1].upper() in words:
            self.pos += 1
            return True
        return False

    def expect_keyword(self, word: str) -> None:
        if not self.keyword(word):
            found = self.peek()
            raise QueryError(
                "4000", f"QueryParserError: Expected {word}, found {found[1] if found else '<EOF>'}"
            )

    def value(self) -> Any:
        kind, text = self.next()
        if kind == "string":
            return _unquote(text)
        if kind == "number":
            return Decimal(text)
        if kind == "word" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise QueryError("4000", f'QueryParserError: Encountered "{text}" where a value was expected')

    def integer(self, what: str) -> int:
        kind, text = self.next()
        if kind == "string":
            text = _unquote(text)
        if not re.fullmatch(r"\d+", text):
            raise QueryError("4000", f"QueryParserError: {what} needs a whole number (got {text!r})")
        return int(text)

    def parse(self) -> Query:
        self.expect_keyword("SELECT")
        count = False
        token = self.next()
        if token == ("punct", "*"):
            # python-quickbooks' Item queries send ``SELECT *, Sku FROM Item`` and real QBO answers
            # them (DESIGN §7): extra columns after ``*`` are accepted; every field comes back anyway.
            while self.peek() == ("punct", ","):
                self.next()
                kind, name = self.next()
                if kind != "word":
                    raise QueryError("4000", f'QueryParserError: Encountered "{name}" in the select list')
        elif token[0] == "word" and token[1].upper() == "COUNT":
            if [self.next(), self.next(), self.next()] != [("punct", "("), ("punct", "*"), ("punct", ")")]:
                raise QueryError("4000", "QueryParserError: COUNT needs (*)")
            count = True
        else:
            raise QueryError("4001", "QueryValidationError: only SELECT * and SELECT COUNT(*) are supported")
        self.expect_keyword("FROM")
        kind, entity = self.next()
        if kind != "word":
            raise QueryError("4000", f'QueryParserError: Encountered "{entity}" where an entity was expected')
        query = Query(entity=entity, count=count)
        if self.keyword("WHERE"):
            query.conditions.append(self.condition())
            while self.keyword("AND"):
                query.conditions.append(self.condition())
            if self.keyword("OR"):
                raise QueryError("4000", "QueryParserError: OR is not supported")
        if self.keyword("ORDERBY") or (self.keyword("ORDER") and self._by()):
            while True:
                kind, name = self.next()
                if kind != "word":
                    raise QueryError("4000", f'QueryParserError: Encountered "{name}" in ORDERBY')
                descending = self.keyword("DESC")
                if not descending:
                    self.keyword("ASC")
                query.order_by.append((name, descending))
                if self.peek() != ("punct", ","):
                    break
                self.next()
        seen: set[str] = set()
        while (
            (token := self.peek()) is not None
            and token[0] == "word"
            and token[1].upper() in ("STARTPOSITION", "MAXRESULTS")
        ):
            word = self.next()[1].upper()
            if word in seen:
                raise QueryError("4000", f"QueryParserError: {word} appears twice")
            seen.add(word)
            if word == "STARTPOSITION":
                query.start_position = max(self.integer("STARTPOSITION"), 1)
                continue
            query.max_results = self.integer("MAXRESULTS")
            if query.max_results > MAX_RESULTS:
                raise QueryError(
                    "4001",
                    f"QueryValidationError: value {query.max_results} is too large. Max allowed value is: {MAX_RESULTS}",
                )
        if self.peek() is not None:
            raise QueryError(
                "4000", f'QueryParserError: Encountered "{self.peek()[1]}" after the end of the query'
            )
        return query

    def _by(self) -> bool:
        self.expect_keyword("BY")
        return True

    def condition(self) -> Condition:
        kind, name = self.next()
        if kind != "word":
            raise QueryError("4000", f'QueryParserError: Encountered "{name}" where a property was expected')
        token = self.next()
        if token[0] == "op":
            op = token[1]
            if op in ("!=", "<>"):
                raise QueryError("4000", f"QueryParserError: operator {op} is not supported")
            return Condition(name, op, [self.value()])
        if token[0] == "word" and token[1].upper() == "LIKE":
            value = self.value()
            if not isinstance(value, str):
                raise QueryError("4000", "QueryParserError: LIKE needs a quoted string")
            return Condition(name, "LIKE", [value])
        if token[0] == "word" and token[1].upper() == "IN":
            if self.next() != ("punct", "("):
                raise QueryError("4000", "QueryParserError: IN needs a list in parentheses")
            values = [self.value()]
            while self.peek() == ("punct", ","):
                self.next()
                values.append(self.value())
            if self.next() != ("punct", ")"):
                raise QueryError("4000", "QueryParserError: IN list is not closed")
            return Condition(name, "IN", values)
        raise QueryError("4000", f'QueryParserError: Encountered "{token[1]}" where an operator was expected')


def parse(text: str) -> Query:
    if not text or not text.strip():
        raise QueryError("4000", "QueryParserError: the query is empty")
    return _Parser(text).parse()


def resolve(row: dict[str, Any], dotted: str) -> Any:
    """A field by case-insensitive (dotted) name; references ({"value": ...}) compare by value."""
    current: Any = row
    for part in dotted.split("."):
        if not isinstance(current, dict):
            return None
        key = next((k for k in current if k.lower() == part.lower()), None)
        if key is None:
            return None
        current = current[key]
    if isinstance(current, dict) and "value" in current:
        current = current["value"]
    return current


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _compare(actual: Any, op: str, wanted: Any) -> bool:
    if actual is None:
        return False
    if isinstance(actual, bool) or isinstance(wanted, bool):
        flag = str(wanted).lower() == "true" if not isinstance(wanted, bool) else wanted
        return op == "=" and actual == flag
    left_number, right_number = _number(actual), _number(wanted)
    if isinstance(actual, int | float | Decimal) and left_number is not None and right_number is not None:
        left, right = left_number, right_number
    else:
        left, right = str(actual).casefold(), str(wanted).casefold()
    return {
        "=": left == right,
        "<": left < right,
        ">": left > right,
        "<=": left <= right,
        ">=": left >= right,
    }[op]


def _like(actual: Any, pattern: str) -> bool:
    if actual is None:
        return False
    regex = "^" + ".*".join(re.escape(part) for part in pattern.split("%")) + "$"
    return re.match(regex, str(actual), re.IGNORECASE | re.DOTALL) is not None


def matches(row: dict[str, Any], condition: Condition) -> bool:
    actual = resolve(row, condition.field)
    if condition.op == "IN":
        return any(_compare(actual, "=", value) for value in condition.values)
    if condition.op == "LIKE":
        return _like(actual, condition.values[0])
    return _compare(actual, condition.op, condition.values[0])


_UNORDERED = random.Random()


def _sort_key(value: Any) -> tuple[int, Any]:
    """Numbers (and numeric strings such as Ids) sort numerically, everything else as text."""
    if value is None:
        return (0, "")
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return (1, Decimal(str(value)))
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
        return (1, Decimal(value))
    return (2, str(value).casefold())


def run(
    query: Query, rows: list[dict[str, Any]], *, default_active_only: bool
) -> tuple[list[dict[str, Any]], int]:
    """Filter, sort and page ``rows``; return (page, total matching)."""
    selected = [row for row in rows if all(matches(row, c) for c in query.conditions)]
    if default_active_only and not any(c.field.lower() == "active" for c in query.conditions):
        selected = [row for row in selected if row.get("Active", True) is not False]
    if not query.order_by:
        # Intuit documents no default order [QUERY]: without ORDERBY each call gets its own order,
        # so a caller that pages without one sees rows repeat and go missing, as it could in QBO.
        _UNORDERED.shuffle(selected)
    for name, descending in reversed(query.order_by):
        selected.sort(key=lambda row, name=name: _sort_key(resolve(row, name)), reverse=descending)
    start = query.start_position - 1
    return selected[start : start + query.max_results], len(selected)
