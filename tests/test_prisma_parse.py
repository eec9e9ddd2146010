"""The schema.prisma reader: the reference schema in both namings read exactly, multi-file
folders, relationMode, preview features, partial indexes, odd formatting, broken input."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgrunbook.errors import ConfigError
from pgrunbook.prisma.model import IndexAttr, IndexField, Model, PrismaSchema, RelationAttr
from pgrunbook.prisma.parse import parse_text, read_schema
from pgrunbook.reference import ALI_SCHEMA, Naming
from pgrunbook.reference.model import Index, Table
from pgrunbook.reference.write import project_dir

ACTIONS = {"RESTRICT": "Restrict", "CASCADE": "Cascade", "SET NULL": "SetNull"}
PRISMA_TYPES = {
    "uuid": "String",
    "text": "String",
    "int": "Int",
    "bool": "Boolean",
    "timestamp": "DateTime",
    "jsonb": "Json",
}


def _expected_index(table: Table, index: Index, naming: Naming) -> IndexAttr:
    name = index.physical_name(table.name, naming)
    default = Index(index.columns, index.unique).physical_name(table.name, naming)
    return IndexAttr(
        kind="unique" if index.unique else "index",
        fields=tuple(IndexField(c) for c in index.columns),
        map=name if name != default else None,
    )


def _without_spans(index: IndexAttr) -> IndexAttr:
    return IndexAttr(index.kind, index.fields, index.map, index.name, index.type, index.where)


def _check_model(model: Model, table: Table, naming: Naming) -> None:
    assert model.db_name == naming.table(table.name)
    single_unique = {i.columns[0] for i in table.indexes if i.unique and len(i.columns) == 1}
    enforced = {fk.column: fk for fk in table.foreign_keys if fk.enforced}
    for col in table.columns:
        field = model.field(col.name)
        assert field is not None, f"{table.name}.{col.name}"
        assert field.db_name == naming.column(col.name)
        assert model.column(col.name) == naming.column(col.name)
        enum = ALI_SCHEMA.enum(col.type)
        assert field.type == (enum.name if enum else PRISMA_TYPES[col.type])
        assert field.optional == col.nullable
        assert not field.is_list
        assert field.is_id == (col.name == table.primary_key)
        assert field.is_unique == (col.name in single_unique)
        assert field.is_updated_at == col.updated_at
        assert field.native_type == ("Uuid" if col.type == "uuid" else None)
        assert field.relation is None
    scalar = {c.name for c in table.columns}
    relations = {f.relation.fields: f for f in model.fields if f.relation and f.relation.fields}
    assert set(relations) == {(c,) for c in enforced}
    for column, fk in enforced.items():
        field = relations[(column,)]
        assert field.type == fk.references
        assert field.relation == RelationAttr(
            name=fk.relation_name,
            fields=(column,),
            references=("id",),
            on_delete=ACTIONS[fk.on_delete],
        )
    # the back sides: lists or optional singles of child models, with the relation's name
    back = [f for f in model.fields if f.name not in scalar and f not in relations.values()]
    expected_back = {
        (fk.back_field or "", child.name, fk.relation_name)
        for child in ALI_SCHEMA.tables
        for fk in child.foreign_keys
        if fk.references == table.name and fk.enforced
    }
    got_back = {(f.name, f.type, f.relation.name if f.relation else None) for f in back}
    assert {(t, r) for _, t, r in got_back} == {(t, r) for _, t, r in expected_back}
    assert all(f.relation is None or f.relation.fields == () for f in back)
    indexes = [i for i in table.indexes if not (i.unique and len(i.columns) == 1)]
    assert [_without_spans(i) for i in model.indexes] == [
        _expected_index(table, i, naming) for i in indexes
    ]


@pytest.mark.parametrize("naming", list(Naming))
def test_reads_the_reference_schema_exactly(naming: Naming) -> None:
    path = project_dir(naming) / "schema.prisma"
    schema = read_schema(path)
    assert schema.files == (path,)
    assert schema.texts == {path: path.read_text()}
    assert schema.datasource is not None
    assert schema.datasource.provider == "postgresql"
    assert schema.datasource.url_env == "DATABASE_URL"
    assert schema.datasource.direct_url_env == "DIRECT_URL"
    assert schema.relation_mode == "foreignKeys"
    assert [(g.name, g.provider) for g in schema.generators] == [("client", "prisma-client-js")]
    assert schema.preview_features == ()
    assert [(e.name, e.db_name, e.values) for e in schema.enums] == [
        (e.name, naming.enum_type(e.name), e.values) for e in ALI_SCHEMA.enums
    ]
    assert [m.name for m in schema.models] == [t.name for t in ALI_SCHEMA.tables]
    for table in ALI_SCHEMA.tables:
        model = schema.model(table.name)
        assert model is not None
        _check_model(model, table, naming)
        assert schema.model_for_table(naming.table(table.name)) == model


@pytest.mark.parametrize("naming", list(Naming))
def test_spans_cover_the_source_text(naming: Naming) -> None:
    path = project_dir(naming) / "schema.prisma"
    schema = read_schema(path)
    text = schema.texts[path]
    message = schema.model("Message")
    assert message is not None and message.span is not None
    block = text[message.span.start : message.span.end]
    assert block.startswith("model Message {\n") and block.endswith("\n}")
    legacy = message.indexes[1]
    assert legacy.span is not None and legacy.span.path == path
    mapped = Index(("roomId",), name="roomId_legacy").physical_name("Message", naming)
    assert text[legacy.span.start : legacy.span.end] == f'@@index([roomId], map: "{mapped}")'
    for field in message.fields:
        assert field.span is not None
        line = text[field.span.start : field.span.end]
        assert line.startswith(field.name + " ") and line == line.rstrip()
        assert text[field.span.end] == "\n"  # the span ends with the field's last attribute
    assert schema.datasource is not None and schema.datasource.span is not None
    assert text[schema.datasource.span.start :].startswith("datasource db {")


ODD = """\ufeff// leading comment
generator client {   // after the brace
\tprovider        = "prisma-client-js"
  previewFeatures = ["partialIndexes", "multiSchema"] // trailing
}

datasource db {
  provider     = "postgresql"
  url          = env("DATABASE_URL")
  relationMode = "prisma"
  schemas      = ["public", "audit"]
}

/// A documented model.
model Post{
  id        Int      @id @default(autoincrement())
  /// the title
  title     String   @db.VarChar(255) @map("post_title")
  slug      String   @unique(map: "post_slug_key")
  authorId  Int      @map(name: "author_id")
  author    User     @relation("Posts", fields:[authorId],references:[id],onDelete:Cascade,map:"fk")
  tags      String[]
  body      String?  @default("say \\"hi\\"\\n\\u00e9") // escapes
  price     Decimal  @db.Decimal(10, 2)
  circle    Unsupported("circle")?
  uuid      String   @default(dbgenerated("gen_random_uuid()")) @db.Uuid
  createdAt DateTime @default(now())
  active    Boolean  @default(true)
  deletedAt DateTime?
  @@index([authorId, createdAt(sort: Desc)], map: "idx_post_author_created_desc")
  @@index(fields: [title(length: 10, ops: raw("text_pattern_ops"))], type: BTree, name: "byTitle")
  @@index([active], map: "idx_act", where: raw("\\"active\\" = true AND \\"post_title\\" <> ''"))
  @@unique([slug, authorId], where: { active: true, deletedAt: null })
  @@unique([title], map: "t", where: { deletedAt: { not: null }, slug: { not: "x" }, authorId: 3 })
  @@index([authorId]) // a comment after an attribute
  @@map("posts")
  @@schema("public")
}

view ActivePost {
  id Int @unique
  title String
}

type Address {
  street String
}

type Alias = String @db.VarChar(5)

model User {
  id    Int    @id
  posts Post[] @relation("Posts")
  first String
  last  String

  @@id([first, last], name: "fullName")
  @@ignore
}

enum Role {
  USER  @map("user")
  ADMIN // admin
  @@map("role")
  @@schema("audit")
}
"""


def test_odd_formatting_comments_and_every_argument_form() -> None:
    schema = parse_text(ODD.replace("\n", "\r\n"), Path("odd.prisma"))
    assert schema.relation_mode == "prisma"
    assert schema.datasource is not None
    assert schema.datasource.schemas == ("public", "audit")
    assert schema.datasource.direct_url_env is None
    assert schema.preview_features == ("partialIndexes", "multiSchema")
    assert [m.name for m in schema.models] == ["Post", "User"]  # view and type skipped
    assert [(e.name, e.db_name, e.values) for e in schema.enums] == [
        ("Role", "role", ("USER", "ADMIN"))
    ]
    post = schema.model("Post")
    assert post is not None
    assert (post.db_name, post.schema) == ("posts", "public")
    title, author_id, author = post.field("title"), post.field("authorId"), post.field("author")
    assert title is not None and author_id is not None and author is not None
    assert (title.db_name, title.native_type) == ("post_title", "VarChar(255)")
    assert author_id.db_name == "author_id"
    assert author.relation == RelationAttr("Posts", ("authorId",), ("id",), "Cascade", "fk")
    slug = post.field("slug")
    assert slug is not None and slug.is_unique
    tags = post.field("tags")
    assert tags is not None and (tags.is_list, tags.optional) == (True, False)
    body = post.field("body")
    assert body is not None and body.optional
    assert body.default == '"say \\"hi\\"\\n\\u00e9"'  # the raw text inside @default(...)
    price = post.field("price")
    assert price is not None and price.native_type == "Decimal(10, 2)"
    circle = post.field("circle")
    assert circle is not None and (circle.type, circle.optional) == ("Unsupported", True)
    uuid = post.field("uuid")
    assert uuid is not None and uuid.default == 'dbgenerated("gen_random_uuid()")'
    ident = post.field("id")
    assert ident is not None and (ident.is_id, ident.default) == (True, "autoincrement()")
    assert [_without_spans(i) for i in post.indexes] == [
        IndexAttr(
            "index",
            (IndexField("authorId"), IndexField("createdAt", sort="Desc")),
            map="idx_post_author_created_desc",
        ),
        IndexAttr(
            "index",
            (IndexField("title", length=10, ops='raw("text_pattern_ops")'),),
            name="byTitle",
            type="BTree",
        ),
        IndexAttr(
            "index",
            (IndexField("active"),),
            map="idx_act",
            where='"active" = true AND "post_title" <> \'\'',
        ),
        IndexAttr(
            "unique",
            (IndexField("slug"), IndexField("authorId")),
            where='"active" = true AND "deletedAt" IS NULL',
        ),
        IndexAttr(
            "unique",
            (IndexField("title"),),
            map="t",
            where='"deletedAt" IS NOT NULL AND "slug" <> \'x\' AND "author_id" = 3',
        ),
        IndexAttr("index", (IndexField("authorId"),)),
    ]
    user = schema.model("User")
    assert user is not None
    assert [_without_spans(i) for i in user.indexes] == [
        IndexAttr("id", (IndexField("first"), IndexField("last")), name="fullName")
    ]
    posts = user.field("posts")
    assert posts is not None and posts.relation == RelationAttr("Posts", (), ())
    # spans are offsets in the unchanged text (\r\n kept)
    text = schema.texts[Path("odd.prisma")]
    assert "\r\n" in text
    index = post.indexes[0]
    assert index.span is not None
    assert text[index.span.start : index.span.end] == (
        '@@index([authorId, createdAt(sort: Desc)], map: "idx_post_author_created_desc")'
    )
    assert post.span is not None and text[post.span.start : post.span.end].endswith("}")


def test_a_folder_is_one_schema(tmp_path: Path) -> None:
    folder = tmp_path / "prisma" / "schema"
    (folder / "models").mkdir(parents=True)
    (folder / "schema.prisma").write_text(
        'generator client {\n  provider = "prisma-client-js"\n}\n\n'
        'datasource db {\n  provider = "postgresql"\n  url = env("DATABASE_URL")\n}\n'
    )
    (folder / "models" / "user.prisma").write_text(
        "model User {\n  id    Int    @id\n  posts Post[]\n}\n"
    )
    (folder / "post.prisma").write_text(
        "model Post {\n  id       Int  @id\n  authorId Int\n"
        "  author   User @relation(fields: [authorId], references: [id])\n\n"
        "  @@index([authorId])\n}\n"
    )
    (folder / "notes.txt").write_text("model Nope {")  # not a .prisma file: ignored
    schema = read_schema(folder)
    files = (folder / "models" / "user.prisma", folder / "post.prisma", folder / "schema.prisma")
    assert schema.files == files
    assert set(schema.texts) == set(files)
    assert schema.datasource is not None and schema.datasource.url_env == "DATABASE_URL"
    assert [m.name for m in schema.models] == ["User", "Post"]
    post = schema.model("Post")
    assert post is not None and post.span is not None and post.indexes[0].span is not None
    assert post.span.path == folder / "post.prisma"
    text = schema.texts[folder / "post.prisma"]
    assert text[post.indexes[0].span.start : post.indexes[0].span.end] == "@@index([authorId])"


def test_a_model_defined_twice_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.prisma").write_text("model User {\n  id Int @id\n}\n")
    (tmp_path / "b.prisma").write_text("\n\nmodel User {\n  id Int @id\n}\n")
    with pytest.raises(ConfigError) as err:
        read_schema(tmp_path)
    assert (
        str(err.value)
        == f"{tmp_path / 'b.prisma'}:3: `User` is defined twice (also in {tmp_path / 'a.prisma'})"
    )


def test_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        read_schema(tmp_path / "nope.prisma")
    assert str(err.value) == f"{tmp_path / 'nope.prisma'}: Prisma schema not found"
    with pytest.raises(ConfigError) as err:
        read_schema(tmp_path)
    assert str(err.value) == f"{tmp_path}: no .prisma files in this folder"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "model User {\n  id Int @id\n",
            "schema.prisma:1: block `model User` is never closed (missing `}`)",
        ),
        ('model User {\n  id String @default("abc)\n}\n', "schema.prisma:2: unterminated string"),
        (
            "model User {\n  id Int @id\n  name\n}\n",
            "schema.prisma:3: field `User.name` has no type (found end of line)",
        ),
        (
            "modle User {\n}\n",
            "schema.prisma:1: unexpected `modle`: expected a block "
            "(model, enum, datasource, generator, view or type)",
        ),
        (
            "model User {\n  id Int @id @default(1 2)\n}\n",
            "schema.prisma:2: expected `,` or `)` in `@default(...)`, found `2`",
        ),
        ("model User {\n  id Int @id(\n}\n", "schema.prisma:3: expected a value, found `}`"),
        ("model User {\n  id Int @id %\n}\n", "schema.prisma:2: unexpected character '%'"),
        (
            'model User {\n  id Int @id\n  @@index(map: "x")\n}\n',
            "schema.prisma:3: `@@index` needs a list of fields: `[a, b]`",
        ),
        (
            "model User {\n  id Int @id String\n}\n",
            "schema.prisma:2: unexpected `String` after field `User.id`",
        ),
        (
            'datasource db {\n  provider "postgresql"\n}\n',
            'schema.prisma:2: expected `=` after `provider`, found `"postgresql"`',
        ),
        ("model {\n}\n", "schema.prisma:1: expected a name after `model`, found `{`"),
        (
            'datasource a {\n provider = "x"\n}\ndatasource b {\n provider = "y"\n}\n',
            "schema.prisma:4: more than one datasource block (Prisma allows one)",
        ),
    ],
)
def test_broken_input_is_one_line_with_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_text(text)
    assert str(err.value) == message
    assert err.value.exit_code == 2


def test_relation_mode_prisma_and_partial_indexes_preview() -> None:
    schema = parse_text(
        'generator client {\n  provider = "prisma-client-js"\n'
        '  previewFeatures = ["partialIndexes"]\n}\n'
        'datasource db {\n  provider = "postgresql"\n  relationMode = "prisma"\n}\n'
    )
    assert schema.relation_mode == "prisma"
    assert schema.preview_features == ("partialIndexes",)
    assert isinstance(schema, PrismaSchema) and schema.files == () and schema.texts == {}
