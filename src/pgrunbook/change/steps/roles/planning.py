"""``plan``: the roles that are missing, and each privilege a role does not hold yet.

Each grant is its own operation whose inverse revokes exactly what it granted, so a role
that existed before keeps its earlier privileges through a rollback. A missing role is
created with a generated password whose SCRAM verifier is computed here, client-side: the
executed statement (``run_sql``) carries only the verifier, and the statement that is shown
and journaled (``sql``) only a mask, so the password reaches neither the server nor its log.
Neon refuses verifiers; there ``run_sql`` hands the plaintext over the way
``spec.PLAINTEXT_CREATE_SQL`` describes, out of pg_stat_statements and the statement log.
"""

from __future__ import annotations

import secrets
from typing import Any

import psycopg

from pgrunbook.change.lockmodes import LockMode
from pgrunbook.change.operation import Operation
from pgrunbook.change.refs import ObjectRef, RefKind
from pgrunbook.change.step import Refusal, Skip, StepContext, StepPlan
from pgrunbook.change.steps.roles.spec import (
    DEFAULT_OBJTYPE,
    ID,
    JOURNAL_SCHEMA,
    MASK,
    PASSWORD_ALGORITHM,
    PASSWORD_BYTES,
    DefaultGrant,
    Grant,
    Objects,
    RoleGrants,
    create_role,
    create_role_plaintext,
    grantee,
    on_database,
    on_relation,
    on_schema,
    role_grants,
    undo_create_role,
)
from pgrunbook.change.steps.roles.state import RelationRow, State, read_state


def new_password() -> str:
    """256 random bits, URL-safe (no percent-encoding needed, though it is applied)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def scram_verifier(conn: psycopg.Connection[Any], role: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier of ``password``, computed by libpq (no server round trip)."""
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), PASSWORD_ALGORITHM)
    return verifier.decode()


def _missing(wanted: tuple[str, ...], held: set[str]) -> tuple[str, ...]:
    return tuple(p for p in wanted if p not in held)


def _text(privileges: tuple[str, ...]) -> str:
    return ", ".join(privileges)


class _Planner:
    def __init__(self, ctx: StepContext, state: State) -> None:
        self.ctx = ctx
        self.state = state
        self.schema = ctx.schema
        self.out = StepPlan(ID)

    def op(
        self,
        obj: str,
        grant: Grant | DefaultGrant,
        why: str,
        *,
        table: tuple[str, str] | None = None,
    ) -> Operation:
        return Operation(
            step=ID,
            object=obj,
            sql=grant.grant(),
            reverse_sql=grant.revoke(),
            transactional=True,
            # GRANT on a table or sequence takes ACCESS SHARE on it while it resolves the name:
            # it only waits behind an ACCESS EXCLUSIVE holder and never blocks the app
            lock_mode=LockMode.ACCESS_SHARE if table else None,
            table=table,
            why=why,
        )

    # -- roles -----------------------------------------------------------------------------

    def role(self, wanted: RoleGrants) -> bool:
        """Plan the role; True when it exists or will be created (grants can follow)."""
        name = wanted.role
        existing = self.state.roles.get(name)
        if existing is not None:
            self.out.present.append(
                f"role {name} (exists; pgrunbook never changes its password or attributes)"
            )
            unwanted = existing.unwanted()
            if unwanted:
                self.out.warnings.append(
                    f"role {name} existed before pgrunbook and has {', '.join(unwanted)}; an "
                    f"application role should be LOGIN without these (pgrunbook does not "
                    f"change roles it did not create: ALTER ROLE {name} ... yourself)"
                )
            return True
        me = self.state.me
        if not (me.superuser or me.createrole):
            self.out.refused.append(
                Refusal(
                    object=f"role {name}",
                    reason=f"role {name} does not exist and {me.name} may not create roles "
                    "(it has neither CREATEROLE nor SUPERUSER); its grants are not planned",
                    fix="run pgrunbook as a role with CREATEROLE (on Neon the project owner, "
                    f"e.g. neondb_owner), or create role {name} first",
                )
            )
            return False
        password = new_password()
        self.out.secrets[name] = password
        if me.neon or self.ctx.server.neon:
            run_sql = create_role_plaintext(name, password)
            sent = (
                "sent in plain text, as Neon requires, and kept out of pg_stat_statements "
                "and the statement log"
            )
        else:
            run_sql = create_role(name, scram_verifier(self.ctx.conn, name, password))
            sent = "sent only as a SCRAM-SHA-256 verifier computed here"
        self.out.operations.append(
            Operation(
                step=ID,
                object=f"role {name}",
                sql=create_role(name, MASK),
                reverse_sql=undo_create_role(self.schema, name),
                transactional=True,
                why=f"the application role that {wanted.summary}; its password is generated "
                f"(256 bits) and {sent}",
                ref=ObjectRef(RefKind.ROLE, name),
                creates=True,
                run_sql=run_sql,
            )
        )
        return True

    def connect(self, wanted: RoleGrants) -> None:
        db = self.state.database
        role = wanted.role
        if role in db.can_connect or (role not in self.state.roles and db.public_connect):
            return
        obj = f"grant CONNECT on database {db.name} to {role}"
        if not db.grantable:
            self.out.skipped.append(
                Skip(
                    obj,
                    f"PUBLIC may not connect to {db.name} and {self.state.me.name} may "
                    "not grant CONNECT on it (only its owner can): ask the owner to "
                    f"GRANT CONNECT ON DATABASE {db.name} TO {role}",
                )
            )
            return
        grant = Grant(("CONNECT",), on_database(db.name), grantee(role))
        self.out.operations.append(
            self.op(obj, grant, f"{role} must connect: PUBLIC may not connect to {db.name}")
        )

    # -- privileges ------------------------------------------------------------------------

    def schema_grants(self, wanted: RoleGrants) -> None:
        assert self.state.schema is not None
        role, schema = wanted.role, self.schema
        missing = _missing(wanted.schema, self.state.holds("schema", schema, role))
        label = f"{_text(wanted.schema)} on schema {schema} to {role}"
        if not missing:
            self.out.present.append(label)
            return
        grantable = tuple(p for p in missing if p in self.state.schema.grantable)
        ungrantable = tuple(p for p in missing if p not in grantable)
        if ungrantable:
            self.out.skipped.append(
                Skip(
                    f"{_text(ungrantable)} on schema {schema} to {role}",
                    f"schema {schema} is owned by {self.state.schema.owner} and "
                    f"{self.state.me.name} may not grant {_text(ungrantable)} on it: run "
                    "this step as its owner",
                )
            )
        if grantable:
            why = (
                f"{role} may create objects in {schema} ({wanted.summary})"
                if "CREATE" in grantable
                else f"{role} may use the objects in {schema}"
            )
            grant = Grant(grantable, on_schema(schema), grantee(role))
            self.out.operations.append(
                self.op(f"grant {_text(grantable)} on schema {schema} to {role}", grant, why)
            )

    def relation_grants(self, wanted: RoleGrants, rel: RelationRow) -> None:
        role, schema = wanted.role, self.schema
        kind = "sequence" if rel.is_sequence else "table"
        privileges = wanted.sequences if rel.is_sequence else wanted.tables
        label = f"{kind} {schema}.{rel.name}"
        missing = _missing(privileges, self.state.holds(kind, rel.name, role))
        if not missing:
            self.out.present.append(f"{_text(privileges)} on {label} to {role}")
            return
        grantable = tuple(p for p in missing if p in rel.grantable)
        ungrantable = tuple(p for p in missing if p not in grantable)
        if ungrantable:
            self.out.skipped.append(
                Skip(
                    f"{_text(ungrantable)} on {label} to {role}",
                    f"{label} is owned by {rel.owner} and {self.state.me.name} neither owns "
                    f"it nor holds {_text(ungrantable)} WITH GRANT OPTION: run this step as "
                    "its owner",
                )
            )
        if grantable:
            target = on_relation("SEQUENCE" if rel.is_sequence else "TABLE", schema, rel.name)
            grant = Grant(grantable, target, grantee(role))
            self.out.operations.append(
                self.op(
                    f"grant {_text(grantable)} on {label} to {role}",
                    grant,
                    f"{role} {wanted.summary}",
                    table=(schema, rel.name),
                )
            )

    def default_grants(self, wanted: RoleGrants) -> None:
        role, me = wanted.role, self.state.me.name
        kinds: tuple[tuple[Objects, tuple[str, ...]], ...] = (
            ("TABLES", wanted.tables),
            ("SEQUENCES", wanted.sequences),
        )
        for objects, privileges in kinds:
            held = self.state.defaults.get((me, DEFAULT_OBJTYPE[objects], role), set())
            where = f"default privileges of {me} in {self.schema}"
            kind = objects.lower()
            missing = _missing(privileges, held)
            if not missing:
                self.out.present.append(f"{where}: {_text(privileges)} on {kind} to {role}")
                continue
            grant = DefaultGrant(missing, objects, self.schema, role, creator=me)
            self.out.operations.append(
                self.op(
                    f"{where}: {_text(missing)} on {kind} to {role}",
                    grant,
                    f"{objects.lower()} that {me} creates later in {self.schema} (e.g. by a "
                    f"migration) give {role} the same privileges at once",
                )
            )

    def public_create(self) -> None:
        schema_row = self.state.schema
        assert schema_row is not None
        if not schema_row.public_create:
            return
        obj = f"revoke CREATE on schema {self.schema} from PUBLIC"
        roles = self.ctx.profile.roles
        app_roles = f"{roles.user} and {roles.readonly}"
        if schema_row.public_create_by_other or not schema_row.acts_as_owner:
            self.out.warnings.append(
                f"PUBLIC may create objects in schema {self.schema}, so {app_roles} can run "
                f"DDL there, and {self.state.me.name} cannot revoke it "
                f"(a grant by another role, or not the owner): ask {schema_row.owner} to run "
                f"REVOKE CREATE ON SCHEMA {self.schema} FROM PUBLIC"
            )
            return
        grant = Grant(("CREATE",), on_schema(self.schema), grantee(None))
        self.out.operations.append(
            Operation(
                step=ID,
                object=obj,
                sql=grant.revoke(),
                reverse_sql=grant.grant(),
                transactional=True,
                why=f"PUBLIC may create objects in schema {self.schema} (the default before "
                f"PostgreSQL 15), which would let {app_roles} run DDL; after "
                "this only the owner, app_admin and roles granted CREATE may (a role that "
                "created objects there through PUBLIC loses that)",
            )
        )


def plan(ctx: StepContext) -> StepPlan:
    """The roles and privileges still missing (read-only: it changes nothing)."""
    if ctx.schema == JOURNAL_SCHEMA:
        out = StepPlan(ID)
        out.skipped.append(
            Skip(f"schema {ctx.schema}", "the pgrunbook schema holds the journal, not app data")
        )
        return out
    wanted = role_grants(ctx.profile.roles, ctx.server.version_num)
    state = read_state(ctx.conn, ctx.schema, [w.role for w in wanted], ctx.server.version_num)
    planner = _Planner(ctx, state)
    out = planner.out
    if state.schema is None:
        out.skipped.append(Skip(f"schema {ctx.schema}", "the schema does not exist"))
        return out
    usable = [w for w in wanted if planner.role(w)]
    planner.public_create()
    for w in usable:
        planner.connect(w)
        planner.schema_grants(w)
        for rel in state.relations:
            planner.relation_grants(w, rel)
        planner.default_grants(w)
    return out
