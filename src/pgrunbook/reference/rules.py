"""Data rules of the reference app, shared by the seed (which breaks them on purpose), the
discovery checks and the runbook's CHECK constraints (which enforce them)."""

from __future__ import annotations

from typing import Final

# chk_user_email_format / chk_user_username_format use these (POSIX regular expressions).
EMAIL_PATTERN: Final = r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$"
USERNAME_PATTERN: Final = r"^[A-Za-z0-9_]{3,30}$"

# The runbook's retention policies (section 8): ages in days.
REFRESH_TOKEN_RETENTION_DAYS: Final = 7
READ_NOTIFICATION_RETENTION_DAYS: Final = 30
