"""What the conformance check found: one `Finding` per check, gathered in a `ConformanceReport`."""

from __future__ import annotations

from typing import Literal

import attrs

Outcome = Literal["pass", "fail", "skip"]


@attrs.frozen
class Finding:
    """One check's verdict: ``pass``, ``fail`` or ``skip``, with what was found."""

    check: str
    outcome: Outcome
    message: str = ""
    provider: str | None = None

    def __str__(self) -> str:
        where = f"{self.provider}: " if self.provider else ""
        text = f"{self.outcome.upper():4} {where}{self.check}"
        return f"{text}: {self.message}" if self.message else text


@attrs.frozen
class ConformanceReport:
    """Every finding of one conformance check of one plugin; ``ok`` when nothing failed."""

    plugin: str
    findings: tuple[Finding, ...]

    @property
    def failures(self) -> list[Finding]:
        """The checks that failed."""
        return [f for f in self.findings if f.outcome == "fail"]

    @property
    def skipped(self) -> list[Finding]:
        """The checks that could not run, with why."""
        return [f for f in self.findings if f.outcome == "skip"]

    @property
    def passed(self) -> list[Finding]:
        """The checks that passed."""
        return [f for f in self.findings if f.outcome == "pass"]

    @property
    def ok(self) -> bool:
        """Whether no check failed (skipped checks do not count against the plugin)."""
        return not self.failures

    def summary(self) -> str:
        """One line: the plugin and how many checks passed, failed and were skipped."""
        return (
            f"hub conformance of {self.plugin}: {len(self.passed)} passed, "
            f"{len(self.failures)} failed, {len(self.skipped)} skipped"
        )

    def __str__(self) -> str:
        shown = [f for f in self.findings if f.outcome != "pass"]
        return "\n".join([self.summary(), *(str(f) for f in shown)])

    def raise_for_failures(self) -> None:
        """Raise `ConformanceError` listing every failure, if any check failed."""
        if not self.ok:
            raise ConformanceError(self)


class ConformanceError(AssertionError):
    """A plugin failed the conformance check; ``report`` holds every finding."""

    def __init__(self, report: ConformanceReport) -> None:
        super().__init__(str(report))
        self.report = report


@attrs.define
class Findings:
    """Collects findings as the check goes; `for_provider` files them under one provider."""

    items: list[Finding] = attrs.Factory(list)
    provider: str | None = None

    def for_provider(self, provider: str) -> Findings:
        """A view adding to the same list, each finding filed under *provider*."""
        return Findings(self.items, provider)

    def add(self, check: str, problems: list[str] | str | None, passed: str = "") -> bool:
        """Record *check* as failed with *problems*, or passed (saying *passed*) if none."""
        if isinstance(problems, str):
            problems = [problems]
        if problems:
            self.items.append(Finding(check, "fail", "; ".join(problems), self.provider))
            return False
        self.items.append(Finding(check, "pass", passed, self.provider))
        return True

    def skip(self, check: str, why: str) -> None:
        """Record *check* as skipped, saying why."""
        self.items.append(Finding(check, "skip", why, self.provider))
