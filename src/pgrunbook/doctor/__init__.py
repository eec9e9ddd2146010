"""``pgrunbook doctor``: the runbook's troubleshooting (section 7) as diagnoses and repairs.

One module per diagnosis or repair: ``diagnose`` (the run-all), ``indexes`` (rebuild
invalid indexes), ``connections`` (idle sessions, terminated safely), ``pressure`` (idle
and idle-in-transaction sessions as findings).
"""

from pgrunbook.doctor.connections import IdleReport, IdleSession, Session, find_idle, terminate
from pgrunbook.doctor.diagnose import CHECKS, DoctorReport, diagnose
from pgrunbook.doctor.indexes import (
    REPAIR_POLICY,
    InvalidIndex,
    Repair,
    apply_repairs,
    plan_repairs,
)

__all__ = [
    "CHECKS",
    "REPAIR_POLICY",
    "DoctorReport",
    "IdleReport",
    "IdleSession",
    "InvalidIndex",
    "Repair",
    "Session",
    "apply_repairs",
    "diagnose",
    "find_idle",
    "plan_repairs",
    "terminate",
]
