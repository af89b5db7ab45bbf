"""The edge of a run: where it starts, where its report is shown, how it exits.

- ``FlopsExecutor``: Invoke's executor for every ``inv``/``flops`` invocation. All its tasks
  are one run (``run.scope``): one SSH connection per host, one change log, one report,
  rendered once after the last task; Ctrl-C is handled (``interrupt``).
- ``task``: what each task of ``tasks.py`` calls with its workflow.
- Exit codes (``outcome.ExitCode``, README "Exit codes"): a report's problems give 1
  (failed) or 4 (unreachable); a known error is one line (``FlopsError``: 1, bad input 2, a
  refused confirmation 3) printed after the partial report; Ctrl-C prints the partial report
  and exits 130; an unexpected exception is one line naming the file its traceback went to,
  and exit 70. A traceback never reaches the terminal.
"""

from __future__ import annotations

import datetime
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke.exceptions import Exit, ParseError, UnexpectedExit
from invoke.executor import Executor

from . import interrupt
from .errors import FlopsError
from .outcome import ExitCode, Report
from .run import Run, scope

if TYPE_CHECKING:
    from invoke import Context


class _Stop(Exception):
    """A task's report has problems: no later task of the invocation runs."""


def task(
    c: Context,
    title: str,
    body: Callable[[Run], object],
    *,
    json: bool = False,
    verbose: bool = False,
    diff: bool = False,
) -> Report:
    """Run ``body`` (a workflow) as the task ``title`` of the invocation's run. Inside an
    invocation, the report is rendered after the last task; a task whose report has problems
    stops the invocation there."""
    run = Run.of(c)
    run.begin(title, json=json, verbose=verbose, diff=diff)
    body(run)
    if not run.report.ok and _in_invocation():
        raise _Stop()
    return run.report


def _in_invocation() -> bool:
    from .run import _current

    return _current.get() is not None


def finish(run: Run) -> Report:
    """Render the run's report once; raise ``FlopsError`` with its exit code when it has
    problems (for Python code that composes workflows itself)."""
    from . import ui

    ui.render_report(run.report, run.output)
    if run.report.exit_code:
        raise FlopsError("", code=run.report.exit_code)
    return run.report


def state_dir(config: Any = None) -> Path:
    """Where flops-tasks keeps what it writes for itself (``paths.state_dir``)."""
    from .paths import state_dir as of

    try:
        return of(config)
    except Exception:  # a config that cannot be read: the default, never a second error
        return of(None)


def write_traceback(exc: BaseException, config: Any = None) -> str:
    """Write ``exc``'s traceback to a new file in the state directory (or the temp folder
    when that cannot be written); returns its path."""
    text = "".join(traceback.format_exception(exc))
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    for folder in (state_dir(config) / "crashes", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = folder / f"flops-tasks-{stamp}-{os.getpid()}.txt"
            path.write_text(text)
            return str(path)
        except OSError:
            continue
    return "(could not be written)"


def unexpected(exc: BaseException, config: Any = None) -> Exit:
    """One line for an exception nobody expected; the traceback goes to a file."""
    where = write_traceback(exc, config)
    return FlopsError(
        f"unexpected error: {type(exc).__name__}: {exc}; this is a flops-tasks bug: the "
        f"traceback is in {where}, please report it with that file",
        code=ExitCode.INTERNAL,
    )


def _render(run: Run) -> None:
    from . import ui

    if run.report.outcomes or run.report.notes:
        ui.render_report(run.report, run.output)


class FlopsExecutor(Executor):
    """Invoke's executor; the tasks of one invocation are one run (see the module doc)."""

    def execute(self, *tasks: Any) -> Any:
        from .ssh import shared_connections  # not at import: `inv --list` stays light

        with scope() as holder, interrupt.handling(), shared_connections():
            try:
                result = super().execute(*tasks)
            except _Stop:
                result = {}
            except interrupt.Interrupted as exc:
                run = holder.run
                if run is not None:
                    run.report.interrupted = True
                    run.add(exc.outcomes)
                    _render(run)
                    from . import ui

                    ui.render_done(run.changes)
                interrupt.exit_now(interrupt.EXIT)
            except (ParseError, UnexpectedExit):
                raise
            except Exit as exc:
                run = holder.run
                if run is not None:
                    _render(run)
                    if exc.code not in (ExitCode.BAD_INPUT, ExitCode.REFUSED):
                        from . import ui

                        ui.render_done(run.changes)
                raise
            except Exception as exc:
                raise unexpected(exc, self.config) from None
            run = holder.run
            if run is not None:
                _render(run)
                if run.report.exit_code:
                    sys.stdout.flush()
                    raise Exit(code=run.report.exit_code)
            return result
