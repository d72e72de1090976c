"""`hub check`'s progress bar: every step counted, drawn at most every `PROGRESS_EVERY`."""

from __future__ import annotations

import io
import sys

import pytest

from hub_core.cli import accounts as cli_accounts
from hub_core.cli.accounts import PROGRESS_EVERY, Progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Bar:
    def __init__(self) -> None:
        self.updates: list[int] = []

    def update(self, steps: int) -> None:
        self.updates.append(steps)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(cli_accounts.time, "monotonic", clock)
    return clock


def test_steps_are_drawn_together_at_most_every_interval(clock: Clock) -> None:
    bar = Bar()
    progress = Progress(bar)
    for _ in range(1000):  # a burst of verdicts within one interval: nothing drawn yet
        progress.update(1)
    assert bar.updates == []
    clock.now += PROGRESS_EVERY
    progress.update(1)
    assert bar.updates == [1001]
    clock.now += PROGRESS_EVERY / 2
    progress.update(2)
    assert bar.updates == [1001]
    progress.draw()  # the end: what is left is drawn, however recent the last drawing
    assert bar.updates == [1001, 2]
    progress.draw()  # nothing more to draw
    assert bar.updates == [1001, 2]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_thousands_of_steps_are_a_few_drawings_ending_on_the_total(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with cli_accounts._progress(10_000) as progress:
        for n in range(10_000):
            if n % 2_500 == 0:
                clock.now += PROGRESS_EVERY
            progress.update(1)
    drawn = [line for line in terminal.getvalue().split("\r") if "Checking" in line]
    assert len(drawn) <= 8, drawn
    assert "10000/10000" in drawn[-1]
