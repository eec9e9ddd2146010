"""Runbook script 05: the application roles ``app_user``, ``app_readonly``, ``app_admin``.

- ``spec``: what each role gets, and the GRANT/REVOKE statements (one definition);
- ``state``: what the catalog says they hold;
- ``planning``: ``plan`` (missing roles with generated passwords, missing privileges);
- ``verifying``: ``verify`` (log in as each role, or SET ROLE, or the catalog);
- ``script``: ``export`` (``05_security_permissions.sql`` and its rollback);
- ``envfile``: ``write_env_file`` / ``read_env_file``, the ``.env`` lines with the passwords.
"""

from __future__ import annotations

from pgrunbook.change.step import Step
from pgrunbook.change.steps.roles.envfile import read_env_file, role_url, write_env_file
from pgrunbook.change.steps.roles.planning import plan
from pgrunbook.change.steps.roles.script import export
from pgrunbook.change.steps.roles.spec import ID
from pgrunbook.change.steps.roles.verifying import verify

STEP = Step(
    id=ID,
    number=5,
    script_name="05_security_permissions",
    title="Roles and privileges",
    plan=plan,
    verify=verify,
    export=export,
)

__all__ = ["ID", "STEP", "export", "plan", "read_env_file", "role_url", "verify", "write_env_file"]
