"""Discovery with a Prisma schema: the relations ``schema.prisma`` declares replace the ones
inferred from column names (orphans, missing_indexes), ``prisma_relation_indexes`` reports
relation fields with no index in the schema (``relationMode = "prisma"``), and ``discover``
and ``status`` say whether Prisma mode is on and why."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pgrunbook.catalog import load_catalog
from pgrunbook.cli.main import run
from pgrunbook.connect import connect
from pgrunbook.discover import DiscoveryReport, discover
from pgrunbook.dsn import ConnInfo
from pgrunbook.findings import Severity
from pgrunbook.prisma.mode import PrismaMode, detect
from pgrunbook.prisma.parse import read_schema
from pgrunbook.prisma.relations import declarations, declared_relations
from pgrunbook.reference import ALI_SCHEMA, Naming
from pgrunbook.reference.write import project_dir
from tests.support import SeededDb, execute, url

RELATION_CHECKS = ("orphans", "missing_indexes")
CHECK = "prisma_relation_indexes"
# The reference schema's relations with no foreign key (``enforced=False``): child, column,
# parent. The reference schema.prisma does not declare them (a declaration would make
# Prisma create the foreign key); the "declared" variant below does, as a relationMode =
# "prisma" app would.
LOGICAL = [("Message", "roomId", "Room"), ("GiftSend", "roomId", "Room"),
           ("Notification", "userId", "User")]  # fmt: skip
ORPHANS = {"Message": "orphan_messages", "GiftSend": "orphan_gift_sends",
           "Notification": "orphan_notifications"}  # fmt: skip


# Schema copies -------------------------------------------------------------------------


def reference_text(naming: Naming) -> str:
    return (project_dir(naming) / "schema.prisma").read_text()


def add_to_model(text: str, model: str, *lines: str) -> str:
    """``lines`` as the first lines of ``model``'s block."""
    head = f"model {model} {{\n"
    assert text.count(head) == 1, model
    return text.replace(head, head + "".join(f"  {line}\n" for line in lines))


def prisma_relation_mode(text: str) -> str:
    """The datasource with ``relationMode = "prisma"``."""
    old = '  directUrl = env("DIRECT_URL")\n}'
    assert old in text
    return text.replace(old, '  directUrl = env("DIRECT_URL")\n  relationMode = "prisma"\n}')


def declare_logical(text: str) -> str:
    """The three logical relations declared with ``@relation`` (both sides)."""
    text = add_to_model(text, "Message", "room Room @relation(fields: [roomId], references: [id])")
    text = add_to_model(
        text, "GiftSend", "room Room? @relation(fields: [roomId], references: [id])"
    )
    text = add_to_model(
        text, "Notification", "user User @relation(fields: [userId], references: [id])"
    )
    text = add_to_model(text, "Room", "messages Message[]", "giftSends GiftSend[]")
    return add_to_model(text, "User", "notifications Notification[]")


def with_post_model(text: str, naming: Naming) -> str:
    """A ``Post`` model related to ``User`` by ``authorRef``: a column name no inference
    takes for a relation."""
    snake = naming is Naming.SNAKE
    author_map = '@map("author_ref") ' if snake else ""
    table_map = '  @@map("posts")\n' if snake else ""
    body = (
        "model Post {\n"
        "  id        String @id @db.Uuid\n"
        f"  authorRef String {author_map}@db.Uuid\n"
        "  author    User   @relation(fields: [authorRef], references: [id])\n"
        f"{table_map}"
        "}\n"
    )
    return add_to_model(text, "User", "posts Post[]") + "\n" + body


def write(tmp_path: Path, text: str, name: str = "schema.prisma") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def mode_for(path: Path) -> PrismaMode:
    mode = detect(None, "public", path.parent, path)
    assert mode.on and mode.schema is not None
    return mode


def run_checks(info: ConnInfo, mode: PrismaMode | None, *only: str) -> DiscoveryReport:
    report = discover(info, only=only, prisma=mode)
    assert [c.status for c in report.checks] == ["ran"] * len(only)
    return report


# The expected relations, from the reference model (not from the schema file) ----------


def expected_relations(naming: Naming, *, logical: bool) -> set[tuple[Any, ...]]:
    """(child table, columns, parent, parent columns, foreign key name or None)."""
    out = set()
    for table in ALI_SCHEMA.tables:
        for fk in table.foreign_keys:
            if not fk.enforced and not logical:
                continue
            out.add(
                (
                    f"public.{naming.table(table.name)}",
                    (naming.column(fk.column),),
                    f"public.{naming.table(fk.references)}",
                    ("id",),
                    fk.physical_name(table.name, naming) if fk.enforced else None,
                )
            )
    return out


def uncovered_in_schema(*, logical: bool) -> set[tuple[str, str]]:
    """(model, relation column) of every relation no index of the reference model leads
    with: Prisma's rule, computed from the model's indexes and primary key."""
    out = set()
    for table in ALI_SCHEMA.tables:
        for fk in table.foreign_keys:
            if not fk.enforced and not logical:
                continue
            leading = {index.columns[0] for index in table.indexes} | {table.primary_key}
            if fk.column not in leading:
                out.add((table.name, fk.column))
    return out


# Declared relations --------------------------------------------------------------------


def test_declared_relations_are_the_schemas_relations(seeded_db: SeededDb) -> None:
    info, naming = seeded_db.info, seeded_db.naming
    schema = read_schema(project_dir(naming) / "schema.prisma")
    with connect(info) as conn:
        catalog = load_catalog(conn, "public")

    relations = declared_relations(schema, catalog)

    found = {
        (r.child.qualified, r.columns, r.parent_name, r.parent_columns,
         r.constraint.name if r.constraint else None)
        for r in relations
    }  # fmt: skip
    assert found == expected_relations(naming, logical=False)
    assert len(relations) == len(found) == 14
    assert {r.source for r in relations} == {"prisma"}
    assert all(r.validated and r.parent is not None for r in relations)
    assert all(d.problem is None for d in declarations(schema, catalog))


def test_the_three_logical_relations_come_from_the_schema(
    seeded_db: SeededDb, tmp_path: Path
) -> None:
    info, naming = seeded_db.info, seeded_db.naming
    manifest = seeded_db.anomalies
    plain = mode_for(write(tmp_path, reference_text(naming)))
    declared = mode_for(write(tmp_path, declare_logical(reference_text(naming)), "d.prisma"))

    # Without a schema the three are inferred from their column names.
    inferred = run_checks(info, None, "orphans")
    assert {f.details["relation"]["source"] for f in inferred.by_check("orphans")} == {"inferred"}
    # The reference schema does not declare them: nothing is guessed in their place, and
    # every relation it declares has a validated foreign key (no orphans possible).
    report = run_checks(info, plain, *RELATION_CHECKS)
    assert report.by_check("orphans") == []
    assert report.facts["orphans"] == []
    missing = report.by_check("missing_indexes")
    assert {f.details["source"] for f in missing} == {"prisma"}
    assert report.facts["prisma"] == {"declared_relations": 14, "in_database": 14, "unmatched": []}

    # Declared, they are counted as the schema's relations.
    report = run_checks(info, declared, *RELATION_CHECKS)
    expected = {
        f"public.{naming.table(child)}": manifest[ORPHANS[child]] for child, _, _ in LOGICAL
    }
    findings = report.by_check("orphans")
    assert {f.object: f.details["count"] for f in findings} == expected
    for child, column, parent in LOGICAL:
        finding = next(f for f in findings if f.object == f"public.{naming.table(child)}")
        assert finding.details["relation"] == {
            "child": f"public.{naming.table(child)}",
            "columns": [naming.column(column)],
            "parent": f"public.{naming.table(parent)}",
            "parent_columns": ["id"],
            "source": "prisma",
            "constraint": None,
        }
        assert "no foreign key, relation declared in schema.prisma" in finding.message
    # exactly these three are counted: Report.messageId is no longer guessed
    counted = sorted((fact["source"], fact["count"]) for fact in report.facts["orphans"])
    assert counted == sorted(("prisma", n) for n in expected.values())

    # missing_indexes: exactly the declared relations no database index leads with.
    with connect(info) as conn:
        catalog = load_catalog(conn, "public")
    schema = declared.schema
    assert schema is not None
    relations = declared_relations(schema, catalog)
    assert len(relations) == 17
    uncovered = {
        (r.child.qualified, r.columns)
        for r in relations
        if not any(
            i.valid and i.predicate is None and i.method == "btree"
            and i.attnums[:1] == [c.num for c in r.child.columns if c.name == r.columns[0]]
            for i in r.child.indexes
        )
    }  # fmt: skip
    assert len(uncovered) == 10
    missing = report.by_check("missing_indexes")
    assert {(f.object, tuple(f.details["columns"])) for f in missing} == uncovered
    assert {f.details["source"] for f in missing} == {"prisma"}
    [gift_room] = [f for f in missing if f.details["columns"] == [naming.column("roomId")]]
    assert gift_room.object == f"public.{naming.table('GiftSend')}"
    assert gift_room.details["constraint"] is None
    assert "(declared in schema.prisma: no foreign key)" in gift_room.message


def test_a_relation_no_name_inference_finds_is_found_in_prisma_mode(
    seeded_db: SeededDb, tmp_path: Path
) -> None:
    info, naming = seeded_db.info, seeded_db.naming
    post = "posts" if naming is Naming.SNAKE else "Post"  # as the schema's @@map says
    author = naming.column("authorRef")
    schema_path = write(tmp_path, with_post_model(reference_text(naming), naming))
    mode = mode_for(schema_path)

    # Before the table exists: the declaration is reported as unmatched, nothing fails.
    report = run_checks(info, mode, *RELATION_CHECKS)
    assert report.facts["prisma"]["unmatched"] == [
        {
            "model": "Post",
            "field": "author",
            "fields": ["authorRef"],
            "relation": None,
            "problem": f"model Post's table {post} is not in public",
        }
    ]

    execute(
        info,
        f'CREATE TABLE "{post}" (id uuid PRIMARY KEY, "{author}" uuid NOT NULL);'
        f'INSERT INTO "{post}" SELECT gen_random_uuid(), id FROM "{naming.table("User")}" '
        "LIMIT 6;"
        f'INSERT INTO "{post}" SELECT gen_random_uuid(), gen_random_uuid() '
        "FROM generate_series(1, 4);",
    )
    without = run_checks(info, None, *RELATION_CHECKS)
    assert [f for f in without.findings if f.object == f"public.{post}"] == []

    report = run_checks(info, mode, *RELATION_CHECKS)
    [orphans] = [f for f in report.by_check("orphans") if f.object == f"public.{post}"]
    assert orphans.details["count"] == 4
    assert orphans.details["relation"]["source"] == "prisma"
    assert orphans.details["relation"]["columns"] == [author]
    [missing] = [f for f in report.by_check("missing_indexes") if f.object == f"public.{post}"]
    assert missing.details["columns"] == [author]
    assert missing.details["source"] == "prisma"
    assert report.facts["prisma"]["unmatched"] == []


# prisma_relation_indexes -----------------------------------------------------------------


@pytest.mark.parametrize("logical", [False, True], ids=["reference", "declared"])
def test_relation_fields_without_a_covering_index_exactly(
    seeded_db: SeededDb, tmp_path: Path, logical: bool
) -> None:
    info, naming = seeded_db.info, seeded_db.naming
    text = prisma_relation_mode(reference_text(naming))
    mode = mode_for(write(tmp_path, declare_logical(text) if logical else text))

    report = run_checks(info, mode, CHECK)

    findings = report.by_check(CHECK)
    expected = uncovered_in_schema(logical=logical)
    assert len(expected) == (10 if logical else 8)
    assert {(f.details["model"], f.details["fields"][0]) for f in findings} == expected
    for finding in findings:
        model, field = finding.details["model"], finding.details["fields"][0]
        assert finding.severity is Severity.WARNING
        assert finding.object == f"public.{naming.table(model)}"
        assert finding.fix == f"@@index([{field}])"
        assert finding.details["table"] == finding.object
        assert finding.details["columns"] == [naming.column(field)]
        assert finding.details["in_database"] is True
        assert finding.details["location"].startswith(str(tmp_path))
    # The database's covering indexes: the seeded database has exactly the schema's.
    assert {f.details["database_index"] for f in findings} == {None}
    facts = report.facts[CHECK]
    assert facts["relations"] == (17 if logical else 14)
    assert len(facts["covered"]) == facts["relations"] - len(expected)
    assert "RoomMember.room: @@unique([roomId, userId])" in facts["covered"]
    assert "Wallet.user: @unique on userId" in facts["covered"]


def test_a_database_index_the_schema_lacks_is_named(db: ConnInfo, tmp_path: Path) -> None:
    mode = mode_for(write(tmp_path, prisma_relation_mode(reference_text(Naming.PRISMA))))
    execute(
        db,
        'CREATE INDEX giftsend_gift ON "GiftSend" ("giftId");'
        'CREATE INDEX "GiftSend_senderId_idx" ON "GiftSend" ("senderId");'
        'CREATE INDEX giftsend_receiver_created ON "GiftSend" ("receiverId", "createdAt");',
    )
    found = {
        f.details["field"]: f
        for f in run_checks(db, mode, CHECK).by_check(CHECK)
        if f.details["model"] == "GiftSend"
    }

    gift, sender, receiver = found["gift"], found["sender"], found["receiver"]
    assert gift.details["database_index"] == "giftsend_gift"
    assert gift.fix == '@@index([giftId], map: "giftsend_gift")'  # adopts the index
    assert sender.details["database_index"] == "GiftSend_senderId_idx"
    assert sender.fix == "@@index([senderId])"  # Prisma's default name already
    assert receiver.details["database_index"] == "giftsend_receiver_created"
    assert receiver.fix == "@@index([receiverId])"  # not that index: it has two columns
    assert "the next prisma migrate dev drops it unless the schema declares it" in gift.message


def test_a_covering_index_in_the_schema_silences_it(db: ConnInfo, tmp_path: Path) -> None:
    text = prisma_relation_mode(reference_text(Naming.PRISMA))
    text = add_to_model(text, "GiftSend", "@@index([giftId, createdAt])")  # leads with giftId
    text = add_to_model(text, "Report", "@@index([createdAt, reporterId])")  # does not
    text = add_to_model(text, "Follow", "@@index([followingId(sort: Desc)])")
    fields = {
        (f.details["model"], f.details["field"])
        for f in run_checks(db, mode_for(write(tmp_path, text)), CHECK).by_check(CHECK)
    }
    assert ("GiftSend", "gift") not in fields
    assert ("Follow", "following") not in fields
    assert ("Report", "reporter") in fields
    assert len(fields) == 8 - 2


def test_nothing_without_a_schema_or_with_foreign_keys(db: ConnInfo, tmp_path: Path) -> None:
    report = run_checks(db, None, CHECK)
    assert report.by_check(CHECK) == []
    assert report.facts[CHECK]["reason"].startswith("no Prisma schema")
    report = run_checks(db, mode_for(write(tmp_path, reference_text(Naming.PRISMA))), CHECK)
    assert report.by_check(CHECK) == []
    assert report.facts[CHECK]["relation_mode"] == "foreignKeys"


# The CLI -------------------------------------------------------------------------------


def test_discover_json_and_human_output_say_prisma_mode(
    db: ConnInfo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, prisma_relation_mode(reference_text(Naming.PRISMA)))
    args = ["discover", "--dsn", url(db), "--check", CHECK, "--prisma-schema", str(path)]

    assert run([*args, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["prisma"] == {
        "on": True,
        "reasons": [f"Prisma schema {path} (--prisma-schema)"],
        "schema_path": str(path),
        "schema_files": [str(path)],
        "migrations_dir": str(tmp_path / "migrations"),
        "migrations_table": False,
        "relation_mode": "prisma",
        "preview_features": [],
        "models": 12,
    }
    assert len(document["findings"]) == 8
    assert {f["check"] for f in document["findings"]} == {CHECK}

    assert run(args) == 0
    out = capsys.readouterr().out
    assert (
        f"Prisma mode: on (Prisma schema {path} (--prisma-schema), relationMode prisma); "
        "14 relations declared"
    ) in " ".join(out.split())


def test_discover_finds_the_schema_and_says_when_it_is_off(
    db: ConnInfo,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["discover", "--dsn", url(db), "--check", "orphans", "--json"]
    assert run(args) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["prisma"]["on"] is False
    assert document["prisma"]["reasons"] == []
    assert len(document["findings"]) == 3  # inferred relations
    assert run(args[:-1]) == 0
    assert "Prisma mode: off (no public._prisma_migrations table" in capsys.readouterr().out

    (tmp_path / "prisma").mkdir()
    write(tmp_path / "prisma", declare_logical(reference_text(Naming.PRISMA)))
    assert run(args) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["prisma"]["reasons"] == [
        f"Prisma schema {tmp_path / 'prisma' / 'schema.prisma'} "
        "(default location prisma/schema.prisma)"
    ]
    assert {f["details"]["relation"]["source"] for f in document["findings"]} == {"prisma"}
    assert document["facts"]["prisma"]["declared_relations"] == 17


def test_status_says_prisma_mode(
    db: ConnInfo,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["status", "--dsn", url(db), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [s["state"] for s in document["steps"]] == ["pending"] * 5
    assert document["prisma"]["on"] is False

    # Prisma's migrations table alone turns it on.
    execute(
        db,
        "CREATE TABLE _prisma_migrations (id varchar(36) PRIMARY KEY, checksum varchar(64) "
        "NOT NULL, finished_at timestamptz, migration_name varchar(255) NOT NULL, logs text, "
        "rolled_back_at timestamptz, started_at timestamptz NOT NULL DEFAULT now(), "
        "applied_steps_count integer NOT NULL DEFAULT 0)",
    )
    path = write(tmp_path, reference_text(Naming.PRISMA), "app.prisma")
    assert run(["status", "--dsn", url(db), "--json", "--prisma-schema", "app.prisma"]) == 0
    prisma = json.loads(capsys.readouterr().out)["prisma"]
    assert prisma["on"] is True
    assert prisma["reasons"] == [
        "the database has public._prisma_migrations",
        f"Prisma schema {path} (--prisma-schema)",
    ]
    assert prisma["relation_mode"] == "foreignKeys"
    assert run(["status", "--dsn", url(db)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Prisma mode: on (the database has public._prisma_migrations)" in out


@pytest.mark.parametrize("command", ["discover", "status"])
def test_a_missing_schema_path_is_one_line(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.prisma"
    # No database is reached: the option is checked first (the DSN points nowhere).
    dsn = "postgresql://nobody@127.0.0.1:1/none"
    assert run([command, "--dsn", dsn, "--prisma-schema", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert re.match(rf"error: --prisma-schema {re.escape(str(missing))}: no such file", lines[0])
