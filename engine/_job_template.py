"""Templates in step configurations: ``${VAR}`` and ``{{ expression | filter }}``.

A string of a step's configuration may embed:

* ``${NAME}`` — a variable (job scope over global scope);
* ``{{ expression }}`` — any expression of :mod:`cadenza.engine._job_expr`, usually a reference
  (``{{ steps.fetch.output.rows[0].id }}``, ``{{ trigger.payload.date }}``) piped through
  filters (``{{ schedule.nominal_time | yesterday | format("%Y%m%d") }}``).

A string that is exactly one template (``"{{ steps.list.output.items }}"``) renders to the typed
value (a list, a mapping, a number, a date); templates embedded in longer text are stringified
(see :func:`~cadenza.engine._job_expr.stringify`). ``$${`` writes a literal ``${``; a literal
``{{`` is written ``{{ "{{" }}``.

Templates are parsed once (:func:`compile_template`, cached by text) and rendered many times.
Secret variables render as :class:`SecretRef` (or :class:`SecretString` inside text) unless the
context can reveal them, so plain secret values never enter a workflow history.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cadenza.engine._job_expr import (
    Expression,
    Reference,
    SecretRef,
    SecretString,
    TemplateContext,
    TemplateError,
    _parse,
    _SyntaxError,
    stringify,
)
from cadenza.timers._spec import format_path

__all__ = [
    "SecretRef",
    "SecretString",
    "Template",
    "TemplateContext",
    "TemplateError",
    "compile_template",
    "contains_secrets",
    "iter_strings",
    "render",
    "resolve_secrets",
    "template_references",
]


@dataclass(frozen=True, slots=True)
class _Part:
    expression: Expression
    column: int


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template string.

    Attributes:
        source: The original text.
        parts: Literal text (``str``) and embedded expressions, in order.
    """

    source: str
    parts: tuple[str | _Part, ...]

    @property
    def is_literal(self) -> bool:
        """True when the text contains no template at all (it renders to itself)."""
        return all(isinstance(part, str) for part in self.parts)

    @property
    def is_whole(self) -> bool:
        """True when the text is exactly one template (it renders to a typed value)."""
        return len(self.parts) == 1 and isinstance(self.parts[0], _Part)

    def references(self) -> list[Reference]:
        """Every reference in the template, in order."""
        out: list[Reference] = []
        for part in self.parts:
            if isinstance(part, _Part):
                out.extend(part.expression.references())
        return out

    def render(self, context: TemplateContext, *, field: str = "template") -> Any:
        """Render against ``context``.

        Returns the text with every template replaced; or, when the whole string is one
        template, the value itself; a :class:`SecretRef`/:class:`SecretString` when secrets are
        involved and not revealed.

        Raises:
            TemplateError: A reference names a missing step, path or variable (the reason names
                it) or a filter does not apply.
        """
        if len(self.parts) == 1 and isinstance(self.parts[0], _Part):
            return self.parts[0].expression.evaluate(context, field=field)
        pieces: list[str | SecretRef] = []
        secret = False
        for part in self.parts:
            if isinstance(part, str):
                pieces.append(part)
                continue
            value = part.expression.evaluate(context, field=field)
            if isinstance(value, SecretRef):
                secret = True
                pieces.append(value)
            elif isinstance(value, SecretString):
                secret = True
                pieces.extend(value.parts)
            else:
                pieces.append(stringify(value))
        if not secret:
            return "".join(p for p in pieces if isinstance(p, str))
        return SecretString(parts=_merge(pieces))


def _merge(pieces: list[str | SecretRef]) -> list[str | SecretRef]:
    out: list[str | SecretRef] = []
    for piece in pieces:
        if isinstance(piece, str):
            if not piece:
                continue
            if out and isinstance(out[-1], str):
                out[-1] = out[-1] + piece
                continue
        out.append(piece)
    return out


def _scan(text: str) -> tuple[str | _Part, ...]:
    parts: list[str | _Part] = []
    literal: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        if text.startswith("$${", i):
            literal.append("${")
            i += 3
        elif text.startswith("${", i):
            end = text.find("}", i + 2)
            if end < 0:
                raise _SyntaxError("unterminated '${': expected '}'", i + 1)
            body = text[i : end + 1]
            node = _parse(body, i)
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(_Part(Expression(body, node), i + 1))
            i = end + 1
        elif text.startswith("{{", i):
            end = _closing(text, i + 2)
            if end < 0:
                raise _SyntaxError("unterminated '{{': expected '}}'", i + 1)
            body = text[i + 2 : end]
            node = _parse(body, i + 2)
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(_Part(Expression(body.strip(), node), i + 1))
            i = end + 2
        else:
            literal.append(text[i])
            i += 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def _closing(text: str, start: int) -> int:
    """Index of the ``}}`` that closes a ``{{`` (quotes inside are skipped), or -1."""
    i = start
    quote = ""
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 2
                continue
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif text.startswith("}}", i):
            return i
        i += 1
    return -1


@functools.lru_cache(maxsize=8192)
def _compile_cached(text: str) -> Template | _SyntaxError:
    try:
        return Template(text, _scan(text))
    except _SyntaxError as exc:
        return exc


def compile_template(text: str, *, field: str = "template") -> Template:
    """Parse a template once (cached by text).

    Raises:
        TemplateError: The text does not parse; the reason gives the column (1-based, in the
            whole string).
    """
    result = _compile_cached(text)
    if isinstance(result, _SyntaxError):
        raise TemplateError(
            field, f"{result.message} at column {result.column}", column=result.column
        )
    return result


def iter_strings(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string inside nested mappings and lists, with its path (keys are not templates)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from iter_strings(item, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from iter_strings(item, (*path, index))


def template_references(
    value: Any, path: tuple[str | int, ...] = ()
) -> list[tuple[tuple[str | int, ...], Reference]]:
    """The references of every template inside ``value``, each with the path of its string.

    Raises:
        TemplateError: A string does not parse (``field`` is its path).
    """
    out: list[tuple[tuple[str | int, ...], Reference]] = []
    for where, text in iter_strings(value, path):
        template = compile_template(text, field=format_path(where))
        out.extend((where, ref) for ref in template.references())
    return out


def render(config: Any, context: TemplateContext, *, field: str = "config") -> Any:
    """Render every string of a step configuration (mappings and lists are walked).

    Args:
        config: The configuration: nested mappings, lists and scalars.
        context: What the templates read.
        field: The path of ``config`` used in error messages (e.g. ``steps.fetch.config``).

    Returns:
        A new structure of the same shape; strings rendered, other scalars unchanged.

    Raises:
        TemplateError: A template does not parse or a reference cannot be resolved; ``field``
            is the path of the string (``steps.fetch.config.headers.Authorization``).
    """
    return _render(config, context, field)


def _render(value: Any, context: TemplateContext, field: str) -> Any:
    if isinstance(value, str):
        template = compile_template(value, field=field)
        if template.is_literal:
            return template.parts[0] if template.parts else ""
        return template.render(context, field=field)
    if isinstance(value, Mapping):
        return {key: _render(item, context, _join(field, str(key))) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_render(item, context, f"{field}[{i}]") for i, item in enumerate(value)]
    return value


def _join(field: str, key: str) -> str:
    suffix = format_path((key,))
    return f"{field}{suffix}" if suffix.startswith("[") else f"{field}.{suffix}"


def _is_secret_dict(value: Mapping[str, Any]) -> str | None:
    kind = value.get("kind")
    if kind == "secret_ref" and set(value) == {"kind", "name"}:
        return "ref"
    if kind == "secret_string" and set(value) == {"kind", "parts"}:
        return "string"
    return None


def contains_secrets(value: Any) -> bool:
    """True when a rendered value holds a secret placeholder (struct or its JSON form)."""
    if isinstance(value, SecretRef | SecretString):
        return True
    if isinstance(value, Mapping):
        return _is_secret_dict(value) is not None or any(
            contains_secrets(v) for v in value.values()
        )
    if isinstance(value, list | tuple):
        return any(contains_secrets(v) for v in value)
    return False


def resolve_secrets(value: Any, lookup: Callable[[str], Any]) -> Any:
    """Replace secret placeholders by their values; for the activity, at run time only.

    Accepts the structs and their JSON form (``{"kind": "secret_ref", "name": ...}``), as they
    come back from a history. ``lookup(name)`` returns the plain value (e.g. decrypted with
    ``SecretBox``). Never record the result.
    """
    if isinstance(value, SecretRef):
        return lookup(value.name)
    if isinstance(value, SecretString):
        return "".join(
            stringify(lookup(p.name)) if isinstance(p, SecretRef) else p for p in value.parts
        )
    if isinstance(value, Mapping):
        form = _is_secret_dict(value)
        if form == "ref":
            return lookup(str(value["name"]))
        if form == "string":
            return "".join(
                stringify(lookup(str(p["name"]))) if isinstance(p, Mapping) else str(p)
                for p in value["parts"]
            )
        return {k: resolve_secrets(v, lookup) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve_secrets(v, lookup) for v in value]
    return value
