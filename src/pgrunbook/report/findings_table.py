"""The findings of any read-only command as a terminal table, worst first."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pgrunbook.discover.run import CheckStatus
from pgrunbook.findings import Finding, Severity

STYLE = {Severity.CRITICAL: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
INFO_PER_CHECK = 3  # info findings shown per check unless verbose


def findings_table(findings: Sequence[Finding], *, verbose: bool = False) -> RenderableType:
    """Warnings and critical findings in full (with their fix); info ones a few per check."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("check / object", overflow="fold", max_width=36)
    table.add_column("finding", overflow="fold", ratio=1)
    ordered = sorted(findings, key=lambda f: -f.severity.rank)
    shown_info: Counter[str] = Counter()
    hidden: dict[str, int] = defaultdict(int)
    for finding in ordered:
        if finding.severity is Severity.INFO and not verbose:
            shown_info[finding.check] += 1
            if shown_info[finding.check] > INFO_PER_CHECK:
                hidden[finding.check] += 1
                continue
        text = Text(finding.message)
        if finding.fix and finding.severity is not Severity.INFO:
            text.append("\nfix: ", style="dim").append(finding.fix, style="green")
        table.add_row(
            Text(finding.severity.value, style=STYLE[finding.severity]),
            Text(finding.check, style="bold").append(f"\n{finding.object}", style=""),
            text,
        )
    parts: list[RenderableType] = [table]
    if hidden:
        more = ", ".join(f"{check} {n}" for check, n in hidden.items())
        parts.append(Text(f"and more info findings ({more}); --verbose shows them", style="dim"))
    return Group(*parts)


def summary_line(findings: Sequence[Finding]) -> str:
    counts = Counter(f.severity for f in findings)
    return ", ".join(
        f"{counts[s]} {s.value}" for s in (Severity.CRITICAL, Severity.WARNING, Severity.INFO)
    )


def not_run_lines(checks: Iterable[CheckStatus]) -> list[Text]:
    """One dim line per check that was skipped or failed, with the reason."""
    return [
        Text(f"{c.status}: {c.id}: {c.reason}", style="dim") for c in checks if c.status != "ran"
    ]
