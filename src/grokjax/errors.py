"""What can go wrong, in two kinds: a problem the user can fix before anything runs
(``UsageError``: the command line prints it and exits 2, having written nothing) and a job
that could not finish (``SweepIncomplete``: exit 1, rerun to resume).

This module is the bottom floor: every other module may raise these, none is needed to catch
them."""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input: a sweep file, an argument, a destination. The message says what to change."""


class SpecError(UsageError):
    """A sweep that cannot run; the message lists every problem found."""

    def __init__(self, problems: list[str], source: str = "sweep"):
        self.problems = problems
        if len(problems) == 1:  # one line, for a shell or a log
            super().__init__(f"{source}: {problems[0]}")
        else:
            super().__init__(f"{source}: {len(problems)} problem(s):\n" +
                             "\n".join(f"  - {p}" for p in problems))


class StorageError(UsageError):
    """A destination that cannot be used; the message says what to change."""


class GroupError(UsageError):
    """A group spec that names no group grokjax can build; ``problem`` says what is wrong
    without the list of accepted forms (so a product can name the factor at fault)."""

    def __init__(self, message: str, problem: str = ""):
        super().__init__(message)
        self.problem = problem or message


class DirectoryBusy(SpecError):
    """Another live process writes this sweep (or this directory)."""


class SweepIncomplete(RuntimeError):
    """The processes of a job could not all finish, or process 0 cannot see their parts."""
