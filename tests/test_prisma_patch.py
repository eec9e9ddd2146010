"""Schema edits: rendered @@index attributes, minimal inserts that read back exactly, a second
add that changes nothing, removal that restores the original bytes, multi-file schemas."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pgrunbook.errors import ConfigError
from pgrunbook.prisma.model import IndexAttr, IndexField, PrismaSchema
from pgrunbook.prisma.parse import parse_text, read_schema
from pgrunbook.prisma.patch import (
    add,
    index_attr,
    partial_indexes_allowed,
    remove,
    unified_diff,
)
from pgrunbook.reference import Naming
from pgrunbook.reference.write import project_dir

AUDIT_LOG = """\
/// Written by pgrunbook's audit triggers.
model AuditLog {
  id        BigInt   @id @default(autoincrement())
  tableName String   @map("table_name")
  createdAt DateTime @default(now()) @map("created_at")

  @@map("audit_log")
}
"""


def _reference(tmp_path: Path, naming: Naming, *, partial: bool = False) -> PrismaSchema:
    shutil.copytree(project_dir(naming), tmp_path / "prisma")
    path = tmp_path / "prisma" / "schema.prisma"
    if partial:
        text = path.read_text().replace(
            '  provider = "prisma-client-js"\n',
            '  provider = "prisma-client-js"\n  previewFeatures = ["partialIndexes"]\n',
        )
        path.write_text(text)
    return read_schema(path)


def _index(schema: PrismaSchema, model: str, map_name: str) -> IndexAttr:
    found = schema.model(model)
    assert found is not None
    index = next(i for i in found.indexes if i.map == map_name)
    return IndexAttr(index.kind, index.fields, index.map, index.name, index.type, index.where)


def _write(texts: dict[Path, str]) -> None:
    for path, text in texts.items():
        path.write_bytes(text.encode())


@pytest.mark.parametrize("naming", list(Naming))
def test_index_attr_from_database_columns(tmp_path: Path, naming: Naming) -> None:
    schema = _reference(tmp_path, naming)
    message = schema.model("Message")
    assert message is not None
    col = naming.column
    columns = [(col("roomId"), False), (col("createdAt"), True)]
    assert index_attr(
        message, columns, "idx_message_room_created_desc", None, partial_allowed=False
    ) == ('@@index([roomId, createdAt(sort: Desc)], map: "idx_message_room_created_desc")')
    where = f'"{col("isDeleted")}" = false AND "{col("content")}" <> \'a\\b\''
    assert index_attr(message, columns, "idx_x", where, partial_allowed=True) == (
        '@@index([roomId, createdAt(sort: Desc)], map: "idx_x", where: raw("\\"'
        + col("isDeleted")
        + '\\" = false AND \\"'
        + col("content")
        + "\\\" <> 'a\\\\b'\"))"
    )
    assert index_attr(message, columns, "idx_x", where, partial_allowed=False) is None
    assert index_attr(message, [("nope", False)], "idx_x", None, partial_allowed=True) is None
    # a relation field is not a column, even if a column had its name
    assert index_attr(message, [("sender", False)], "idx_x", None, partial_allowed=True) is None


def test_partial_indexes_allowed_by_the_preview_feature(tmp_path: Path) -> None:
    assert not partial_indexes_allowed(_reference(tmp_path / "a", Naming.PRISMA))
    assert partial_indexes_allowed(_reference(tmp_path / "b", Naming.PRISMA, partial=True))
    other = parse_text('generator c {\n  provider = "x"\n  previewFeatures = ["views"]\n}\n')
    assert not partial_indexes_allowed(other)


@pytest.mark.parametrize("naming", list(Naming))
def test_add_reads_back_and_remove_restores_the_bytes(tmp_path: Path, naming: Naming) -> None:
    schema = _reference(tmp_path, naming, partial=True)
    path = schema.files[0]
    original = path.read_text()
    col = naming.column
    message, gift = schema.model("Message"), schema.model("Gift")
    assert message is not None and gift is not None
    partial_where = f'"{col("isDeleted")}" = false'
    attrs = [
        (
            "Message",
            "idx_message_room_created_desc",
            index_attr(
                message,
                [(col("roomId"), False), (col("createdAt"), True)],
                "idx_message_room_created_desc",
                None,
                partial_allowed=True,
            ),
        ),
        (
            "Message",
            "idx_message_room_active",
            index_attr(
                message,
                [(col("roomId"), False), (col("createdAt"), True)],
                "idx_message_room_active",
                partial_where,
                partial_allowed=True,
            ),
        ),
        (
            "Gift",
            "idx_gift_active",
            index_attr(
                gift, [(col("isActive"), False)], "idx_gift_active", None, partial_allowed=True
            ),
        ),
    ]
    indexes = [(m, name, attr) for m, name, attr in attrs if attr is not None]
    assert len(indexes) == 3
    new = add(schema, indexes=indexes, models=[AUDIT_LOG])
    assert list(new) == [path]
    _write(new)
    again = read_schema(path)
    assert _index(again, "Message", "idx_message_room_created_desc") == IndexAttr(
        "index",
        (IndexField("roomId"), IndexField("createdAt", sort="Desc")),
        map="idx_message_room_created_desc",
    )
    assert _index(again, "Message", "idx_message_room_active") == IndexAttr(
        "index",
        (IndexField("roomId"), IndexField("createdAt", sort="Desc")),
        map="idx_message_room_active",
        where=partial_where,
    )
    assert _index(again, "Gift", "idx_gift_active") == IndexAttr(
        "index", (IndexField("isActive"),), map="idx_gift_active"
    )
    audit = again.model("AuditLog")
    assert audit is not None and audit.db_name == "audit_log"
    assert [m.name for m in again.models][-1] == "AuditLog"
    # everything else is untouched: the old text is the new one minus the inserted lines
    diff = unified_diff(schema, new)
    added = [ln[1:] for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    assert not [ln for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    assert added == [
        f"  {indexes[0][2]}",
        f"  {indexes[1][2]}",
        *([""] if naming is Naming.PRISMA else []),  # Gift had no block attribute (no @@map)
        f"  {indexes[2][2]}",
        "",
        *AUDIT_LOG.splitlines(),
    ]
    # a second add changes nothing
    assert add(again, indexes=indexes, models=[AUDIT_LOG]) == {}
    # and removing gives back the original bytes
    removed = remove(
        again,
        index_maps=["idx_message_room_created_desc", "idx_message_room_active", "idx_gift_active"],
        models=["AuditLog"],
    )
    assert removed == {path: original}


def test_gift_without_block_attributes_gets_a_blank_line_then_the_attribute() -> None:
    text = "model Gift {\n  id   Int  @id\n  name String\n}\n"
    schema = parse_text(text, Path("s.prisma"))
    new = add(schema, indexes=[("Gift", "g_idx", '@@index([name], map: "g_idx")')])
    assert new == {
        Path("s.prisma"): (
            'model Gift {\n  id   Int  @id\n  name String\n\n  @@index([name], map: "g_idx")\n}\n'
        )
    }
    back = parse_text(new[Path("s.prisma")], Path("s.prisma"))
    assert remove(back, index_maps=["g_idx"]) == {Path("s.prisma"): text}


ODD = (
    "// header comment\r\n"
    "model Post {\r\n"
    "\tid\tInt\t@id // tabs\r\n"
    "\t/// the author\r\n"
    '\tauthorId   Int    @map("author_id")\r\n'
    "\r\n"
    "\t@@index([authorId])   // keep me\r\n"
    "\t// a comment between attributes\r\n"
    '\t@@map("posts")\r\n'
    "}\r\n"
    "\r\n"
    "/// Doc of Tag, line 1\r\n"
    "/// line 2\r\n"
    "model Tag {\r\n"
    "\tid Int @id\r\n"
    "}\r\n"
)


def test_comments_odd_spacing_and_crlf_are_untouched() -> None:
    path = Path("odd.prisma")
    schema = parse_text(ODD, path)
    attr = '@@index([authorId(sort: Desc)], map: "p_idx")'
    post = schema.model("Post")
    assert post is not None
    assert index_attr(post, [("author_id", True)], "p_idx", None, partial_allowed=False) == attr
    new = add(schema, indexes=[("Post", "p_idx", attr)], models=["model Note {\n  id Int @id\n}\n"])
    expected = (
        ODD.replace('\t@@map("posts")\r\n', f'\t@@map("posts")\r\n\t{attr}\r\n')
        + "\r\nmodel Note {\r\n  id Int @id\r\n}\r\n"
    )
    assert new == {path: expected}
    back = parse_text(expected, path)
    assert remove(back, index_maps=["p_idx"], models=["Note"]) == {path: ODD}
    # removing a documented model takes its /// lines and one blank line before it
    assert remove(schema, models=["Tag"]) == {path: ODD.split("\r\n\r\n/// Doc")[0] + "\r\n"}
    # removing an index that was there keeps the comments around it
    assert remove(schema, index_maps=["nope"]) == {}


def test_multi_file_edits_touch_only_the_files_concerned(tmp_path: Path) -> None:
    folder = tmp_path / "schema"
    (folder / "models").mkdir(parents=True)
    files = {
        folder / "schema.prisma": 'datasource db {\n  provider = "postgresql"\n}\n',
        folder / "models" / "message.prisma": (
            "model Message {\n  id     Int @id\n  roomId Int\n\n  @@index([roomId])\n}\n"
        ),
        folder / "models" / "room.prisma": "// rooms\nmodel Room {\n  id Int @id\n}\n",
    }
    _write(files)
    schema = read_schema(folder)
    attr = '@@index([roomId], map: "m_idx")'
    new = add(schema, indexes=[("Message", "m_idx", attr)], models=[AUDIT_LOG])
    message = folder / "models" / "message.prisma"
    assert new == {
        message: (
            "model Message {\n  id     Int @id\n  roomId Int\n\n  @@index([roomId])\n"
            f"  {attr}\n}}\n\n{AUDIT_LOG}"
        )
    }  # the new model goes to the file holding the first model
    _write(new)
    again = read_schema(folder)
    assert _index(again, "Message", "m_idx").fields == (IndexField("roomId"),)
    audit = again.model("AuditLog")
    assert audit is not None and audit.span is not None and audit.span.path == message
    assert add(again, indexes=[("Message", "m_idx", attr)], models=[AUDIT_LOG]) == {}
    assert remove(again, index_maps=["m_idx"], models=["AuditLog"]) == {message: files[message]}
    diff = unified_diff(schema, new)
    assert diff.startswith(f"--- a/{message}\n+++ b/{message}\n")


def test_unknown_model_is_a_config_error() -> None:
    schema = parse_text("model A {\n  id Int @id\n}\n", Path("a.prisma"))
    with pytest.raises(ConfigError) as err:
        add(schema, indexes=[("B", "x", '@@index([id], map: "x")')])
    assert str(err.value) == "model `B` is not in the Prisma schema"
