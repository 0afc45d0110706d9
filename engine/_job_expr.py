"""The expression language of job files: conditions and the inside of ``{{ ... }}``.

A small, safe language with its own tokenizer and recursive-descent parser (never Python
``eval``). Grammar, loosest binding first::

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := pipe [("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in") pipe]
    pipe       := primary ("|" NAME ["(" args ")"])*
    args       := [arg ("," arg)*]       arg := [NAME "="] expr
    primary    := NUMBER | STRING | "true" | "false" | "null" | "[" [expr ("," expr)*] "]"
                | "(" expr ")" | "${" NAME "}" | reference
    reference  := NAME ("." NAME | "[" (INTEGER | STRING | "*") "]")*

References read the evaluation context: ``steps.ID.output.PATH``, ``steps.ID.status``,
``trigger.payload.PATH``, ``trigger.source``, ``execution.id``, ``schedule.nominal_time``,
``vars.NAME`` (or ``${NAME}``) and, inside ``for_each``, the item variable. ``[*]`` maps the
rest of the path over every element (JSONPath semantics: the result is a flat list).
Names may contain ``-`` (step ids such as ``fetch-rows``), since the language has no
arithmetic.

Parsing is done once (:func:`compile_expression`, cached) and the tree is evaluated many times
(:meth:`Expression.evaluate`). Every error is a :class:`TemplateError` (an
``InvalidArgumentError``) naming the field and, for syntax errors, the column.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import msgspec

from cadenza.engine._job_filters import FILTERS, localize
from cadenza.engine._job_values import (
    EvalError,
    ExpressionError,
    MissingError,
    SecretRef,
    SecretString,
    TemplateContext,
    TemplateError,
    is_number,
    stringify,
    type_name,
)

__all__ = [
    "ROOT_NAMES",
    "Expression",
    "ExpressionError",
    "Reference",
    "SecretRef",
    "SecretString",
    "TemplateContext",
    "TemplateError",
    "compile_expression",
    "evaluate",
    "expression_references",
    "filter_names",
    "stringify",
]

ROOT_NAMES = frozenset({"steps", "trigger", "execution", "schedule", "vars"})
"""The names a reference may start with (besides a ``for_each`` item variable)."""


class _SyntaxError(Exception):
    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


# --------------------------------------------------------------------------- tokens

_KEYWORDS = {"and", "or", "not", "in", "true", "false", "null"}
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<var>\$\{\s*(?P<varname>[A-Za-z_][A-Za-z0-9_]*)\s*\})
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![A-Za-z0-9_]))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,|\.|\||=|\*)
    """,
    re.VERBOSE,
)
_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "/": "/",
    "0": "\0",
}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # name, keyword, number, string, var, op, end
    text: str
    value: Any
    column: int  # 1-based, relative to the text given to the tokenizer plus offset


def _tokenize(text: str, offset: int) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        column = offset + pos + 1
        if match is None:
            char = text[pos]
            if text.startswith("${", pos):
                raise _SyntaxError("'${' must be followed by a variable name and '}'", column)
            if char in "\"'":
                raise _SyntaxError("unterminated string", column)
            if char in "&!":
                raise _SyntaxError(f"unexpected {char!r}; use 'and', 'or', 'not'", column)
            raise _SyntaxError(f"unexpected character {char!r}", column)
        kind = match.lastgroup
        raw = match.group(0)
        if kind == "varname":  # pragma: no cover - the named group inside var
            kind = "var"
        if kind == "var":
            tokens.append(_Token("var", raw, match.group("varname"), column))
        elif kind == "number":
            number = float(raw) if any(c in raw for c in ".eE") else int(raw)
            tokens.append(_Token("number", raw, number, column))
        elif kind == "name":
            tokens.append(_Token("keyword" if raw in _KEYWORDS else "name", raw, raw, column))
        elif kind == "string":
            tokens.append(_Token("string", raw, _unquote(raw, column), column))
        elif kind == "op":
            tokens.append(_Token("op", raw, raw, column))
        pos = match.end()
    tokens.append(_Token("end", "", None, offset + len(text) + 1))
    return tokens


def _unquote(raw: str, column: int) -> str:
    body = raw[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2 : i + 6]):
            code = int(body[i + 2 : i + 6], 16)
            i += 6
            low = body[i + 2 : i + 6] if body.startswith("\\u", i) else ""
            if 0xD800 <= code < 0xDC00 and re.fullmatch(r"[dD][c-fC-F][0-9a-fA-F]{2}", low):
                code = 0x10000 + ((code - 0xD800) << 10) + (int(low, 16) - 0xDC00)
                i += 6
            out.append(chr(code))
        else:
            raise _SyntaxError(f"unknown escape '\\{nxt}' in string", column + i + 1)
    return "".join(out)


# --------------------------------------------------------------------------- tree


class _Wildcard:
    def __repr__(self) -> str:
        return "[*]"


WILDCARD = _Wildcard()
PathPart = str | int | _Wildcard


@dataclass(frozen=True, slots=True)
class Reference:
    """A name read by an expression: ``steps.fetch.output.rows[0].id``, ``${VAR}``.

    Attributes:
        root: ``steps``, ``trigger``, ``execution``, ``schedule``, ``vars`` or a local name.
        path: The keys and indexes after the root (``WILDCARD`` for ``[*]``).
        column: 1-based column where the reference starts.
    """

    root: str
    path: tuple[PathPart, ...]
    column: int

    @property
    def variable(self) -> str | None:
        """The variable name when this reads a variable, else ``None``."""
        if self.root == "vars" and self.path and isinstance(self.path[0], str):
            return self.path[0]
        return None

    @property
    def step(self) -> str | None:
        """The step id when this reads a step, else ``None``."""
        if self.root == "steps" and self.path and isinstance(self.path[0], str):
            return self.path[0]
        return None

    def __str__(self) -> str:
        return _format_ref(self.root, self.path)


def _format_ref(root: str, path: Sequence[PathPart]) -> str:
    out = [root]
    for part in path:
        if isinstance(part, _Wildcard):
            out.append("[*]")
        elif isinstance(part, int):
            out.append(f"[{part}]")
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*", part):
            out.append("." + part)
        else:
            out.append("[" + json.dumps(part, ensure_ascii=False) + "]")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class _Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class _List:
    items: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Not:
    operand: Any


@dataclass(frozen=True, slots=True)
class _Bool:
    op: str  # and | or
    left: Any
    right: Any


@dataclass(frozen=True, slots=True)
class _Compare:
    op: str
    left: Any
    right: Any
    column: int


@dataclass(frozen=True, slots=True)
class _Filter:
    operand: Any
    name: str
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]
    column: int


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def advance(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def at(self, kind: str, text: str | None = None) -> bool:
        token = self.peek()
        return token.kind == kind and (text is None or token.text == text)

    def expect(self, kind: str, text: str, what: str) -> _Token:
        if not self.at(kind, text):
            token = self.peek()
            raise _SyntaxError(f"expected {what}, found {_describe(token)}", token.column)
        return self.advance()

    def parse(self) -> Any:
        if self.at("end"):
            raise _SyntaxError("empty expression", self.peek().column)
        node = self.parse_or()
        if not self.at("end"):
            token = self.peek()
            raise _SyntaxError(f"unexpected {_describe(token)}", token.column)
        return node

    def parse_or(self) -> Any:
        node = self.parse_and()
        while self.at("keyword", "or"):
            self.advance()
            node = _Bool("or", node, self.parse_and())
        return node

    def parse_and(self) -> Any:
        node = self.parse_not()
        while self.at("keyword", "and"):
            self.advance()
            node = _Bool("and", node, self.parse_not())
        return node

    def parse_not(self) -> Any:
        if self.at("keyword", "not"):
            self.advance()
            return _Not(self.parse_not())
        return self.parse_comparison()

    def _comparison_op(self) -> str | None:
        token = self.peek()
        if token.kind == "op" and token.text in ("==", "!=", "<", "<=", ">", ">="):
            return token.text
        if token.kind == "keyword" and token.text == "in":
            return "in"
        if token.kind == "keyword" and token.text == "not":
            following = self.tokens[self.pos + 1]
            if following.kind == "keyword" and following.text == "in":
                return "not in"
        return None

    def parse_comparison(self) -> Any:
        node = self.parse_pipe()
        op = self._comparison_op()
        if op is None:
            return node
        token = self.advance()
        if op == "not in":
            self.advance()
        right = self.parse_pipe()
        node = _Compare(op, node, right, token.column)
        if self._comparison_op() is not None:
            raise _SyntaxError(
                "chained comparisons are not supported; combine them with 'and'",
                self.peek().column,
            )
        return node

    def parse_pipe(self) -> Any:
        node = self.parse_primary()
        while self.at("op", "|"):
            self.advance()
            token = self.peek()
            if token.kind != "name":
                raise _SyntaxError(
                    f"expected a filter name after '|', found {_describe(token)}", token.column
                )
            self.advance()
            if token.text not in FILTERS:
                raise _SyntaxError(
                    f"unknown filter {token.text!r} (known: {', '.join(sorted(FILTERS))})",
                    token.column,
                )
            args: list[Any] = []
            kwargs: list[tuple[str, Any]] = []
            if self.at("op", "("):
                self.advance()
                while not self.at("op", ")"):
                    if self.at("name") and self.tokens[self.pos + 1].text == "=":
                        key = self.advance().text
                        self.advance()
                        kwargs.append((key, self.parse_or()))
                    else:
                        if kwargs:
                            raise _SyntaxError(
                                "a positional argument cannot follow a keyword argument",
                                self.peek().column,
                            )
                        args.append(self.parse_or())
                    if not self.at("op", ","):
                        break
                    self.advance()
                self.expect("op", ")", "')' to close the filter arguments")
            node = _Filter(node, token.text, tuple(args), tuple(kwargs), token.column)
        return node

    def parse_primary(self) -> Any:
        token = self.peek()
        if token.kind in ("number", "string"):
            self.advance()
            return _Literal(token.value)
        if token.kind == "keyword" and token.text in ("true", "false", "null"):
            self.advance()
            return _Literal({"true": True, "false": False, "null": None}[token.text])
        if token.kind == "var":
            self.advance()
            return Reference("vars", (token.value,), token.column)
        if token.kind == "op" and token.text == "(":
            self.advance()
            node = self.parse_or()
            self.expect("op", ")", "')'")
            return node
        if token.kind == "op" and token.text == "[":
            self.advance()
            items: list[Any] = []
            while not self.at("op", "]"):
                items.append(self.parse_or())
                if not self.at("op", ","):
                    break
                self.advance()
            self.expect("op", "]", "']' to close the list")
            return _List(tuple(items))
        if token.kind == "name":
            return self.parse_reference()
        raise _SyntaxError(f"expected a value, found {_describe(token)}", token.column)

    def parse_reference(self) -> Reference:
        start = self.advance()
        path: list[PathPart] = []
        while True:
            if self.at("op", "."):
                self.advance()
                token = self.peek()
                if token.kind not in ("name", "keyword"):
                    raise _SyntaxError(
                        f"expected a name after '.', found {_describe(token)}", token.column
                    )
                self.advance()
                path.append(token.text)
            elif self.at("op", "["):
                self.advance()
                token = self.peek()
                if token.kind == "op" and token.text == "*":
                    path.append(WILDCARD)
                elif token.kind == "string" or (
                    token.kind == "number" and isinstance(token.value, int)
                ):
                    path.append(token.value)
                else:
                    raise _SyntaxError(
                        f"expected an integer index, a quoted key or '*' inside [], "
                        f"found {_describe(token)}",
                        token.column,
                    )
                self.advance()
                self.expect("op", "]", "']'")
            else:
                return Reference(start.text, tuple(path), start.column)


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the expression"
    return repr(token.text)


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True, slots=True)
class Expression:
    """A parsed expression: evaluate it many times against different contexts.

    Attributes:
        source: The text it was parsed from.
        tree: The syntax tree (private node classes).
    """

    source: str
    tree: Any

    def evaluate(self, context: TemplateContext, *, field: str = "expression") -> Any:
        """Evaluate to a value (not coerced to bool).

        Raises:
            TemplateError: A reference cannot be resolved, or an operation does not apply.
        """
        try:
            return _eval(self.tree, context)
        except EvalError as exc:
            raise TemplateError(field, exc.message, reference=exc.reference) from None

    def references(self) -> list[Reference]:
        """Every reference in the expression, in source order."""
        return list(_walk_references(self.tree))


def _parse(text: str, offset: int) -> Any:
    return _Parser(_tokenize(text, offset)).parse()


@functools.lru_cache(maxsize=4096)
def _compile_cached(text: str) -> Expression | _SyntaxError:
    try:
        return Expression(text, _parse(text, 0))
    except _SyntaxError as exc:
        return exc


def compile_expression(text: str, *, field: str = "expression") -> Expression:
    """Parse ``text`` once (results are cached by text).

    Raises:
        ExpressionError: The text does not parse; the reason gives the column.
    """
    if not isinstance(text, str):
        raise ExpressionError(field, f"expected a string, got {type(text).__name__}")
    result = _compile_cached(text)
    if isinstance(result, _SyntaxError):
        raise ExpressionError(
            field, f"{result.message} at column {result.column}", column=result.column
        )
    return result


def evaluate(condition: str, context: TemplateContext, *, field: str = "when") -> bool:
    """Evaluate a condition and return its truth value.

    Truth follows Python: ``false``, ``null``, ``0``, empty strings, lists and mappings are
    false. Secret variables cannot be used in a condition.

    Raises:
        ExpressionError: The condition does not parse or cannot be evaluated.
    """
    expression = compile_expression(condition, field=field)
    try:
        return _truthy(_eval(expression.tree, context))
    except EvalError as exc:
        raise ExpressionError(field, exc.message, reference=exc.reference) from None


def expression_references(text: str, *, field: str = "expression") -> list[Reference]:
    """The references of an expression (for lint: unknown variables and steps).

    Raises:
        ExpressionError: The text does not parse.
    """
    return compile_expression(text, field=field).references()


def filter_names() -> list[str]:
    """Names of the filters usable after ``|``."""
    return sorted(FILTERS)


def _walk_references(node: Any) -> Iterator[Reference]:
    if isinstance(node, Reference):
        yield node
    elif isinstance(node, _List):
        for item in node.items:
            yield from _walk_references(item)
    elif isinstance(node, _Not):
        yield from _walk_references(node.operand)
    elif isinstance(node, _Bool | _Compare):
        yield from _walk_references(node.left)
        yield from _walk_references(node.right)
    elif isinstance(node, _Filter):
        yield from _walk_references(node.operand)
        for arg in node.args:
            yield from _walk_references(arg)
        for _, arg in node.kwargs:
            yield from _walk_references(arg)


# --------------------------------------------------------------------------- evaluation


def _eval(node: Any, ctx: TemplateContext) -> Any:
    if isinstance(node, _Literal):
        return node.value
    if isinstance(node, Reference):
        return _resolve(node, ctx)
    if isinstance(node, _List):
        return [_eval(item, ctx) for item in node.items]
    if isinstance(node, _Not):
        return not _truthy(_eval(node.operand, ctx))
    if isinstance(node, _Bool):
        left = _eval(node.left, ctx)
        if node.op == "and":
            return _eval(node.right, ctx) if _truthy(left) else left
        return left if _truthy(left) else _eval(node.right, ctx)
    if isinstance(node, _Compare):
        return _compare(node.op, _eval(node.left, ctx), _eval(node.right, ctx))
    if isinstance(node, _Filter):
        return _apply_filter(node, ctx)
    raise EvalError(f"cannot evaluate {node!r}")  # pragma: no cover - parser makes no others


def _resolve(ref: Reference, ctx: TemplateContext) -> Any:
    root, path = ref.root, ref.path
    if root == "vars":
        if not path or not isinstance(path[0], str):
            raise EvalError("'vars' must be followed by a variable name", str(ref))
        name = path[0]
        if name in ctx.secrets:
            if len(path) > 1:
                raise EvalError(f"cannot read into secret variable {name!r}", str(ref))
            if ctx.reveal_secret is not None:
                return ctx.reveal_secret(name)
            return SecretRef(name=name)
        if name not in ctx.variables:
            raise MissingError(f"unknown variable {name!r}", name)
        return _walk(ctx.variables[name], path[1:], "vars", [name])
    if root == "steps":
        if not path or not isinstance(path[0], str):
            raise EvalError("'steps' must be followed by a step id", str(ref))
        step = path[0]
        if step not in ctx.steps:
            raise MissingError(
                f"{ref}: step {step!r} has no result (unknown step or not run yet)", str(ref)
            )
        return _walk(ctx.steps[step], path[1:], "steps", [step])
    if root in ctx.locals:
        return _walk(ctx.locals[root], path, root, [])
    if root in ("trigger", "execution", "schedule"):
        value: Any = getattr(ctx, root)
        if root == "schedule" and path[:1] == ("nominal_time",) and "nominal_time" in value:
            nominal = value["nominal_time"]
            if isinstance(nominal, datetime):
                nominal = localize(nominal, ctx)
            return _walk(nominal, path[1:], "schedule", ["nominal_time"])
        return _walk(value, path, root, [])
    raise MissingError(
        f"unknown name {root!r} (references start with steps, trigger, execution, schedule, "
        "vars, or a for_each item variable)",
        root,
    )


def _walk(value: Any, path: Sequence[PathPart], root: str, done: list[PathPart]) -> Any:
    nodes = [value]
    many = False
    for i, part in enumerate(path):
        here = _format_ref(root, [*done, *path[:i]])
        if isinstance(part, _Wildcard):
            many = True
            expanded: list[Any] = []
            for node in nodes:
                if isinstance(node, list | tuple):
                    expanded.extend(node)
                elif isinstance(node, Mapping):
                    expanded.extend(node.values())
                else:
                    raise EvalError(f"{here}: [*] needs a list, got {type_name(node)}", here)
            nodes = expanded
            continue
        nodes = [_step(node, part, here, root, [*done, *path[: i + 1]]) for node in nodes]
    return nodes if many else nodes[0]


def _step(node: Any, part: str | int, here: str, root: str, full: list[PathPart]) -> Any:
    target = _format_ref(root, full)
    if isinstance(part, int):
        if isinstance(node, list | tuple):
            if -len(node) <= part < len(node):
                return node[part]
            raise MissingError(
                f"{target}: index {part} is out of range (the list has {len(node)} items)", target
            )
        if isinstance(node, Mapping) and str(part) in node:
            return node[str(part)]
        raise MissingError(f"{target}: cannot index {type_name(node)} {here} with [{part}]", target)
    if isinstance(node, Mapping):
        if part in node:
            return node[part]
        keys = ", ".join(sorted(str(k) for k in node)[:10])
        raise MissingError(f"{target}: no key {part!r} in {here} (keys: {keys or 'none'})", target)
    if isinstance(node, msgspec.Struct) and part in node.__struct_fields__:
        return getattr(node, part)
    raise MissingError(f"{target}: cannot read {part!r} of {type_name(node)} {here}", target)


def _truthy(value: Any) -> bool:
    if isinstance(value, SecretRef | SecretString):
        raise EvalError("secret variables cannot be used in conditions or tests", str(value))
    return bool(value)


def _equal(left: Any, right: Any) -> bool:
    if is_number(left) and is_number(right):
        return bool(left == right)
    if type(left) is not type(right) and not (
        isinstance(left, Mapping) and isinstance(right, Mapping)
    ):
        if isinstance(left, list | tuple) and isinstance(right, list | tuple):
            return len(left) == len(right) and all(map(_equal, left, right))
        return False
    return bool(left == right)


def _compare(op: str, left: Any, right: Any) -> bool:
    for value in (left, right):
        if isinstance(value, SecretRef | SecretString):
            raise EvalError("secret variables cannot be used in conditions or tests", str(value))
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if op in ("in", "not in"):
        if isinstance(right, list | tuple):
            found = any(_equal(left, item) for item in right)
        elif isinstance(right, str):
            if not isinstance(left, str):
                raise EvalError(
                    f"'{op}' a string needs a string on the left, got {type_name(left)}"
                )
            found = left in right
        elif isinstance(right, Mapping):
            found = left in right
        else:
            raise EvalError(
                f"'{op}' needs a list, a string or a mapping on the right, got {type_name(right)}"
            )
        return found if op == "in" else not found
    comparable = (
        (is_number(left) and is_number(right))
        or (isinstance(left, str) and isinstance(right, str))
        or (isinstance(left, datetime) and isinstance(right, datetime))
        or (
            isinstance(left, date)
            and isinstance(right, date)
            and not isinstance(left, datetime)
            and not isinstance(right, datetime)
        )
    )
    if not comparable:
        raise EvalError(f"cannot compare {type_name(left)} with {type_name(right)} using '{op}'")
    try:
        if op == "<":
            return bool(left < right)
        if op == "<=":
            return bool(left <= right)
        if op == ">":
            return bool(left > right)
        return bool(left >= right)
    except TypeError as exc:  # naive vs aware date-times
        raise EvalError(f"cannot compare: {exc}") from None


# --------------------------------------------------------------------------- filters


def _apply_filter(node: _Filter, ctx: TemplateContext) -> Any:
    if node.name == "default":
        fallback = _eval(node.args[0], ctx) if node.args else None
        try:
            value = _eval(node.operand, ctx)
        except MissingError:
            return fallback
        return fallback if value is None else value
    value = _eval(node.operand, ctx)
    if isinstance(value, SecretRef | SecretString):
        raise EvalError(f"filter {node.name!r} cannot be applied to a secret variable", str(value))
    args = [_eval(arg, ctx) for arg in node.args]
    kwargs = {key: _eval(arg, ctx) for key, arg in node.kwargs}
    try:
        return FILTERS[node.name](ctx, value, *args, **kwargs)
    except EvalError:
        raise
    except (TypeError, ValueError, OverflowError, KeyError) as exc:
        raise EvalError(f"filter {node.name!r} failed on {type_name(value)}: {exc}") from None
