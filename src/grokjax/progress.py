"""True progress of a sweep: runs done and generalized as their metrics reach the host."""

from __future__ import annotations

import sys
import time

# The plain bar: it is drawn only on a terminal, so tqdm.auto's notebook widget would never
# show, and in a Jupyter kernel without ipywidgets tqdm.auto warns "IProgress not found".
from tqdm import tqdm

PROGRESS_LINE_SECONDS = 10.0  # a log line this often when the output is not a terminal


class Progress:
    """Runs done and generalized, advanced when their metrics reach the host; a live bar on a
    terminal, a line every few seconds in a log, nothing from processes other than 0."""

    def __init__(self, name: str, show: bool):
        self.name, self.show = name, show
        self.terminal = show and sys.stderr.isatty()
        self.bar = tqdm(total=0, unit="run", disable=not self.terminal, file=sys.stderr,
                        desc=name, dynamic_ncols=True)
        self.done = self.generalized = self.run_steps = 0
        self.started = time.perf_counter()
        self.last_line = self.started

    def add(self, runs: int) -> None:
        self.bar.total += runs
        self.bar.refresh()

    def finished(self, runs: int, generalized: int, run_steps: int) -> None:
        self.done += runs
        self.generalized += generalized
        self.run_steps += run_steps
        self.bar.set_postfix_str(f"{self.generalized} generalized, "
                                 f"{self.run_steps:,} run-steps", refresh=False)
        self.bar.update(runs)
        now = time.perf_counter()
        if self.show and not self.terminal and now - self.last_line >= PROGRESS_LINE_SECONDS:
            self.last_line = now
            self.line()

    def note(self, text: str) -> None:
        self.bar.set_postfix_str(text)
        if self.show and not self.terminal:
            print(f"{self.name}: {text}", file=sys.stderr, flush=True)

    def line(self) -> None:
        seconds = time.perf_counter() - self.started
        left = self.bar.total - self.done
        eta = f", about {left * seconds / self.done:.0f}s left" if self.done and left else ""
        print(f"{self.name}: {self.done}/{self.bar.total} runs done, {self.generalized} "
              f"generalized, {self.run_steps:,} run-steps in {seconds:.0f}s "
              f"({self.run_steps / max(seconds, 1e-9):,.0f}/s){eta}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()
        if self.show and not self.terminal and self.done:
            self.line()
