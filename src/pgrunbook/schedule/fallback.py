"""Without pg_cron: crontab lines and systemd timers that call ``pgrunbook run <cadence>``.

The commands carry no connection string: ``pgrunbook run`` reads ``DIRECT_URL`` /
``DATABASE_URL`` from the environment, then from ``.env`` in the working directory, so the
password stays where it already is (and off the command line and out of the unit files).
"""

from __future__ import annotations

import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pgrunbook.schedule.jobs import CADENCES, WHEN, When

UNIT_PREFIX: Final = "pgrunbook-"

SERVICE: Final = """\
[Unit]
Description=pgrunbook run {cadence} (runbook section 8 maintenance)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
WorkingDirectory={directory}
ExecStart={command}
"""

TIMER: Final = """\
[Unit]
Description=pgrunbook run {cadence}: {on_calendar}

[Timer]
OnCalendar={on_calendar}
Persistent=true

[Install]
WantedBy=timers.target
"""


@dataclass(frozen=True)
class Unit:
    name: str  # e.g. pgrunbook-daily.timer
    text: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "text": self.text}


@dataclass(frozen=True)
class Fallback:
    """What to put in a crontab or in /etc/systemd/system instead of pg_cron jobs."""

    reason: str  # why not pg_cron
    directory: str
    crontab: list[str]
    units: list[Unit]

    def crontab_text(self) -> str:
        header = [
            "# pgrunbook maintenance schedule (runbook section 8); times in UTC",
            "# the DSN comes from DIRECT_URL / DATABASE_URL: the environment, or "
            f"{Path(self.directory) / '.env'}",
            "CRON_TZ=UTC",
        ]
        return "\n".join(header + self.crontab) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "directory": self.directory,
            "crontab": self.crontab,
            "systemd": [u.to_json() for u in self.units],
        }


def executable() -> str:
    """The ``pgrunbook`` script next to this Python, else the one on PATH, else the name."""
    beside = Path(sys.executable).parent / "pgrunbook"
    if beside.exists():
        return str(beside)
    return shutil.which("pgrunbook") or "pgrunbook"


def run_command(program: str, cadence: str, schema: str | None, profile: Path | None) -> str:
    args = [program, "run", cadence] + (["--schema", schema] if schema else [])
    args += ["--profile", str(profile.resolve())] if profile else []
    return shlex.join(args)


def fallback(
    reason: str,
    *,
    directory: Path | None = None,
    schema: str | None = None,
    profile: Path | None = None,
    program: str | None = None,
    when: dict[str, When] = WHEN,
) -> Fallback:
    """Crontab lines and a ``.service`` + ``.timer`` pair per cadence."""
    folder = str((directory or Path.cwd()).resolve())
    program = program or executable()
    crontab: list[str] = []
    units: list[Unit] = []
    for cadence in CADENCES:
        command = run_command(program, cadence, schema, profile)
        crontab.append(f"{when[cadence].cron} cd {shlex.quote(folder)} && {command}")
        name = f"{UNIT_PREFIX}{cadence}"
        service = SERVICE.format(cadence=cadence, directory=folder, command=command)
        timer = TIMER.format(cadence=cadence, on_calendar=when[cadence].on_calendar)
        units += [Unit(f"{name}.service", service), Unit(f"{name}.timer", timer)]
    return Fallback(reason, folder, crontab, units)
