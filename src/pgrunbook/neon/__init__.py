"""The Neon API v2, as far as pgrunbook needs it: branches and their operations."""

from pgrunbook.neon.api import NeonApi, RetryPolicy
from pgrunbook.neon.client import NeonBranches, PollPolicy
from pgrunbook.neon.errors import NeonApiError, NeonError, OperationFailedError
from pgrunbook.neon.models import Branch, CreatedBranch, Operation
from pgrunbook.neon.settings import NeonSettings

__all__ = [
    "Branch",
    "CreatedBranch",
    "NeonApi",
    "NeonApiError",
    "NeonBranches",
    "NeonError",
    "NeonSettings",
    "Operation",
    "OperationFailedError",
    "PollPolicy",
    "RetryPolicy",
]
