"""Prisma migration folders for what pgrunbook ran: rendering them, and reading back the ones
pgrunbook wrote before.

A migration holds the SQL of pgrunbook's operations (the statements the journal recorded, or
the plan's), made re-runnable: statements that already are (``CREATE INDEX CONCURRENTLY IF
NOT EXISTS``, ``CREATE OR REPLACE FUNCTION``, ``VALIDATE CONSTRAINT``, ``DROP ... IF
EXISTS``) stay as they are; ``CREATE TABLE``, ``CREATE TRIGGER`` and ``ADD CONSTRAINT`` are
wrapped in a ``DO`` block that tests the catalog first; a ``GRANT``/``REVOKE`` to one of the
application roles runs only when that role exists (it does not in Prisma's shadow database).
Role creation is never written: a migration must not carry a password, and an application
role is made, with its password, by ``pgrunbook apply roles``.

How Prisma runs a migration file on PostgreSQL decides the layout (see docs/prisma.md): the
schema engine sends the whole file as one simple-query string (``apply_migration_script``:
``client.simple_query(script)``), which PostgreSQL runs as one implicit transaction, and
``CREATE/DROP INDEX CONCURRENTLY`` cannot run in a transaction block. Since prisma-engines
5767 (Prisma 7.4) the engine splits a script it can parse into statements, falling back to
the one-string form when it cannot. So every CONCURRENTLY statement gets a migration folder
of its own, which works with every Prisma version: the transactional statements of a step
share one folder, its validations another, and each concurrent build or drop is alone.

Each file starts with a marker, ``-- pgrunbook apply indexes <digest>`` (or ``rollback``),
followed by one ``-- pgrunbook-object: <definition hash> "<object>"`` line per operation it
holds, so the next ``prisma sync`` knows what pgrunbook's migrations already create or drop.
"""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Literal

from psycopg import sql

from pgrunbook import __version__
from pgrunbook.change.operation import Operation
from pgrunbook.change.refs import ObjectRef, RefKind
from pgrunbook.change.steps.triggers.script import dollar_tag

MIGRATION_FILE: Final = "migration.sql"
FOLDER_TAG: Final = "_pgrunbook_"
TIMESTAMP_FORMAT: Final = "%Y%m%d%H%M%S"  # Prisma's: 20260104000000_init
_TIMESTAMP: Final = re.compile(r"^(\d{14})_")
MARKER: Final = "-- pgrunbook"
OBJECT_LINE: Final = "-- pgrunbook-object: "
_MARKER: Final = re.compile(r"^-- pgrunbook (apply|rollback) (\S+) ([0-9a-f]{16})$")
_OBJECT: Final = re.compile(r"^-- pgrunbook-object: ([0-9a-f]{16}) (\".*\")$")
_NAME_PART: Final = re.compile(r"[^a-z0-9_]+")
NAME_PART_MAX: Final = 60
COMMENT_WIDTH: Final = 89

Kind = Literal["apply", "rollback"]
Phase = Literal["ddl", "validate", "concurrent"]

# --- re-runnable statements --------------------------------------------------------------

GUARD_SQL: Final = sql.SQL(
    "DO {tag}\nBEGIN\n    IF {condition} THEN\n{statements}\n    END IF;\nEND\n{tag}"
)
TABLE_MISSING: Final = sql.SQL("to_regclass({table}) IS NULL")
TRIGGER_MISSING: Final = sql.SQL(
    "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger\n"
    "                    WHERE tgrelid = to_regclass({table}) AND tgname = {name})"
)
CONSTRAINT_MISSING: Final = sql.SQL(
    "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint\n"
    "                    WHERE conrelid = to_regclass({table}) AND conname = {name})"
)
ROLE_EXISTS: Final = sql.SQL("EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {role})")
# CONNECT on "this" database: the name differs from one database to the next
CONNECT_SQL: Final = sql.SQL("EXECUTE format({template}, current_database(), {role})")
CONNECT_TEMPLATES: Final = {
    "GRANT": "GRANT CONNECT ON DATABASE %I TO %I",
    "REVOKE": "REVOKE CONNECT ON DATABASE %I FROM %I",
}
_CONNECT: Final = re.compile(r"^(GRANT|REVOKE) CONNECT ON DATABASE ")
# default privileges pgrunbook gives FOR ROLE <the role it ran as>; in a migration they
# belong to the role running the migration, the one that creates the later tables
_FOR_ROLE: Final = re.compile(r'^ALTER DEFAULT PRIVILEGES FOR ROLE "(?:[^"]|"")+" IN SCHEMA ')
_CREATE_FUNCTION: Final = "CREATE FUNCTION "
_DOLLAR_TAG: Final = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")

ROLE_NOTE: Final = (
    "The application roles are not created here: a migration must not carry a password, and "
    "roles are cluster-wide. `pgrunbook apply roles` creates them (LOGIN, generated "
    "passwords) and grants what they lack (`pgrunbook rollback roles` drops them); each GRANT "
    "or REVOKE here runs only where its role exists (not in Prisma's shadow database)."
)
INVALID_NOTE: Final = (
    "{object}: not recorded (pgrunbook dropped an INVALID index left by a failed build before "
    "building it again)."
)


@dataclass(frozen=True)
class Rendered:
    """An operation as it goes into a migration: its statement, run only when ``guard`` (a
    SQL condition) holds, or a note saying why it is left out (``sql`` None)."""

    op: Operation
    sql: str | None
    guard: str | None = None
    note: str | None = None

    @property
    def phase(self) -> Phase:
        if self.op.concurrent:
            return "concurrent"
        if self.op.object.startswith("validate "):
            return "validate"
        return "ddl"


def guarded(guard: str | None, statements: Sequence[str]) -> str:
    """``statements`` (one or more), inside a ``DO`` block that runs them when ``guard``
    holds; unchanged without a guard. Each statement is kept byte for byte."""
    body = "\n".join(_terminated(s) for s in statements)
    if guard is None:
        return body
    composed = GUARD_SQL.format(
        tag=sql.SQL(dollar_tag("pgrunbook", body)),
        condition=sql.SQL(guard),
        statements=sql.SQL(body),
    )
    return composed.as_string() + ";"


def _terminated(statement: str) -> str:
    return statement.rstrip().rstrip(";") + ";"


def _relation(ref: ObjectRef) -> sql.Literal:
    """``'"public"."Wallet"'``: the table a constraint or trigger is on, for to_regclass."""
    return sql.Literal(sql.Identifier(ref.schema, ref.table or ref.name).as_string())


def _grantee(statement: str, roles: Sequence[str]) -> str | None:
    """The application role a GRANT/REVOKE/ALTER DEFAULT PRIVILEGES statement names last."""
    for role in roles:
        ident = sql.Identifier(role).as_string()
        if statement.endswith((f" TO {ident}", f" FROM {ident}")):
            return role
    return None


def has_meta_command(text: str) -> bool:
    """Whether ``text`` holds a psql meta-command (``\\gset``, ``\\if``, ...): a backslash
    outside string literals, quoted identifiers, dollar quotes and comments, where SQL itself
    never has one. Prisma sends a migration file to the server as it is, without psql."""
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "'":
            escapes = i > 0 and text[i - 1] in "eE" and (i < 2 or not _word(text[i - 2]))
            i = _string_end(text, i + 1, escapes)
        elif char == '"':
            end = text.find('"', i + 1)
            while end != -1 and text.startswith('""', end):
                end = text.find('"', end + 2)
            i = n if end == -1 else end + 1
        elif (
            char == "$"
            and (tag := _DOLLAR_TAG.match(text, i))
            and (i == 0 or not _word(text[i - 1]))
        ):
            end = text.find(tag.group(0), tag.end())
            i = n if end == -1 else end + len(tag.group(0))
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end == -1 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end == -1 else end + 2
        elif char == "\\":
            return True
        else:
            i += 1
    return False


def _word(char: str) -> bool:
    return char.isalnum() or char in "_$"


def _string_end(text: str, i: int, escapes: bool) -> int:
    """The offset after the quote closing a string literal whose body starts at ``i``."""
    while i < len(text):
        if (escapes and text[i] == "\\") or text.startswith("''", i):
            i += 2
        elif text[i] == "'":
            return i + 1
        else:
            i += 1
    return len(text)


def rerunnable(op: Operation, roles: Sequence[str]) -> Rendered:
    """``op``'s SQL as a migration holds it: safe to run again, and where a role is missing.

    ``roles``: the application roles (the profile's), whose GRANTs are guarded.
    """
    text = op.sql
    if has_meta_command(text):
        raise ValueError(f"{op.object}: a psql meta-command cannot go into a Prisma migration")
    ref = op.ref
    if ref is not None and ref.kind is RefKind.ROLE:
        return Rendered(op, None, note=ROLE_NOTE)
    if op.object.startswith("invalid ") and op.reverse_sql is None:
        return Rendered(op, None, note=INVALID_NOTE.format(object=op.object))
    if ref is not None and ref.kind is RefKind.TABLE and text.startswith("CREATE TABLE "):
        return Rendered(op, text, TABLE_MISSING.format(table=_relation(ref)).as_string())
    if ref is not None and ref.kind is RefKind.TRIGGER and text.startswith("CREATE TRIGGER "):
        condition = TRIGGER_MISSING.format(table=_relation(ref), name=sql.Literal(ref.name))
        return Rendered(op, text, condition.as_string())
    if (
        ref is not None
        and ref.kind is RefKind.CONSTRAINT
        and text.startswith("ALTER TABLE ")
        and " ADD CONSTRAINT " in text
    ):
        condition = CONSTRAINT_MISSING.format(table=_relation(ref), name=sql.Literal(ref.name))
        return Rendered(op, text, condition.as_string())
    if text.startswith(_CREATE_FUNCTION):
        # pgrunbook's own definition: replacing it with itself is running it again
        return Rendered(op, "CREATE OR REPLACE FUNCTION " + text[len(_CREATE_FUNCTION) :])
    role = _grantee(text, roles)
    if role is not None:
        connect = _CONNECT.match(text)
        if connect:
            statement = CONNECT_SQL.format(
                template=sql.Literal(CONNECT_TEMPLATES[connect.group(1)]), role=sql.Literal(role)
            ).as_string()
        else:
            statement = _FOR_ROLE.sub("ALTER DEFAULT PRIVILEGES IN SCHEMA ", text)
        return Rendered(op, statement, ROLE_EXISTS.format(role=sql.Literal(role)).as_string())
    return Rendered(op, text)


# --- migrations --------------------------------------------------------------------------


@dataclass(frozen=True)
class Tracked:
    """An operation a pgrunbook migration creates (apply) or undoes (rollback)."""

    object: str
    definition_hash: str

    def line(self) -> str:
        return f"{OBJECT_LINE}{self.definition_hash} {json.dumps(self.object)}"


@dataclass(frozen=True)
class Migration:
    """One migration folder: ``<timestamp>_pgrunbook_<step>[...]/migration.sql``."""

    name: str
    kind: Kind
    step: str
    phase: Phase
    objects: tuple[Tracked, ...]
    statements: tuple[tuple[str | None, str], ...]  # (guard, statement)
    notes: tuple[str, ...] = ()

    @property
    def digest(self) -> str:
        return digest(self.objects)

    @property
    def path(self) -> Path:
        """Relative to the migrations folder."""
        return Path(self.name) / MIGRATION_FILE

    def render(self) -> str:
        what = "applied" if self.kind == "apply" else "rolled back"
        lines = [f"{MARKER} {self.kind} {self.step} {self.digest}"]
        lines += [t.line() for t in self.objects]
        lines += [
            "--",
            f"-- Written by `pgrunbook prisma sync` (pgrunbook {__version__}): the SQL pgrunbook",
            f"-- runs for what it {what} in step {self.step!r}, written to be re-runnable.",
        ]
        if self.phase == "concurrent":
            lines += [
                "-- One statement on its own: CONCURRENTLY cannot run in a transaction block, and",
                "-- Prisma sends a migration file to PostgreSQL as one query string, which runs as",
                "-- one implicit transaction when it holds several statements.",
            ]
        lines += [
            "-- On every database where pgrunbook already did this (`pgrunbook "
            + ("apply" if self.kind == "apply" else "rollback")
            + "` ran there),",
            "-- record it instead of running it:",
            f"--   npx prisma migrate resolve --applied {self.name}",
            "-- Do not edit it once it is applied anywhere: Prisma checksums migration files.",
        ]
        for note in self.notes:
            lines += ["-- " + line for line in textwrap.wrap(_printable(note), COMMENT_WIDTH)]
        return "\n".join(lines) + "\n\n" + "\n\n".join(self.blocks()) + "\n"

    def blocks(self) -> list[str]:
        """The statements, those in a row that share a guard in one ``DO`` block."""
        runs: list[tuple[str | None, list[str]]] = []
        for guard, statement in self.statements:
            if runs and guard is not None and runs[-1][0] == guard:
                runs[-1][1].append(statement)
            else:
                runs.append((guard, [statement]))
        return [guarded(guard, statements) for guard, statements in runs]


def digest(objects: Iterable[Tracked]) -> str:
    text = "\n".join(f"{t.definition_hash} {t.object}" for t in objects)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _printable(text: str) -> str:
    """``text`` on one line, safe in a ``--`` comment (a name may hold a line break)."""
    return "".join(ch if ch.isprintable() else "?" for ch in " ".join(text.split()))


def _name_part(text: str) -> str:
    return _NAME_PART.sub("_", text.lower()).strip("_")[:NAME_PART_MAX] or "x"


@dataclass
class Layout:
    """Turns each step's operations into migration folders with increasing timestamps."""

    start: datetime
    migrations: list[Migration] = field(default_factory=list)

    def add_step(
        self, step: str, kind: Kind, rendered: Sequence[Rendered], tracked: Sequence[Tracked]
    ) -> None:
        """Add ``step``'s folders. apply: its transactional statements, then its validations,
        then each concurrent statement alone; rollback: each concurrent statement alone, then
        the rest. ``tracked[i]`` is what ``rendered[i]`` records; what has no SQL (a role, a
        VALIDATE that has no inverse) is recorded, with its note, in the step's main folder."""
        prefix = step if kind == "apply" else f"rollback_{step}"
        order: tuple[Phase, ...] = (
            ("ddl", "validate", "concurrent") if kind == "apply" else ("concurrent", "ddl")
        )
        pairs = list(zip(rendered, tracked, strict=True))
        folders: list[tuple[str, Phase, list[tuple[Rendered, Tracked]]]] = []
        for phase in order:
            items = [(r, t) for r, t in pairs if r.sql is not None and r.phase == phase]
            if phase == "concurrent":
                for n, item in enumerate(items, start=1):
                    ref = item[0].op.ref
                    name = _name_part(ref.name if ref is not None else item[0].op.object)
                    folders.append((f"{prefix}_{n:02d}_{name}", phase, [item]))
            elif items:
                folders.append((prefix if phase == "ddl" else f"{prefix}_validate", phase, items))
        if not folders:
            return
        main = next((i for i, f in enumerate(folders) if f[1] != "concurrent"), 0)
        for position, (suffix, phase, items) in enumerate(folders):
            objects = [t for _, t in items]
            notes: list[str] = []
            if position == main:
                objects += [t for r, t in pairs if r.sql is None]
                notes = list(dict.fromkeys(r.note for r, _ in pairs if r.note))
            moment = self.start + timedelta(seconds=len(self.migrations))
            self.migrations.append(
                Migration(
                    name=f"{moment.strftime(TIMESTAMP_FORMAT)}{FOLDER_TAG}{suffix}",
                    kind=kind,
                    step=step,
                    phase=phase,
                    objects=tuple(objects),
                    statements=tuple((r.guard, r.sql) for r, _ in items if r.sql is not None),
                    notes=tuple(notes),
                )
            )


def next_start(migrations_dir: Path, now: datetime | None = None) -> datetime:
    """The first new folder's timestamp: now (UTC), or one second after the newest folder."""
    moment = (now or datetime.now(UTC)).replace(microsecond=0, tzinfo=None)
    for name in folder_names(migrations_dir):
        found = _TIMESTAMP.match(name)
        if found:
            latest = datetime.strptime(found.group(1), TIMESTAMP_FORMAT)
            moment = max(moment, latest + timedelta(seconds=1))
    return moment


def folder_names(migrations_dir: Path) -> list[str]:
    if not migrations_dir.is_dir():
        return []
    return sorted(p.name for p in migrations_dir.iterdir() if p.is_dir())


# --- reading back what pgrunbook wrote ----------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """A pgrunbook migration folder already in the project."""

    name: str
    kind: Kind
    step: str
    objects: tuple[Tracked, ...]


def read_header(text: str) -> tuple[Kind, str, tuple[Tracked, ...]] | None:
    """The marker and object lines at the top of a migration.sql pgrunbook wrote."""
    lines = text.splitlines()
    if not lines:
        return None
    marker = _MARKER.match(lines[0])
    if marker is None:
        return None
    objects = []
    for line in lines[1:]:
        found = _OBJECT.match(line)
        if found is None:
            break
        objects.append(Tracked(str(json.loads(found.group(2))), found.group(1)))
    kind: Kind = "apply" if marker.group(1) == "apply" else "rollback"
    return kind, marker.group(2), tuple(objects)


def read_recorded(migrations_dir: Path) -> list[Recorded]:
    """pgrunbook's migration folders in ``migrations_dir``, in Prisma's (name) order."""
    out = []
    for name in folder_names(migrations_dir):
        if FOLDER_TAG not in name:
            continue
        path = migrations_dir / name / MIGRATION_FILE
        if not path.is_file():
            continue
        header = read_header(path.read_text(encoding="utf-8"))
        if header is not None:
            out.append(Recorded(name, *header))
    return out


def migrated(recorded: Iterable[Recorded]) -> dict[str, Tracked | None]:
    """What pgrunbook's migrations leave in place: object -> how it was created, or None
    when a later migration undid it."""
    state: dict[str, Tracked | None] = {}
    for migration in recorded:
        for tracked in migration.objects:
            state[tracked.object] = tracked if migration.kind == "apply" else None
    return state
