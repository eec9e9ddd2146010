"""Read ``schema.prisma`` (one file, or a folder of ``*.prisma`` files) into ``PrismaSchema``.

A hand-written tokenizer and recursive-descent parser for the Prisma schema language, after
the grammar of prisma-engines (``psl/schema-ast/src/parser/datamodel.pest``): blocks
``datasource``, ``generator``, ``enum``, ``model`` (``view`` and ``type`` blocks and type
aliases are skipped), one field per line (``name Type? @attr(...)``), block attributes
``@@name(...)``, arguments positional or named, strings with JSON escapes, arrays, function
calls (``env("X")``, ``raw("...")``, ``createdAt(sort: Desc)``) and object literals
(``where: { active: true }``). Comments (``//``, ``///``) are skipped. No Python package parses
Prisma schemas with source positions, hence this one.

Every block, field and block attribute keeps its ``Span`` (character offsets in the file's
text, which is kept unchanged in ``PrismaSchema.texts``) so edits can be minimal patches. A
file that does not parse raises ``ConfigError`` with ``file:line: what is wrong``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, NamedTuple, cast

from pgrunbook.errors import ConfigError
from pgrunbook.prisma.model import (
    Datasource,
    Enum,
    Field,
    Generator,
    IndexAttr,
    IndexField,
    Model,
    PrismaSchema,
    RelationAttr,
    Sort,
    Span,
)

_TOKEN: Final = re.compile(
    r"""
     (?P<newline>\r\n|\n|\r)
    |(?P<space>(?:[^\S\r\n]|\ufeff)+)
    |(?P<comment>//[^\r\n]*)
    |(?P<string>")
    |(?P<number>-?[0-9]+(?:\.[0-9]+)?(?![A-Za-z0-9_.-]))
    |(?P<word>[A-Za-z0-9_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_][A-Za-z0-9_-]*)*)
    |(?P<punct>@@|[@{}()\[\],:=?!])
    """,
    re.VERBOSE,
)
_ESCAPES: Final = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_BLOCKS: Final = ("model", "enum", "datasource", "generator", "view", "type")
_INDEX_KINDS: Final[dict[str, Literal["index", "unique", "id"]]] = {
    "index": "index",
    "unique": "unique",
    "id": "id",
}


class _Tok(NamedTuple):
    kind: str  # newline, string, number, word, punct, eof
    text: str  # the source text
    start: int
    end: int
    value: str  # a string's decoded value, else the text


# Values of arguments, with their place in the source.
@dataclass(frozen=True)
class Word:
    """An identifier, a dotted path or a number: ``Desc``, ``db.Uuid``, ``100``."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Str:
    value: str
    start: int
    end: int


@dataclass(frozen=True)
class Array:
    items: tuple[Value, ...]
    start: int
    end: int


@dataclass(frozen=True)
class Call:
    """``name(args)``: ``env("X")``, ``raw("...")``, ``createdAt(sort: Desc)``."""

    name: str
    args: tuple[Arg, ...]
    start: int
    end: int


@dataclass(frozen=True)
class Object:
    """``{ key: value, ... }`` (the ``where`` object syntax of partial indexes)."""

    entries: tuple[tuple[str, Value], ...]
    start: int
    end: int


Value = Word | Str | Array | Call | Object


@dataclass(frozen=True)
class Arg:
    name: str | None  # None: positional
    value: Value | None  # None: an empty argument (``name:``)


@dataclass(frozen=True)
class Attr:
    """``@name(args)`` or ``@@name(args)``; ``inner`` spans the text between the parens."""

    name: str
    args: tuple[Arg, ...]
    start: int
    end: int
    inner: tuple[int, int] | None

    def arg(self, name: str, position: int | None = None) -> Value | None:
        """The named argument, else the positional one at ``position`` (counting only
        positional arguments)."""
        for arg in self.args:
            if arg.name == name:
                return arg.value
        if position is not None:
            positional = [a.value for a in self.args if a.name is None]
            if position < len(positional):
                return positional[position]
        return None


@dataclass
class _File:
    datasources: list[Datasource]
    generators: list[Generator]
    enums: list[Enum]
    models: list[Model]


class _Parser:
    def __init__(self, text: str, path: Path | None) -> None:
        self.text = text
        self.path = path
        self.toks = self._tokenize()
        self.pos = 0

    # -- errors and tokens -------------------------------------------------------------------
    def error(self, offset: int, what: str) -> ConfigError:
        return _located(self.text, self.path, offset, what)

    def _tokenize(self) -> list[_Tok]:
        toks: list[_Tok] = []
        text, pos = self.text, 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None:
                raise self.error(pos, f"unexpected character {text[pos]!r}")
            kind = cast(str, match.lastgroup)
            if kind == "string":
                value, end = self._string(pos)
                toks.append(_Tok("string", text[pos:end], pos, end, value))
                pos = end
                continue
            if kind not in ("space", "comment"):
                toks.append(_Tok(kind, match.group(), pos, match.end(), match.group()))
            pos = match.end()
        toks.append(_Tok("eof", "", len(text), len(text), ""))
        return toks

    def _string(self, start: int) -> tuple[str, int]:
        text, pos = self.text, start + 1
        out: list[str] = []
        while pos < len(text):
            char = text[pos]
            if char == '"':
                return "".join(out), pos + 1
            if ord(char) < 0x20:
                break
            if char == "\\" and pos + 1 < len(text):
                nxt = text[pos + 1]
                if nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", text[pos + 2 : pos + 6]):
                    out.append(chr(int(text[pos + 2 : pos + 6], 16)))
                    pos += 6
                    continue
                out.append(_ESCAPES.get(nxt, nxt))
                pos += 2
                continue
            out.append(char)
            pos += 1
        raise self.error(start, "unterminated string")

    def peek(self, ahead: int = 0) -> _Tok:
        return self.toks[min(self.pos + ahead, len(self.toks) - 1)]

    def next(self) -> _Tok:
        tok = self.peek()
        self.pos = min(self.pos + 1, len(self.toks) - 1)
        return tok

    def at(self, text: str) -> bool:
        tok = self.peek()
        return tok.kind == "punct" and tok.text == text

    def expect(self, text: str, context: str) -> _Tok:
        if not self.at(text):
            raise self.error(
                self.peek().start, f"expected `{text}` {context}, found {_show(self.peek())}"
            )
        return self.next()

    def word(self, context: str) -> _Tok:
        tok = self.peek()
        if tok.kind != "word":
            raise self.error(tok.start, f"expected {context}, found {_show(tok)}")
        return self.next()

    def skip_newlines(self) -> None:
        while self.peek().kind == "newline":
            self.next()

    def end_of_line(self, context: str) -> None:
        tok = self.peek()
        if tok.kind == "newline":
            self.next()
        elif not (tok.kind == "eof" or self.at("}")):
            raise self.error(tok.start, f"unexpected {_show(tok)} after {context}")

    # -- values ------------------------------------------------------------------------------
    def value(self) -> Value:
        self.skip_newlines()
        tok = self.peek()
        if tok.kind == "string":
            self.next()
            return Str(tok.value, tok.start, tok.end)
        if tok.kind == "number":
            self.next()
            return Word(tok.text, tok.start, tok.end)
        if tok.kind == "word":
            self.next()
            if self.at("("):
                args, _, end = self.arguments(f"`{tok.text}(...)`")
                return Call(tok.text, args, tok.start, end)
            return Word(tok.text, tok.start, tok.end)
        if self.at("["):
            return self.array()
        if self.at("{"):
            return self.object()
        raise self.error(tok.start, f"expected a value, found {_show(tok)}")

    def array(self) -> Array:
        start = self.next().start
        items: list[Value] = []
        while True:
            self.skip_newlines()
            if self.at("]"):
                break
            items.append(self.value())
            self.skip_newlines()
            if not self.at(","):
                break
            self.next()
        end = self.expect("]", "to close the list").end
        return Array(tuple(items), start, end)

    def object(self) -> Object:
        start = self.next().start
        entries: list[tuple[str, Value]] = []
        while True:
            self.skip_newlines()
            if self.at("}"):
                break
            key = self.peek()
            if key.kind not in ("word", "string"):
                raise self.error(key.start, f"expected a key in `{{...}}`, found {_show(key)}")
            self.next()
            self.expect(":", f"after `{key.value}`")
            entries.append((key.value, self.value()))
            self.skip_newlines()
            if not self.at(","):
                break
            self.next()
        end = self.expect("}", "to close the object").end
        return Object(tuple(entries), start, end)

    def arguments(self, context: str) -> tuple[tuple[Arg, ...], tuple[int, int], int]:
        """``( ... )``: the arguments, the span inside the parentheses and the end offset."""
        open_ = self.expect("(", context)
        args: list[Arg] = []
        while True:
            self.skip_newlines()
            if self.at(")"):
                break
            tok = self.peek()
            if tok.kind == "word" and self.peek(1).kind == "punct" and self.peek(1).text == ":":
                self.pos += 2
                self.skip_newlines()
                empty = self.at(",") or self.at(")")
                args.append(Arg(tok.text, None if empty else self.value()))
            else:
                args.append(Arg(None, self.value()))
            self.skip_newlines()
            if self.at(")"):
                break
            if not self.at(","):
                found = _show(self.peek())
                raise self.error(
                    self.peek().start, f"expected `,` or `)` in {context}, found {found}"
                )
            self.next()
        close = self.next()
        return tuple(args), (open_.end, close.start), close.end

    def attribute(self) -> Attr:
        marker = self.next()  # "@" or "@@"
        name = self.word(f"an attribute name after `{marker.text}`")
        if self.at("("):
            args, inner, end = self.arguments(f"`{marker.text}{name.text}(...)`")
            return Attr(name.text, args, marker.start, end, inner)
        return Attr(name.text, (), marker.start, name.end, None)

    # -- blocks ------------------------------------------------------------------------------
    def parse(self) -> _File:
        out = _File([], [], [], [])
        while True:
            self.skip_newlines()
            tok = self.peek()
            if tok.kind == "eof":
                return out
            if tok.kind != "word" or tok.text not in _BLOCKS:
                raise self.error(
                    tok.start,
                    f"unexpected {_show(tok)}: expected a block (model, enum, datasource, "
                    "generator, view or type)",
                )
            self.next()
            name = self.word(f"a name after `{tok.text}`")
            if tok.text == "type" and self.at("="):  # a type alias: one line
                while self.peek().kind not in ("newline", "eof"):
                    self.next()
                continue
            self.expect("{", f"after `{tok.text} {name.text}`")
            opened = (tok.start, f"`{tok.text} {name.text}`")
            if tok.text == "model":
                out.models.append(self.model(name.text, opened))
            elif tok.text == "enum":
                out.enums.append(self.enum(name.text, opened))
            elif tok.text in ("datasource", "generator"):
                self.config(tok.text, name.text, opened, out)
            else:
                self.skip_block(opened)

    def close(self, opened: tuple[int, str]) -> int | None:
        """At the block's ``}``: its end offset; None inside the block."""
        self.skip_newlines()
        if self.peek().kind == "eof":
            raise self.error(opened[0], f"block {opened[1]} is never closed (missing `}}`)")
        if self.at("}"):
            return self.next().end
        return None

    def skip_block(self, opened: tuple[int, str]) -> None:
        depth = 1
        while depth:
            tok = self.next()
            if tok.kind == "eof":
                raise self.error(opened[0], f"block {opened[1]} is never closed (missing `}}`)")
            if tok.kind == "punct" and tok.text in "{}":
                depth += 1 if tok.text == "{" else -1

    def model(self, name: str, opened: tuple[int, str]) -> Model:
        fields: list[tuple[_Tok, str, bool, bool, list[Attr], int]] = []
        block: list[Attr] = []
        while (end := self.close(opened)) is None:
            if self.at("@@"):
                block.append(self.attribute())
                self.end_of_line(f"`@@{block[-1].name}`")
                continue
            field = self.word(f"a field or `@@attribute` in model `{name}`")
            if self.at(":"):  # legacy `name: Type`
                self.next()
            type_name, optional, is_list = self.field_type(name, field.text)
            attrs: list[Attr] = []
            while self.at("@"):
                attrs.append(self.attribute())
            stop = attrs[-1].end if attrs else self.toks[self.pos - 1].end
            fields.append((field, type_name, optional, is_list, attrs, stop))
            self.end_of_line(f"field `{name}.{field.text}`")
        return _build_model(name, fields, block, Span(self.path, opened[0], end), self)

    def field_type(self, model: str, field: str) -> tuple[str, bool, bool]:
        if self.at("["):  # legacy `[Type]`
            self.next()
            base = self.word(f"a type for field `{model}.{field}`").text
            self.expect("]", f"after the type of `{model}.{field}`")
            return base, False, True
        tok = self.peek()
        if tok.kind != "word":
            raise self.error(tok.start, f"field `{model}.{field}` has no type (found {_show(tok)})")
        self.next()
        if tok.text == "Unsupported" and self.at("("):
            self.arguments("`Unsupported(...)`")
        optional = is_list = False
        if self.at("["):
            self.next()
            self.expect("]", f"after `{tok.text}[`")
            is_list = True
        if self.at("?"):
            self.next()
            optional = True
        elif self.at("!"):
            self.next()
        return tok.text, optional, is_list

    def enum(self, name: str, opened: tuple[int, str]) -> Enum:
        values: list[str] = []
        db_name = name
        while (end := self.close(opened)) is None:
            if self.at("@@"):
                attr = self.attribute()
                mapped = attr.arg("name", 0)
                if attr.name == "map" and isinstance(mapped, Str):
                    db_name = mapped.value
                self.end_of_line(f"`@@{attr.name}`")
                continue
            value = self.word(f"a value in enum `{name}`")
            values.append(value.text)
            while self.at("@"):
                self.attribute()
            self.end_of_line(f"enum value `{value.text}`")
        return Enum(name, db_name, tuple(values), Span(self.path, opened[0], end))

    def config(self, kind: str, name: str, opened: tuple[int, str], out: _File) -> None:
        props: dict[str, Value] = {}
        while (end := self.close(opened)) is None:
            key = self.word(f"a setting in {kind} `{name}`")
            self.expect("=", f"after `{key.text}`")
            props[key.text] = self.value()
            self.end_of_line(f"`{key.text} = ...`")
        span = Span(self.path, opened[0], end)
        provider = _text(props.get("provider")) or ""
        if kind == "generator":
            features = props.get("previewFeatures")
            items = features.items if isinstance(features, Array) else ()
            preview = tuple(i.value for i in items if isinstance(i, Str))
            out.generators.append(Generator(name, provider, preview, span))
            return
        schemas = props.get("schemas")
        listed = schemas.items if isinstance(schemas, Array) else ()
        mode = props.get("relationMode") or props.get("referentialIntegrity")
        out.datasources.append(
            Datasource(
                name=name,
                provider=provider,
                relation_mode=_text(mode) or "foreignKeys",
                url_env=_env(props.get("url")),
                direct_url_env=_env(props.get("directUrl")),
                schemas=tuple(s.value for s in listed if isinstance(s, Str)),
                span=span,
            )
        )


def _located(text: str, path: Path | None, offset: int, what: str) -> ConfigError:
    """``file:line: what``, the one-line error for a place in a schema file."""
    line = len(re.findall(r"\r\n|\n|\r", text[:offset])) + 1
    return ConfigError(f"{path if path is not None else 'schema.prisma'}:{line}: {what}")


def _show(tok: _Tok) -> str:
    if tok.kind == "eof":
        return "end of file"
    if tok.kind == "newline":
        return "end of line"
    text = tok.text if len(tok.text) <= 40 else tok.text[:37] + "..."
    return f"`{text}`"


def _text(value: Value | None) -> str | None:
    if isinstance(value, Str):
        return value.value
    if isinstance(value, Word):
        return value.text
    return None


def _env(value: Value | None) -> str | None:
    if isinstance(value, Call) and value.name == "env" and value.args:
        return _text(value.args[0].value)
    return None


def _names(value: Value | None) -> tuple[str, ...]:
    items = value.items if isinstance(value, Array) else ()
    return tuple(i.text for i in items if isinstance(i, Word))


def _build_model(
    name: str,
    rows: list[tuple[_Tok, str, bool, bool, list[Attr], int]],
    block: list[Attr],
    span: Span,
    parser: _Parser,
) -> Model:
    fields: list[Field] = []
    for tok, type_name, optional, is_list, attrs, stop in rows:
        by_name = {a.name: a for a in attrs}
        native = next((a for a in attrs if "." in a.name), None)
        native_type = None
        if native is not None:
            native_type = native.name.split(".", 1)[1]
            if native.inner is not None:
                native_type += f"({parser.text[native.inner[0] : native.inner[1]].strip()})"
        default = by_name.get("default")
        mapped = _text(by_name["map"].arg("name", 0)) if "map" in by_name else None
        fields.append(
            Field(
                name=tok.text,
                type=type_name,
                db_name=mapped or tok.text,
                optional=optional,
                is_list=is_list,
                is_id="id" in by_name,
                is_unique="unique" in by_name,
                is_updated_at="updatedAt" in by_name,
                native_type=native_type,
                default=(
                    parser.text[default.inner[0] : default.inner[1]].strip()
                    if default is not None and default.inner is not None
                    else None
                ),
                relation=_relation(by_name["relation"]) if "relation" in by_name else None,
                span=Span(parser.path, tok.start, stop),
            )
        )
    columns = {f.name: f.db_name for f in fields}
    db_name, schema = name, None
    indexes: list[IndexAttr] = []
    for attr in block:
        if attr.name == "map":
            db_name = _text(attr.arg("name", 0)) or name
        elif attr.name == "schema":
            schema = _text(attr.arg("name", 0))
        elif attr.name in _INDEX_KINDS:
            indexes.append(_index(attr, columns, parser))
    return Model(name, db_name, tuple(fields), tuple(indexes), schema, span)


def _relation(attr: Attr) -> RelationAttr:
    return RelationAttr(
        name=_text(attr.arg("name", 0)),
        fields=_names(attr.arg("fields")),
        references=_names(attr.arg("references")),
        on_delete=_text(attr.arg("onDelete")),
        map=_text(attr.arg("map")),
    )


def _index(attr: Attr, columns: dict[str, str], parser: _Parser) -> IndexAttr:
    fields_arg = attr.arg("fields", 0)
    if not isinstance(fields_arg, Array):
        raise parser.error(attr.start, f"`@@{attr.name}` needs a list of fields: `[a, b]`")
    fields: list[IndexField] = []
    for item in fields_arg.items:
        if isinstance(item, Word):
            fields.append(IndexField(item.text))
        elif isinstance(item, Call):
            sort = _text(_item_arg(item, "sort"))
            length = _text(_item_arg(item, "length"))
            ops = _item_arg(item, "ops")
            fields.append(
                IndexField(
                    item.name,
                    sort=cast(Sort, sort) if sort in ("Asc", "Desc") else None,
                    length=int(length) if length and length.isdigit() else None,
                    ops=parser.text[ops.start : ops.end] if ops is not None else None,
                )
            )
        else:
            raise parser.error(item.start, f"expected a field name in `@@{attr.name}`")
    where = attr.arg("where")
    return IndexAttr(
        kind=_INDEX_KINDS[attr.name],
        fields=tuple(fields),
        map=_text(attr.arg("map")),
        name=_text(attr.arg("name")),
        type=_text(attr.arg("type")),
        where=_where(where, columns, parser) if where is not None else None,
        span=Span(parser.path, attr.start, attr.end),
    )


def _item_arg(call: Call, name: str) -> Value | None:
    return next((a.value for a in call.args if a.name == name), None)


def _where(value: Value, columns: dict[str, str], parser: _Parser) -> str:
    """``raw("...")`` -> its SQL; the object syntax -> equivalent SQL on the mapped columns
    (``{ active: true, deletedAt: null }`` -> ``"active" = true AND "deletedAt" IS NULL``)."""
    if isinstance(value, Call) and value.name == "raw" and value.args:
        raw = value.args[0].value
        if isinstance(raw, Str):
            return raw.value
    if isinstance(value, Object):
        parts = []
        for key, cond in value.entries:
            column = '"' + columns.get(key, key).replace('"', '""') + '"'
            negate = isinstance(cond, Object) and [k for k, _ in cond.entries] == ["not"]
            if isinstance(cond, Object) and negate:
                cond = cond.entries[0][1]
            literal = _sql_literal(cond)
            if literal == "NULL":
                parts.append(f"{column} IS {'NOT ' if negate else ''}NULL")
            else:
                parts.append(f"{column} {'<>' if negate else '='} {literal}")
        return " AND ".join(parts)
    return parser.text[value.start : value.end]


def _sql_literal(value: Value) -> str:
    if isinstance(value, Str):
        return "'" + value.value.replace("'", "''") + "'"
    if isinstance(value, Word):
        return "NULL" if value.text == "null" else value.text
    return "NULL"


def parse_text(text: str, path: Path | None = None) -> PrismaSchema:
    """Parse one schema file's text (``path`` only names it in spans and errors)."""
    parsed = _Parser(text, path).parse()
    return _merge([(path, text, parsed)])


def read_schema(path: Path) -> PrismaSchema:
    """Read a schema file, or a folder's ``*.prisma`` files (recursively) as one schema."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.prisma") if p.is_file())
        if not files:
            raise ConfigError(f"{path}: no .prisma files in this folder")
    elif path.is_file():
        files = [path]
    else:
        raise ConfigError(f"{path}: Prisma schema not found")
    parsed = []
    for file in files:
        try:
            with file.open(encoding="utf-8", newline="") as handle:  # keep \r\n for patches
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read the Prisma schema: {exc}") from exc
        parsed.append((file, text, _Parser(text, file).parse()))
    return _merge(parsed)


def _merge(parsed: Sequence[tuple[Path | None, str, _File]]) -> PrismaSchema:
    seen: dict[str, Span | None] = {}
    for _, text, part in parsed:
        named: list[Enum | Model] = [*part.enums, *part.models]
        for item in named:
            if item.name in seen:
                first = seen[item.name]
                where = f"{first.path}" if first and first.path else "schema.prisma"
                span = item.span
                raise _located(
                    text,
                    span.path if span else None,
                    span.start if span else 0,
                    f"`{item.name}` is defined twice (also in {where})",
                )
            seen[item.name] = item.span
    datasources = [d for _, _, part in parsed for d in part.datasources]
    if len(datasources) > 1:
        span = datasources[1].span
        text = next(t for p, t, _ in parsed if span is not None and p == span.path)
        raise _located(
            text,
            span.path if span else None,
            span.start if span else 0,
            "more than one datasource block (Prisma allows one)",
        )
    return PrismaSchema(
        datasource=datasources[0] if datasources else None,
        generators=tuple(g for _, _, part in parsed for g in part.generators),
        enums=tuple(e for _, _, part in parsed for e in part.enums),
        models=tuple(m for _, _, part in parsed for m in part.models),
        files=tuple(p for p, _, _ in parsed if p is not None),
        texts={p: t for p, t, _ in parsed if p is not None},
    )
