"""Minimal edits of ``schema.prisma`` files: add or remove ``@@index`` lines and whole model
blocks, leaving every other byte (formatting, comments, line endings) as it was.

Edits work on the text kept in ``PrismaSchema.texts`` using the spans the reader recorded;
they return the new text of each changed file (``unified_diff`` shows them). Removing what
``add`` inserted gives back the original text byte for byte.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from pgrunbook.errors import ConfigError
from pgrunbook.prisma.model import Model, PrismaSchema
from pgrunbook.prisma.parse import parse_text

# Prisma's preview feature that lets @@index/@@unique carry `where: raw("...")`.
PARTIAL_INDEXES: Final = "partialIndexes"
_BLOCK_ATTR_LINE: Final = re.compile(r"[ \t]*@@")
_BLANK: Final = re.compile(r"[ \t]*(\r\n|\n|\r)")
_NEWLINE: Final = re.compile(r"\r\n|\n|\r")


def _string(value: str) -> str:
    """A Prisma string literal (JSON string syntax)."""
    return json.dumps(value, ensure_ascii=False)


def partial_indexes_allowed(schema: PrismaSchema) -> bool:
    """Whether a generator enables the ``partialIndexes`` preview feature."""
    return PARTIAL_INDEXES in schema.preview_features


def index_attr(
    model: Model,
    columns: Sequence[tuple[str, bool]],
    map: str,
    where: str | None,
    *,
    partial_allowed: bool,
) -> str | None:
    """``@@index([roomId, createdAt(sort: Desc)], map: "idx_...")`` for an index on the
    given database columns (``(column, descending)``), or None when a column has no scalar
    field in the model, or the index is partial and the schema cannot say so (the index then
    lives only in the migration SQL)."""
    fields = {f.db_name: f.name for f in model.fields if f.relation is None}
    items: list[str] = []
    for column, descending in columns:
        name = fields.get(column)
        if name is None:
            return None
        items.append(f"{name}(sort: Desc)" if descending else name)
    args = f"[{', '.join(items)}], map: {_string(map)}"
    if where is not None:
        if not partial_allowed:
            return None
        args += f", where: raw({_string(where)})"
    return f"@@index({args})"


# -- lines ------------------------------------------------------------------------------------
def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _line_start(text: str, offset: int) -> int:
    """The start of the line holding ``offset`` (a line's newline belongs to that line)."""
    found = max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset))
    if found == offset - 1 >= 0 and text.startswith("\r\n", found):  # offset is the \n of \r\n
        found = max(text.rfind("\n", 0, found), text.rfind("\r", 0, found))
    return found + 1


def _line_end(text: str, offset: int) -> int:
    """The offset after the line's newline (or the end of the text)."""
    match = _NEWLINE.search(text, offset)
    return match.end() if match else len(text)


def _prev_line_start(text: str, line_start: int) -> int | None:
    return None if line_start == 0 else _line_start(text, line_start - 1)


def _is_blank(text: str, start: int) -> bool:
    return _BLANK.match(text, start) is not None


def _indent(text: str, model: Model) -> str:
    for field in model.fields:
        if field.span is not None:
            lead = text[_line_start(text, field.span.start) : field.span.start]
            if lead.strip() == "":
                return lead
    return "  "


def _model_text(schema: PrismaSchema, model: Model) -> tuple[Path, str]:
    if model.span is None or model.span.path is None or model.span.path not in schema.texts:
        raise ConfigError(f"model `{model.name}`: its file is unknown, it cannot be edited")
    return model.span.path, schema.texts[model.span.path]


# -- add --------------------------------------------------------------------------------------
def _index_insertion(text: str, model: Model, lines: list[str]) -> tuple[int, str]:
    """Where and what to insert for new block attribute lines in one model."""
    assert model.span is not None
    nl, indent = _newline(text), _indent(text, model)
    body = "".join(f"{indent}{line}{nl}" for line in lines)
    close = model.span.end - 1  # the model's "}"
    last_attr = None
    pos = _line_end(text, model.span.start)  # the first line after "model X {"
    while pos < close:
        if _BLOCK_ATTR_LINE.match(text, pos):
            last_attr = pos
        pos = _line_end(text, pos)
    if last_attr is not None:
        return _line_end(text, last_attr), body
    start = _line_start(text, close)
    if text[start:close].strip():  # "}" shares its line with something: break the line
        return close, nl + nl + body
    before = _prev_line_start(text, start)
    blank = "" if before is not None and _is_blank(text, before) else nl
    return start, blank + body


def add(
    schema: PrismaSchema,
    *,
    indexes: Sequence[tuple[str, str, str]] = (),
    models: Sequence[str] = (),
) -> dict[Path, str]:
    """Add block attribute lines ``(model name, map, attribute text)`` and model blocks.

    An attribute whose ``map`` the model already has is skipped, and so is a model whose name
    exists: adding twice changes nothing. Returns the new text of each changed file."""
    inserts: dict[Path, list[tuple[int, str]]] = {}
    wanted: dict[str, list[str]] = {}
    maps: dict[str, set[str | None]] = {}
    for model_name, map_name, attr in indexes:
        model = schema.model(model_name)
        if model is None:
            raise ConfigError(f"model `{model_name}` is not in the Prisma schema")
        known = maps.setdefault(model_name, {i.map for i in model.indexes})
        if map_name in known:
            continue
        known.add(map_name)
        wanted.setdefault(model_name, []).append(attr)
    for model_name, lines in wanted.items():
        model = schema.model(model_name)
        assert model is not None
        path, text = _model_text(schema, model)
        inserts.setdefault(path, []).append(_index_insertion(text, model, lines))
    blocks = _new_models(schema, models)
    if blocks:
        path = _models_file(schema)
        text = schema.texts.get(path, "")
        nl = _newline(text) if text else "\n"
        lead = "" if not text or text.endswith(nl + nl) else (nl if text.endswith(nl) else nl + nl)
        joined = (nl + nl).join(nl.join(b.strip("\r\n").splitlines()) for b in blocks)
        inserts.setdefault(path, []).append((len(text), lead + joined + nl))
    out: dict[Path, str] = {}
    for path, edits in inserts.items():
        text = schema.texts.get(path, "")
        for offset, insert in sorted(edits, key=lambda e: e[0], reverse=True):
            text = text[:offset] + insert + text[offset:]
        if text != schema.texts.get(path, ""):
            out[path] = text
    return out


def _new_models(schema: PrismaSchema, models: Sequence[str]) -> list[str]:
    blocks: list[str] = []
    seen = {m.name for m in schema.models}
    for block in models:
        parsed = parse_text(block)
        if len(parsed.models) != 1:
            raise ConfigError("a model block to add must hold exactly one model")
        name = parsed.models[0].name
        if name not in seen:
            seen.add(name)
            blocks.append(block)
    return blocks


def _models_file(schema: PrismaSchema) -> Path:
    """The file new models go to: the one holding the first model (else the datasource)."""
    for item in [*schema.models, schema.datasource]:
        span = item.span if item is not None else None
        if span is not None and span.path is not None:
            return span.path
    if not schema.files:
        raise ConfigError("the Prisma schema was not read from a file: nothing to edit")
    return schema.files[0]


# -- remove -----------------------------------------------------------------------------------
def remove(
    schema: PrismaSchema,
    *,
    index_maps: Sequence[str] = (),
    models: Sequence[str] = (),
) -> dict[Path, str]:
    """Remove the block attribute lines whose ``map`` is listed and the named model blocks
    (with their ``///`` doc comments and one blank line before). Returns the changed texts."""
    cuts: dict[Path, list[tuple[int, str]]] = {}  # (offset of the line, kind)
    for model in schema.models:
        if model.span is None or model.span.path is None:
            continue
        if model.name in models:
            cuts.setdefault(model.span.path, []).append((model.span.start, "model"))
            continue
        for index in model.indexes:
            if index.map in index_maps and index.span is not None:
                cuts.setdefault(model.span.path, []).append((index.span.start, "line"))
    ends = {(m.span.path, m.span.start): m.span.end for m in schema.models if m.span is not None}
    out: dict[Path, str] = {}
    for path, items in cuts.items():
        text = schema.texts[path]
        for offset, kind in sorted(items, reverse=True):
            if kind == "model":
                text = _cut_model(text, offset, ends[(path, offset)])
            else:
                text = _cut_line(text, offset)
        if text != schema.texts[path]:
            out[path] = text
    return out


def _cut_line(text: str, offset: int) -> str:
    start, end = _line_start(text, offset), _line_end(text, offset)
    before = _prev_line_start(text, start)
    closes = re.match(r"[ \t]*}", text[end:]) is not None
    if before is not None and _is_blank(text, before) and closes:
        start = before  # the last block attribute went: its blank line goes too
    return text[:start] + text[end:]


def _cut_model(text: str, start: int, end: int) -> str:
    begin, stop = _line_start(text, start), _line_end(text, end - 1)
    while (before := _prev_line_start(text, begin)) is not None and text[before:begin].lstrip(
        " \t"
    ).startswith("///"):
        begin = before
    before = _prev_line_start(text, begin)
    if before is not None and _is_blank(text, before):
        begin = before
    return text[:begin] + text[stop:]


def unified_diff(schema: PrismaSchema, new_texts: dict[Path, str]) -> str:
    """The edits as a unified diff, file by file (what ``--dry-run`` prints)."""
    parts: list[str] = []
    for path in sorted(new_texts):
        old = schema.texts.get(path, "")
        parts.extend(
            difflib.unified_diff(
                old.splitlines(keepends=True),
                new_texts[path].splitlines(keepends=True),
                fromfile=f"a/{path}",
                tofile=f"b/{path}",
            )
        )
    return "".join(parts)
