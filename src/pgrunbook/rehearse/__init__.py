"""``pgrunbook rehearse``: the runbook's "test scripts in a Neon branch first", automated.

The steps are applied and verified on a short-lived copy of the database (a Neon branch, or
a scratch database on the same server) that is removed afterwards; the source database is
never changed.
"""

from pgrunbook.rehearse.run import Rehearsal, StepOutcome, rehearse
from pgrunbook.rehearse.scratch import ScratchRefusedError

__all__ = ["Rehearsal", "ScratchRefusedError", "StepOutcome", "rehearse"]
