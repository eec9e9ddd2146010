"""``pgrunbook schedule``: runbook section 8's maintenance schedule, run by pg_cron in the
database (or, without pg_cron, by cron / systemd timers calling ``pgrunbook run``)."""

from pgrunbook.schedule.cron import CronStatus, probe
from pgrunbook.schedule.fallback import Fallback, fallback
from pgrunbook.schedule.installer import Installed, Plan, install, plan, remove, show
from pgrunbook.schedule.jobs import CADENCES, WHEN, Job, When

__all__ = [
    "CADENCES",
    "WHEN",
    "CronStatus",
    "Fallback",
    "Installed",
    "Job",
    "Plan",
    "When",
    "fallback",
    "install",
    "plan",
    "probe",
    "remove",
    "show",
]
