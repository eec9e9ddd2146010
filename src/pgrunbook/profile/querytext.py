"""The text of a critical query (``[[queries]]`` ``sql``), split into its pieces.

``SELECT * FROM {Message} WHERE {roomId} = :room_id`` is SQL text, ``{name}`` placeholders
(a table, a column of the entry's table, or ``{Table.column}``) and ``:name`` parameters.
A ``:`` inside a quoted string or a ``::`` cast is not a parameter; ``{{`` and ``}}`` are
literal braces.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Final

_PARAM: Final = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_NAME: Final = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)?")


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Name:
    """``{Message}``, ``{roomId}`` or ``{Room.id}``."""

    name: str

    @property
    def qualified(self) -> bool:
        return "." in self.name


@dataclass(frozen=True)
class Param:
    name: str


Piece = Text | Name | Param


def _params(chunk: str, quoted: bool) -> tuple[list[Piece], bool]:
    """The text and parameters of ``chunk``; whether it ends inside a quoted string."""
    pieces: list[Piece] = []
    for i, segment in enumerate(chunk.split("'")):
        if i:
            quoted = not quoted
            pieces.append(Text("'"))
        if quoted:
            pieces.append(Text(segment))
            continue
        last = 0
        for match in _PARAM.finditer(segment):
            pieces.append(Text(segment[last : match.start()]))
            pieces.append(Param(match.group(1)))
            last = match.end()
        pieces.append(Text(segment[last:]))
    return pieces, quoted


def parse(template: str) -> list[Piece]:
    """The pieces of ``template``; ValueError for a malformed placeholder."""
    pieces: list[Piece] = []
    quoted = False
    for literal, field, spec, conversion in string.Formatter().parse(template):
        found, quoted = _params(literal, quoted)
        pieces.extend(found)
        if field is None:
            continue
        if not _NAME.fullmatch(field) or spec or conversion:
            shown = field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise ValueError(
                f"bad placeholder {{{shown}}} (write {{Table}}, {{column}} or {{Table.column}})"
            )
        pieces.append(Name(field))
    merged: list[Piece] = []
    for piece in pieces:  # adjacent texts as one
        if isinstance(piece, Text) and merged and isinstance(merged[-1], Text):
            merged[-1] = Text(merged[-1].text + piece.text)
        elif not (isinstance(piece, Text) and not piece.text):
            merged.append(piece)
    return merged


def param_names(pieces: list[Piece]) -> list[str]:
    """The parameters, in order of first use."""
    return list(dict.fromkeys(p.name for p in pieces if isinstance(p, Param)))
