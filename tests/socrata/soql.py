"""A small SoQL parser: the `$select`, `$where`, `$group` and `$order` the pipeline sends."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

TRUNC_FUNCTIONS = ("date_trunc_ym", "date_trunc_ymd", "date_trunc_y")
AGGREGATE_FUNCTIONS = ("max", "min")
COMPARISONS = (">=", "<=", "!=", "<>", "=", ">", "<")

TOKEN_RE = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^']|'')*')
    | (?P<number>-?\d+(?:\.\d+)?)
    | (?P<sysstar>:\*)
    | (?P<ident>:?[A-Za-z_@][A-Za-z0-9_]*|`[^`]+`)
    | (?P<op>>=|<=|!=|<>|=|>|<)
    | (?P<punct>[(),*])
    )""",
    re.VERBOSE,
)


class SoqlError(Exception):
    """A query the server refuses with HTTP 400, carrying Socrata's error code and body."""

    def __init__(self, code: str, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "error": True, "message": self.message, "data": self.data}


def malformed(message: str, text: str = "", position: int = 0) -> SoqlError:
    return SoqlError("query.compiler.malformed", message, _position(text, position))


def type_mismatch(message: str, text: str = "", position: int = 0) -> SoqlError:
    return SoqlError("query.soql.type-mismatch", message, _position(text, position))


def no_such_column(name: str, dataset: str, text: str = "", position: int = 0) -> SoqlError:
    data = {"column": name, "dataset": dataset, **_position(text, position)}
    return SoqlError("query.soql.no-such-column", f"No such column: {name}", data)


def _position(text: str, position: int) -> dict[str, Any]:
    return {"position": {"row": 1, "column": position + 1, "line": f"{text}\n{' ' * position}^"}}


@dataclass(frozen=True)
class Column:
    name: str
    position: int = field(default=0, compare=False)
    text: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class Trunc:
    function: str
    column: Column


@dataclass(frozen=True)
class CountAll:
    pass


@dataclass(frozen=True)
class Aggregate:
    """max(col) or min(col): compared as text, which orders ISO timestamps correctly."""

    function: str
    column: Column


@dataclass(frozen=True)
class Star:
    system: bool


Expr = Column | Trunc | CountAll | Aggregate


@dataclass(frozen=True)
class SelectItem:
    expr: Expr | Star
    alias: str | None


@dataclass(frozen=True)
class Literal:
    value: str
    is_number: bool
    position: int = field(default=0, compare=False)
    text: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class Compare:
    expr: Expr
    op: str
    literal: Literal


@dataclass(frozen=True)
class IsNull:
    expr: Expr
    negated: bool


@dataclass(frozen=True)
class Between:
    expr: Expr
    low: Literal
    high: Literal
    negated: bool


@dataclass(frozen=True)
class InList:
    expr: Expr
    values: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True)
class BoolOp:
    op: str
    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    part: Condition


Condition = Compare | IsNull | Between | InList | BoolOp | Not


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    position: int

    @property
    def word(self) -> str:
        return self.text.lower() if self.kind == "ident" else ""


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while text[position:].strip():
        match = TOKEN_RE.match(text, position)
        if match is None or match.lastgroup is None:
            start = len(text) - len(text[position:].lstrip())
            raise malformed(f"Unexpected character at {start + 1}", text, start)
        kind = match.lastgroup
        tokens.append(Token(kind, match.group(kind), match.start(kind)))
        position = match.end()
    tokens.append(Token("eof", "", len(text)))
    return tokens


class Parser:
    """Recursive descent over one parameter; keywords and identifiers are case-insensitive."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept_word(self, *words: str) -> bool:
        if self.peek().word in words:
            self.index += 1
            return True
        return False

    def expect(self, kind: str, text: str | None = None) -> Token:
        token = self.advance()
        if token.kind != kind or (text is not None and token.text != text):
            wanted = text or kind
            got = token.text or "end of input"
            raise malformed(f"Expected {wanted}, but got `{got}'", self.text, token.position)
        return token

    def finish(self) -> None:
        token = self.peek()
        if token.kind != "eof":
            raise malformed(f"Unexpected `{token.text}'", self.text, token.position)

    def comma_list(self, parse_one: Any) -> list[Any]:
        items = [parse_one()]
        while self.peek().kind == "punct" and self.peek().text == ",":
            self.advance()
            items.append(parse_one())
        self.finish()
        return items

    def expr(self) -> Expr:
        token = self.advance()
        if token.kind != "ident":
            got = token.text or "end of input"
            raise malformed(f"Expected a column, but got `{got}'", self.text, token.position)
        name = token.text.strip("`").lower()
        if self.peek().kind == "punct" and self.peek().text == "(":
            return self.call(name, token)
        return Column(name, token.position, self.text)

    def call(self, name: str, token: Token) -> Expr:
        self.advance()
        if name == "count" and self.peek().text == "*":
            self.advance()
            self.expect("punct", ")")
            return CountAll()
        if name in AGGREGATE_FUNCTIONS:
            argument = self.expr()
            self.expect("punct", ")")
            if not isinstance(argument, Column):
                raise type_mismatch(f"{name} needs a column", self.text, token.position)
            return Aggregate(name, argument)
        if name not in TRUNC_FUNCTIONS:
            raise SoqlError(
                "query.soql.no-such-function",
                f"No such function: {name}",
                _position(self.text, token.position),
            )
        argument = self.expr()
        self.expect("punct", ")")
        if not isinstance(argument, Column):
            raise type_mismatch(f"{name} needs a column", self.text, token.position)
        return Trunc(name, argument)

    def select_item(self) -> SelectItem:
        token = self.peek()
        if token.kind == "punct" and token.text == "*":
            self.advance()
            return SelectItem(Star(system=False), None)
        if token.kind == "sysstar":
            self.advance()
            return SelectItem(Star(system=True), None)
        expr = self.expr()
        alias = None
        if self.accept_word("as"):
            alias = self.expect("ident").text.strip("`").lower()
        return SelectItem(expr, alias)

    def order_item(self) -> tuple[Expr, bool]:
        expr = self.expr()
        if self.accept_word("desc"):
            return expr, True
        self.accept_word("asc")
        return expr, False

    def condition(self) -> Condition:
        parts = [self.conjunction()]
        while self.accept_word("or"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))

    def conjunction(self) -> Condition:
        parts = [self.negation()]
        while self.accept_word("and"):
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def negation(self) -> Condition:
        if self.accept_word("not"):
            return Not(self.negation())
        token = self.peek()
        if token.kind == "punct" and token.text == "(":
            self.advance()
            inner = self.condition()
            self.expect("punct", ")")
            return inner
        return self.predicate()

    def predicate(self) -> Condition:
        expr = self.expr()
        token = self.peek()
        if token.kind == "op":
            self.advance()
            return Compare(expr, "!=" if token.text == "<>" else token.text, self.literal())
        if self.accept_word("is"):
            negated = self.accept_word("not")
            if not self.accept_word("null"):
                raise malformed("Expected NULL after IS", self.text, self.peek().position)
            return IsNull(expr, negated)
        negated = self.accept_word("not")
        if self.accept_word("between"):
            low = self.literal()
            if not self.accept_word("and"):
                raise malformed("Expected AND in BETWEEN", self.text, self.peek().position)
            return Between(expr, low, self.literal(), negated)
        if self.accept_word("in"):
            self.expect("punct", "(")
            values = [self.literal()]
            while self.peek().text == ",":
                self.advance()
                values.append(self.literal())
            self.expect("punct", ")")
            return InList(expr, tuple(values), negated)
        got = self.peek().text or "end of input"
        raise malformed(f"Expected an operator, but got `{got}'", self.text, self.peek().position)

    def literal(self) -> Literal:
        token = self.advance()
        if token.kind == "string":
            value = token.text[1:-1].replace("''", "'")
            return Literal(value, False, token.position, self.text)
        if token.kind == "number":
            return Literal(token.text, True, token.position, self.text)
        got = token.text or "end of input"
        raise malformed(f"Expected a literal, but got `{got}'", self.text, token.position)


def parse_select(text: str) -> list[SelectItem]:
    parser = Parser(text)
    return parser.comma_list(parser.select_item)


def parse_where(text: str) -> Condition:
    parser = Parser(text)
    condition = parser.condition()
    parser.finish()
    return condition


def parse_group(text: str) -> list[Expr]:
    parser = Parser(text)
    return parser.comma_list(parser.expr)


def parse_order(text: str) -> list[tuple[Expr, bool]]:
    parser = Parser(text)
    return parser.comma_list(parser.order_item)
