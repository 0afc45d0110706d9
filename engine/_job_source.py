"""Read YAML, JSON and TOML text into builtins plus a map from field path to line.

The standard parsers give values without positions; job file errors must name the line. For
YAML the composed node tree carries marks; for JSON a small scanner walks the (already
validated) text; for TOML a line scanner follows table headers and keys. A field path is a
tuple of keys and list indexes (``("jobs", 0, "steps", 2, "retry")``); :meth:`SourceMap.line`
falls back to the nearest enclosing field that has a line.
"""

from __future__ import annotations

import bisect
import json
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

__all__ = ["FORMATS", "Format", "ParsedSource", "SourceError", "SourceMap", "parse_source"]

Format = Literal["yaml", "json", "toml"]
Path = tuple[str | int, ...]

FORMATS: dict[str, Format] = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}
"""File name suffixes of job files and their formats."""

_MAX_DEPTH = 64


class SourceError(Exception):
    """The text is not well-formed YAML, JSON or TOML.

    Attributes:
        line: 1-based line of the problem.
        message: The parser's explanation (with the column when known).
    """

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass
class SourceMap:
    """Lines of the fields of a parsed document.

    Attributes:
        lines: 1-based line of each field path that was seen.
    """

    lines: dict[Path, int] = field(default_factory=dict)

    def line(self, path: Path) -> int:
        """The line of ``path``, else of its nearest ancestor that has one, else 1."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(tuple(path[:end]))
            if found is not None:
                return found
        return 1


@dataclass
class ParsedSource:
    """A parsed document.

    Attributes:
        data: The value (mappings, lists, scalars; YAML/TOML date-times as ``datetime``).
        source_map: Lines of its fields.
        duplicates: ``(path, line, message)`` for keys given twice (YAML and JSON silently keep
            the last one; a job file must not).
    """

    data: Any
    source_map: SourceMap
    duplicates: list[tuple[Path, int, str]] = field(default_factory=list)


def parse_source(text: str, fmt: Format) -> ParsedSource:
    """Parse ``text`` as ``fmt``.

    Raises:
        SourceError: The text is malformed (with the line and the parser's message).
    """
    if fmt == "yaml":
        return _parse_yaml(text)
    if fmt == "json":
        return _parse_json(text)
    if fmt == "toml":
        return _parse_toml(text)
    raise ValueError(f"unknown format {fmt!r}")


# --------------------------------------------------------------------------- YAML

_MERGE_TAG = "tag:yaml.org,2002:merge"


def _parse_yaml(text: str) -> ParsedSource:
    loader = yaml.SafeLoader(text)
    parsed = ParsedSource(None, SourceMap())
    try:
        node = loader.get_single_node()
        if node is not None:
            # Walk before constructing: construction flattens merge keys into the nodes.
            _walk_yaml(node, (), parsed)
            parsed.data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        column = f" (column {mark.column + 1})" if mark is not None else ""
        problem = exc.problem or exc.context or "malformed YAML"
        context = f" {exc.context}" if exc.context and exc.problem else ""
        raise SourceError(line, f"{problem}{context}{column}") from None
    except yaml.YAMLError as exc:
        raise SourceError(1, str(exc)) from None
    except RecursionError:
        raise SourceError(1, "the document nests too deeply") from None
    finally:
        loader.dispose()
    return parsed


def _walk_yaml(node: yaml.Node, path: Path, parsed: ParsedSource) -> None:
    lines = parsed.source_map.lines
    lines.setdefault(path, node.start_mark.line + 1)
    if len(path) > _MAX_DEPTH:
        return
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        merged: list[yaml.MappingNode] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                if isinstance(value_node, yaml.SequenceNode):
                    merged.extend(n for n in value_node.value if isinstance(n, yaml.MappingNode))
                elif isinstance(value_node, yaml.MappingNode):
                    merged.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                parsed.duplicates.append(
                    ((*path, key), line, f"duplicate key {key!r} (first at line {seen[key]})")
                )
            seen[key] = line
            lines[(*path, key)] = line
            _walk_yaml(value_node, (*path, key), parsed)
        for merged_node in merged:
            for key_node, value_node in merged_node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value not in seen:
                    seen[key_node.value] = key_node.start_mark.line + 1
                    lines.setdefault((*path, key_node.value), key_node.start_mark.line + 1)
                    _walk_yaml(value_node, (*path, key_node.value), parsed)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk_yaml(item, (*path, index), parsed)


# --------------------------------------------------------------------------- JSON

_JSON_WS = re.compile(r"[ \t\n\r]*")
_JSON_SCALAR = re.compile(
    r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null|NaN|-?Infinity"
)


def _parse_json(text: str) -> ParsedSource:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(exc.lineno, f"{exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise SourceError(1, "the document nests too deeply") from None
    parsed = ParsedSource(data, SourceMap())
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    scanner = _JsonLines(text, starts, parsed)
    scanner.value(_JSON_WS.match(text, 0).end(), ())  # type: ignore[union-attr]
    return parsed


class _JsonLines:
    """Walks well-formed JSON text recording the line of every key and list item."""

    def __init__(self, text: str, starts: list[int], parsed: ParsedSource) -> None:
        self.text = text
        self.starts = starts
        self.parsed = parsed

    def line(self, pos: int) -> int:
        return bisect.bisect_right(self.starts, pos)

    def skip(self, pos: int) -> int:
        return _JSON_WS.match(self.text, pos).end()  # type: ignore[union-attr]

    def value(self, pos: int, path: Path) -> int:
        lines = self.parsed.source_map.lines
        lines.setdefault(path, self.line(pos))
        char = self.text[pos]
        if char == "{":
            return self.obj(pos + 1, path)
        if char == "[":
            return self.array(pos + 1, path)
        if char == '"':
            return json.decoder.scanstring(self.text, pos + 1)[1]  # type: ignore[attr-defined]
        match = _JSON_SCALAR.match(self.text, pos)
        return match.end() if match else pos + 1

    def obj(self, pos: int, path: Path) -> int:
        seen: dict[str, int] = {}
        pos = self.skip(pos)
        if self.text[pos] == "}":
            return pos + 1
        while True:
            key_line = self.line(pos)
            key, pos = json.decoder.scanstring(self.text, pos + 1)  # type: ignore[attr-defined]
            if key in seen:
                self.parsed.duplicates.append(
                    ((*path, key), key_line, f"duplicate key {key!r} (first at line {seen[key]})")
                )
            seen[key] = key_line
            self.parsed.source_map.lines[(*path, key)] = key_line
            pos = self.skip(self.skip(pos) + 1)  # past ':'
            pos = self.skip(self.value(pos, (*path, key)) if len(path) < _MAX_DEPTH else pos)
            if self.text[pos] == ",":
                pos = self.skip(pos + 1)
                continue
            return pos + 1

    def array(self, pos: int, path: Path) -> int:
        pos = self.skip(pos)
        if self.text[pos] == "]":
            return pos + 1
        index = 0
        while True:
            pos = self.skip(self.value(pos, (*path, index)))
            index += 1
            if self.text[pos] == ",":
                pos = self.skip(pos + 1)
                continue
            return pos + 1


# --------------------------------------------------------------------------- TOML

_TOML_KEY = re.compile(r"\s*(\"(?:[^\"\\]|\\.)*\"|'[^']*'|[A-Za-z0-9_-]+)\s*")
_TOML_LINE = re.compile(r"line (\d+)")


def _parse_toml(text: str) -> ParsedSource:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_LINE.search(message)
        raise SourceError(int(match.group(1)) if match else 1, message) from None
    parsed = ParsedSource(data, SourceMap({(): 1}))
    _TomlLines(parsed.source_map.lines).scan(text)
    return parsed


def _toml_keys(text: str) -> list[str] | None:
    keys: list[str] = []
    pos = 0
    while True:
        match = _TOML_KEY.match(text, pos)
        if match is None:
            return None
        raw = match.group(1)
        if raw.startswith('"'):
            keys.append(json.loads(raw))
        elif raw.startswith("'"):
            keys.append(raw[1:-1])
        else:
            keys.append(raw)
        pos = match.end()
        if pos >= len(text):
            return keys
        if text[pos] != ".":
            return None
        pos += 1


def _split_key_value(line: str) -> tuple[str, str] | None:
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "=":
            return line[:i], line[i + 1 :]
    return None


def _bracket_balance(text: str) -> tuple[int, str]:
    """Net ``[`` minus ``]`` outside strings and comments, and an unclosed ``\"\"\"``/``'''``."""
    depth = 0
    i = 0
    while i < len(text):
        for triple in ('"""', "'''"):
            if text.startswith(triple, i):
                end = text.find(triple, i + 3)
                if end < 0:
                    return depth, triple
                i = end + 3
                break
        else:
            char = text[i]
            if char in "\"'":
                end = i + 1
                while end < len(text) and text[end] != char:
                    end += 2 if char == '"' and text[end] == "\\" else 1
                i = end + 1
                continue
            if char == "#":
                break
            if char == "[":
                depth += 1
            elif char == "]":
                depth -= 1
            i += 1
    return depth, ""


class _TomlLines:
    def __init__(self, lines: dict[Path, int]) -> None:
        self.lines = lines
        self.arrays: dict[Path, int] = {}  # array-of-tables path -> element count

    def resolve(self, keys: list[str]) -> Path:
        path: Path = ()
        for key in keys:
            path = (*path, key)
            if path in self.arrays:
                path = (*path, self.arrays[path] - 1)
        return path

    def scan(self, text: str) -> None:
        current: Path = ()
        open_string = ""
        depth = 0
        array_path: Path | None = None
        array_index = 0
        for number, raw in enumerate(text.splitlines(), 1):
            if open_string:
                if open_string in raw:
                    open_string = ""
                continue
            stripped = raw.strip()
            if depth > 0:
                if (
                    array_path is not None
                    and depth == 1
                    and stripped
                    and stripped[0] in "{[\"'0123456789-tf"
                ):
                    self.lines.setdefault((*array_path, array_index), number)
                    array_index += 1
                change, open_string = _bracket_balance(raw)
                depth += change
                continue
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("[["):
                keys = _toml_keys(stripped[2 : stripped.find("]]")])
                if keys:
                    parent = self.resolve(keys[:-1])
                    array = (*parent, keys[-1])
                    index = self.arrays.get(array, 0)
                    self.arrays[array] = index + 1
                    current = (*array, index)
                    self.lines.setdefault(array, number)
                    self.lines[current] = number
                continue
            if stripped.startswith("["):
                keys = _toml_keys(stripped[1 : stripped.find("]")])
                if keys:
                    current = self.resolve(keys)
                    self.lines.setdefault(current, number)
                continue
            split = _split_key_value(stripped)
            if split is None:
                continue
            keys = _toml_keys(split[0])
            if not keys:
                continue
            path = (*current, *keys)
            for end in range(len(current) + 1, len(path)):
                self.lines.setdefault(path[:end], number)
            self.lines[path] = number
            change, open_string = _bracket_balance(split[1])
            if change > 0:
                depth = change
                array_path = path
                array_index = 0
                rest = split[1].strip()[1:].strip()
                if rest and not rest.startswith("#"):
                    self.lines.setdefault((*path, 0), number)
                    array_index = rest.count("{") or 1
            elif split[1].strip().startswith("["):
                self.lines.setdefault((*path, 0), number)
