"""Entry point: the ``pgrunbook`` group and the one place errors become exit codes."""

from __future__ import annotations

import sys

import click
from rich.markup import escape

from pgrunbook import __version__
from pgrunbook.cli.common import err_console
from pgrunbook.errors import PgRunbookError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pgrunbook")
def cli() -> None:
    """pgrunbook: the PostgreSQL optimization runbook as software.

    Discover what is wrong, apply the runbook's changes online, verify, roll back, and keep the
    database healthy. Connects with --dsn, or DIRECT_URL / DATABASE_URL from the environment or
    from .env (DDL always uses the direct endpoint, never a pooler).
    """


def _register() -> None:
    from pgrunbook.cli import (
        backup_cmd,
        branch_cmd,
        change,
        cleanup,
        demo,
        discover,
        doctor,
        explain_cmd,
        fix,
        maintain,
        monitor,
        preflight_cmd,
        prisma_cmd,
        profile_cmd,
        rehearse_cmd,
        run_cmd,
        schedule_cmd,
        seed,
        sql_cmd,
    )

    cli.add_command(seed.seed)
    cli.add_command(demo.demo)
    cli.add_command(discover.discover_cmd, name="discover")
    cli.add_command(doctor.doctor)
    cli.add_command(monitor.monitor)
    for command in (change.plan, change.apply, change.verify, change.rollback, change.status):
        cli.add_command(command)
    cli.add_command(fix.fix)
    cli.add_command(cleanup.cleanup)
    cli.add_command(maintain.maintain)
    cli.add_command(run_cmd.run_cmd)
    cli.add_command(schedule_cmd.schedule_group, "schedule")
    cli.add_command(explain_cmd.explain)
    cli.add_command(sql_cmd.sql)
    cli.add_command(profile_cmd.profile)
    cli.add_command(prisma_cmd.prisma)
    cli.add_command(backup_cmd.backup)
    cli.add_command(backup_cmd.restore)
    cli.add_command(branch_cmd.branch, "branch")
    cli.add_command(preflight_cmd.preflight)
    cli.add_command(rehearse_cmd.rehearse, "rehearse")


_register()


def run(argv: list[str] | None = None) -> int:
    """Run the CLI; bad input and connection problems become one line and exit code 2."""
    try:
        # Without standalone mode click returns the code of a raised click Exit.
        code = cli.main(args=argv, prog_name="pgrunbook", standalone_mode=False)
    except PgRunbookError as exc:
        err_console.print(f"[red]error:[/] {escape(exc.one_line())}", soft_wrap=True)
        return exc.exit_code
    except click.exceptions.Abort:
        err_console.print("aborted")
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    return code if isinstance(code, int) else 0


def main() -> None:
    sys.exit(run())
