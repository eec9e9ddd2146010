"""The rehearsal as people read it: where it ran, a row per step, the verify result."""

from __future__ import annotations

from typing import Final

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pgrunbook.rehearse.run import Problem, Rehearsal

PROBLEM_STYLE: Final = {
    "refused": "red",
    "error": "red",
    "check failed": "red",
    "skipped": "yellow",
    "warning": "yellow",
}


def where(result: Rehearsal) -> str:
    copy = result.copy
    how = f", {copy['method']} copy" if "method" in copy else ""
    fate = "kept" if result.kept else "removed"
    return f"rehearsed on {copy['kind']} {copy['name']}{how} ({fate})"


def _counts(problems: list[Problem]) -> Text:
    """``8 refused, 8 check failed``: the problems of a step by kind (listed below)."""
    counts: dict[str, int] = {}
    for p in problems:
        counts[p.kind] = counts.get(p.kind, 0) + 1
    text = Text()
    for i, (kind, n) in enumerate(counts.items()):
        if i:
            text.append(", ")
        text.append(f"{n} {kind}", style=PROBLEM_STYLE[kind])
    return text if counts else Text("none", style="green")


def problem_lines(result: Rehearsal) -> list[Text]:
    """Each problem on one line: step, kind, what (a refusal's reason is in --json)."""
    out = []
    for step in result.steps:
        for p in step.problems:
            line = Text(f"{step.step}: ")
            line.append(p.kind, style=PROBLEM_STYLE[p.kind])
            if p.kind == "refused":
                line.append(f" {p.object}")
            elif p.kind == "skipped":
                line.append(f" {p.object}: {p.text}")
            else:  # error, warning, check failed: about the step itself
                line.append(f": {p.text}")
            out.append(line)
    return out


def fixes(result: Rehearsal) -> list[str]:
    """The distinct fixes of the refusals, in order."""
    return list(dict.fromkeys(p.fix for p in result.problems if p.kind == "refused" and p.fix))


def steps_table(result: Rehearsal) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, title=where(result), title_justify="left")
    table.add_column("step", no_wrap=True)
    table.add_column("seconds", justify="right")
    table.add_column("operations", justify="right")
    table.add_column("strongest lock")
    table.add_column("problems")
    for step in result.steps:
        table.add_row(
            step.step,
            f"{step.seconds:.2f}",
            str(len(step.operations)),
            step.lock,
            _counts(step.problems),
        )
    return table


def summary(result: Rehearsal) -> Text:
    passed = sum(1 for c in result.checks if c.passed)
    if not result.verified:
        verdict = Text("verify not run: apply stopped at an error", style="red")
    elif result.clean:
        verdict = Text(f"clean: {passed} of {len(result.checks)} checks passed", style="green")
    else:
        blocking = sum(1 for p in result.problems if p.blocking)
        verdict = Text(
            f"not clean: {blocking} problem(s), {passed} of {len(result.checks)} checks passed",
            style="red",
        )
    verdict.append(f" ({result.seconds:.1f} s in all)", style="default")
    return verdict


def render(result: Rehearsal) -> RenderableType:
    parts: list[RenderableType] = [steps_table(result), *problem_lines(result)]
    parts += [Text(f"fix the refusals with: {fix}") for fix in fixes(result)]
    parts += [Text(f"note: {n}", style="yellow") for n in result.notes]
    parts.append(summary(result))
    return Group(*parts)
