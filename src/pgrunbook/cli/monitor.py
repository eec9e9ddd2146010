"""``pgrunbook monitor``: the runbook's script 09 (placeholder: not written yet)."""

from __future__ import annotations

import click


@click.command(short_help="Live snapshot: connections, locks, long queries (script 09).")
def monitor() -> None:
    """Show a live snapshot of the database (not written yet)."""
