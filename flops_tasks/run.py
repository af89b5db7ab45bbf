"""The run: made once per ``inv``/``flops`` invocation, passed to every workflow.

A ``Run`` owns what one invocation shares: the settings (parsed once), the dry flag, the
change log (``changes``: every change of every task goes through it), the report (every
row of every task, rendered once at the edge), the output options, confirmation, the stack
lock and the fan-out to hosts. Workflows (``flops_tasks.workflows``) take a run and add to
its report; nothing below them knows about it.

Python code that composes tasks makes one with ``Run.of(c)`` and renders with
``edge.finish(run)`` (README, "Composing tasks").
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .changes import ChangeLog
from .errors import FlopsError
from .outcome import ExitCode, Outcome, Report
from .ui import Output

if TYPE_CHECKING:
    from invoke import Context
    from invoke.config import Config

    from .config import Settings
    from .hosts import Target
    from .ssh import HostSession
    from .stack.project import Project


class Run:
    def __init__(self, config: Config, dry: bool | None = None) -> None:
        self.config = config
        self.dry = bool(config.run.dry) if dry is None else dry
        self.changes = ChangeLog()
        self.report = Report("", dry=self.dry, changes=self.changes)
        self.output = Output()
        self._settings: Settings | None = None
        self._titles: list[str] = []

    # -- making one ---------------------------------------------------------------------
    @classmethod
    def of(cls, c: Context) -> Run:
        """The invocation's run (made by the first task that asks; see ``scope``), or, for
        code that calls workflows itself, a new one."""
        holder = _current.get()
        if holder is None:
            return cls(c.config)
        if holder.run is None:
            holder.run = cls(c.config)
        return holder.run

    @property
    def settings(self) -> Settings:
        """``flops.*`` validated once per run (bad config: one ``ConfigError`` line)."""
        if self._settings is None:
            from .config import settings_of

            self._settings = settings_of(self.config)
        return self._settings

    def begin(
        self, title: str, json: bool = False, verbose: bool = False, diff: bool = False
    ) -> None:
        """A task starts: its title joins the report's, its output flags the run's."""
        self._titles.append(title)
        self.report.title = " + ".join(self._titles)
        self.output.json |= json
        self.output.verbose |= verbose
        self.output.diff |= diff

    # -- what workflows use ---------------------------------------------------------------
    def add(self, outcomes: list[Outcome]) -> None:
        self.report.extend(outcomes)

    def note(self, text: str) -> None:
        self.report.notes.append(text)

    def projects(self) -> list[Project]:
        """The stack's compose project on each engine of the placement (local first)."""
        from . import ui
        from .stack import placement

        return placement.projects(
            self.settings, dry=self.dry, progress=ui.info, changes=self.changes
        )

    def confirm(self, what: list[str], yes: bool) -> None:
        """Say what will be deleted and ask; a refusal ends the run (exit 3), nothing
        changed. A dry run and an empty list ask nothing."""
        from . import ui

        if self.dry or not what:
            return
        ui.info("This will delete:\n" + "\n".join(f"  - {item}" for item in what))
        if yes:
            return
        answer = ui.confirm("Delete it?")
        if answer is None:
            raise FlopsError(
                "nothing changed: this deletes data, so it asks first; on a terminal answer "
                "the question, in scripts pass --yes",
                code=ExitCode.REFUSED,
            )
        if not answer:
            raise FlopsError("nothing changed (not confirmed)", code=ExitCode.REFUSED)

    def stack_lock(self) -> contextlib.AbstractContextManager[None]:
        from . import locks

        project = self.settings.stack.project
        return locks.held(
            locks.stack_lock_path(project, self.settings.state_dir), f"the stack {project}"
        )

    def hosts(
        self,
        title: str,
        targets: list[Target],
        work: Callable[[HostSession], list[Outcome]],
        *,
        step: str = "connect",
        lock: bool = False,
        live: bool = True,
    ) -> list[Outcome]:
        """``work`` on every target in parallel (``ssh.fan_out``) with live progress; the
        SSH counts go to the report. Interrupted, what the hosts reported so far goes to the
        report before the interrupt goes on."""
        from . import ui
        from .interrupt import Interrupted
        from .ssh import fan_out

        traffic: dict[str, dict[str, int]] = {}
        with ui.LiveHosts(
            title, [t.label for t in targets], enabled=None if live else False
        ) as seen:
            try:
                outcomes = fan_out(
                    targets,
                    work,
                    ssh=self.settings.ssh,
                    config=self.config,
                    dry=self.dry,
                    observer=seen,
                    step=step,
                    lock=lock and not self.dry,
                    traffic=traffic,
                    changes=self.changes,
                    state_dir=self.settings.state_dir,
                )
            except Interrupted as exc:
                self.report.count_ssh(traffic)
                self.add(exc.outcomes)
                exc.outcomes = []
                raise
        self.report.count_ssh(traffic)
        return outcomes

    @contextlib.contextmanager
    def section(self, title: str) -> Iterator[Report]:
        """A report of its own for part of a workflow (say, the doctor after a bootstrap,
        summarised into one row per host): same change log, not added to the run's."""
        yield Report(title, dry=self.dry, changes=self.changes)


class _Holder:
    def __init__(self) -> None:
        self.run: Run | None = None


_current: contextvars.ContextVar[_Holder | None] = contextvars.ContextVar("flops_run", default=None)


@contextlib.contextmanager
def scope() -> Iterator[_Holder]:
    """One invocation: every ``Run.of`` inside returns the same run (made on first use)."""
    holder = _Holder()
    token = _current.set(holder)
    try:
        yield holder
    finally:
        _current.reset(token)
