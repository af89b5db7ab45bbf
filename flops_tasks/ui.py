"""All output of flops-tasks: the only module that imports rich.

Logic returns ``Outcome``/``Report`` objects (or plain dicts); this module shows them once,
at the outermost level, as lines (a report: its changed, warned and failed rows, then one
recap line per host), tables (status, addresses, apps) or JSON (``--json``), and provides
the progress shown during long work: live on a terminal, a line every few seconds off one.
Off a terminal nothing is cut to a terminal's width.

Text that comes from outside (worker output, file contents, container names) is data: it
is never parsed as rich markup or emoji codes, and control characters (ESC, BEL, CR, C1
codes, bidi overrides) are shown as ``\\x..`` escapes instead of reaching the terminal.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .outcome import ALWAYS_IN_RECAP, RECAP, ExitCode, Outcome, Report, Status
from .text import visible


@dataclass
class Output:
    """How the report is shown: ``--json``, ``--verbose`` (every row), ``--diff``."""

    json: bool = False
    verbose: bool = False
    diff: bool = False


if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.progress import Progress, TaskID
    from rich.table import Table
    from rich.text import Text

    from .changes import ChangeLog

_STYLE = {
    Status.OK: "green",
    Status.CHANGED: "yellow",
    Status.WARNING: "dark_orange",
    Status.SKIPPED: "cyan",
    Status.FAILED: "red",
    Status.UNREACHABLE: "magenta",
    Status.INTERRUPTED: "magenta",
}


def plain(text: object, style: str = "") -> Text:
    """A table cell or line that shows ``text`` literally (no markup, no emoji codes)."""
    from rich.text import Text

    return Text(visible(text), style=style)


# off a terminal (a pipe, a CI log) nothing is cut to a terminal's width: tables take the
# width of their content
_UNBOUNDED = 100_000


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else _UNBOUNDED
    return Console(stderr=stderr, highlight=False, soft_wrap=False, emoji=False, width=width)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    """A progress line on stderr (keeps stdout clean for tables and JSON); never wrapped."""
    _console(stderr=True).print(plain(message), soft_wrap=True)


_WIDTH = max(len(s.value) for s in Status)  # the status column


def _verdict(report: Report) -> str:
    if report.exit_code == ExitCode.INTERRUPTED:
        return "interrupted"
    if not report.ok:
        return "problems"
    if report.changed:
        return "changes planned" if report.dry else "changes made"
    return "no changes"


def _row_text(status: Status, who: str, step: str, detail: str) -> Text:
    from rich.text import Text

    line = Text()
    line.append_text(plain(f"{status.value:<{_WIDTH}}", _STYLE[status]))
    line.append_text(plain(f" {who}  {step}" + (f": {detail}" if detail else "")))
    return line


def _fix_text(fix: str) -> Text:
    return plain(f"{'':<{_WIDTH}} fix: {fix}", "bold")


def report_lines(report: Report, output: Output) -> list[Text]:
    """The report as lines: a title; the rows (``verbose``: every row of every host;
    otherwise the rows that changed, warned, failed or were cut short, identical rows of
    several hosts on one line), each fix on a line of its own; with ``diff`` every file
    change as a unified diff; one recap line per host; the notes."""
    lines: list[Text] = []
    title = report.title + (" (dry run: nothing changed)" if report.dry else "")
    lines.append(plain(f"{title}: {_verdict(report)}", "bold"))
    if output.verbose:
        groups = [([o.host], o) for o in report.outcomes]
    else:
        merged: dict[tuple[Status, str, str, str], list[str]] = {}
        for o in report.outcomes:
            if o.status is not Status.OK:
                merged.setdefault((o.status, o.step, o.detail, o.fix), []).append(o.host)
        groups = [
            (hosts, Outcome(hosts[0], step, status, detail, fix))
            for (status, step, detail, fix), hosts in merged.items()
        ]
    for i, (hosts, o) in enumerate(groups):
        lines.append(_row_text(o.status, ", ".join(hosts), o.step, o.detail))
        if o.fix and (i + 1 == len(groups) or groups[i + 1][1].fix != o.fix):
            lines.append(_fix_text(o.fix))  # once after rows that share it
        if output.verbose and report.changes is not None and o.status is Status.CHANGED:
            for change in report.changes.entries(o.host):
                if change.step == o.step:
                    lines.append(plain(f"{'':<{_WIDTH}}  - {change.summary}"))
    if output.diff and report.changes is not None:
        for change in report.changes.entries():
            for line in change.diff().splitlines():
                style = (
                    "green"
                    if line.startswith("+") and not line.startswith("+++")
                    else "red"
                    if line.startswith("-") and not line.startswith("---")
                    else ""
                )
                lines.append(plain(line, style))
    hosts = report.hosts()
    if hosts:
        counted = {s for o in report.outcomes for s in [o.status]}
        columns = [s for s in RECAP if s in ALWAYS_IN_RECAP or s in counted]
        width = max(len(visible(h)) for h in hosts)
        for host in hosts:
            counts = report.recap(host)
            text = " ".join(f"{s.value}={counts[s.value]}" for s in columns)
            lines.append(plain(f"{visible(host):<{width}}  {text}"))
    lines.extend(plain(note) for note in report.notes)
    return lines


def render_report(report: Report, output: Output | None = None) -> None:
    """The report on stdout: JSON with ``output.json``, else ``report_lines``. Off a
    terminal nothing is cut or folded."""
    output = output or Output()
    if output.json:
        print_json(report.to_dict())
        return
    console = _console()
    for line in report_lines(report, output):
        console.print(line, soft_wrap=True)


def render_done(changes: ChangeLog) -> None:
    """What was really changed before a run was cut short, and what was under way (stderr)."""
    done, unfinished = changes.done(), changes.unfinished()
    if done:
        info(
            "done before the run stopped:\n"
            + "\n".join(f"  - {c.host}: {c.step}: {c.summary}" for c in done)
        )
    if unfinished:
        info(
            "under way when the run stopped (may be partly done; a re-run repairs it):\n"
            + "\n".join(f"  - {c.host}: {c.step}: {c.summary}" for c in unfinished)
        )


class LiveHosts:
    """Progress while hosts work, on stderr: a live per-host table on a terminal; off a
    terminal a line at least every ``HEARTBEAT`` seconds of work saying which hosts are at
    which step and how many wait (nothing for work that ends sooner)."""

    HEARTBEAT = 5.0

    def __init__(self, title: str, hosts: list[str], enabled: bool | None = None) -> None:
        self.title = title
        self.state: dict[str, Text] = {h: plain("waiting") for h in hosts}
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.heartbeat = enabled is None and not self.enabled
        self._live: Live | None = None
        self._lock = threading.Lock()
        self._steps: dict[str, Callable[[], str]] = {}
        self._since: dict[str, float] = {}
        self._done: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()

    def _table(self) -> Table:
        from rich.table import Table

        table = Table(title=plain(self.title), title_justify="left")
        table.add_column("host")
        table.add_column("progress")
        for host, text in self.state.items():
            table.add_row(plain(host), text)
        return table

    def __enter__(self) -> LiveHosts:
        if self.enabled:
            from rich.live import Live

            self._live = Live(
                self._table(), console=_console(stderr=True), refresh_per_second=8, transient=True
            )
            self._live.__enter__()
        elif self.heartbeat and self.state:
            self._thread = threading.Thread(target=self._beat, name="flops-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:  # passed on to rich's Live as it is
        self._stop.set()
        if self._live is not None:
            self._live.__exit__(*exc)

    def progress_line(self) -> str:
        """Which hosts are at which step, and how many wait (the heartbeat's line)."""
        now = time.monotonic()
        with self._lock:
            busy = [
                f"{h} ({step()}, {now - self._since[h]:.0f} s)"
                for h, step in self._steps.items()
                if h not in self._done
            ]
            waiting = len(self.state) - len(self._steps)
            done = len(self._done)
        parts = [f"{self.title}: {done} of {len(self.state)} hosts done"]
        if busy:
            parts.append("at work: " + ", ".join(busy))
        if waiting:
            parts.append(f"{waiting} waiting")
        return f"[{now - self._started:.0f} s] " + "; ".join(parts)

    def _beat(self) -> None:
        while not self._stop.wait(self.HEARTBEAT):
            info(self.progress_line())

    def _set(self, host: str, text: Text) -> None:
        with self._lock:
            self.state[host] = text
            if self._live is not None:
                self._live.update(self._table())

    # Observer protocol (see ssh.Observer)
    def host_started(self, host: str, step: Callable[[], str] | None = None) -> None:
        with self._lock:
            self._steps[host] = step or (lambda: "connect")
            self._since[host] = time.monotonic()
        self._set(host, plain("connecting"))

    def host_step(self, host: str, outcome: Outcome) -> None:
        text = plain(f"{outcome.step}: ")
        text.append_text(plain(outcome.status.value, _STYLE[outcome.status]))
        self._set(host, text)

    def host_done(self, host: str, outcomes: list[Outcome]) -> None:
        worst = max((o.status for o in outcomes), key=lambda s: s.rank, default=Status.OK)
        with self._lock:
            self._done.add(host)
        self._set(host, plain(f"done: {worst.value}", _STYLE[worst]))


def render_env(
    rows: list[tuple[str, str, str]],
    path: str,
    stale: bool,
    as_json: bool,
    extra: dict[str, str],
) -> None:
    """Show the resolved addresses (name, value, source) and whether the env file holds
    them (``env`` writes nothing: ``up`` and ``reset`` write the file)."""
    if as_json:
        print_json(
            {
                "addresses": {
                    name: {"value": value, "source": source} for name, value, source in rows
                },
                "env_file": path,
                "current": not stale,
                "other": extra,
            }
        )
        return
    from rich.table import Table

    table = Table(title="FLOps management addresses", title_justify="left")
    table.add_column("variable")
    table.add_column("value")
    table.add_column("source")
    for name, value, source in rows:
        table.add_row(plain(name), plain(value), plain(source))
    console = _console()
    console.print(table)
    from .paths import command

    state = f"differs: '{command()} up' writes these values" if stale else "holds these values"
    console.print(plain(f"env file {path}: {state}"))


def confirm(question: str) -> bool | None:
    """Ask on a terminal: True or False; None when there is no terminal to ask on."""
    if sys.stdin is None or not sys.stdin.isatty():
        return None
    from rich.prompt import Confirm

    return Confirm.ask(plain(question), console=_console(stderr=True), default=False)


def raw(text: str | bytes) -> None:
    """Pass text through unchanged: the stack's own logs, as ``docker compose logs`` shows
    them (colours included)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    sys.stdout.flush()


def render_status(rows: list[dict[str, Any]], as_json: bool = False, hosts: bool = False) -> None:
    """The stack's services; ``hosts``: with the host that runs each (a placement)."""
    if as_json:
        print_json({"services": rows})
        return
    from rich.table import Table

    table = Table(title="FLOps management suite", title_justify="left")
    columns = (
        ("host", "service", "state", "health", "ports")
        if hosts
        else ("service", "state", "health", "ports")
    )
    for col in columns:
        table.add_column(col)
    for row in rows:
        health = row["health"]
        style = (
            "green"
            if health == "healthy"
            else (
                "red"
                if health in ("unhealthy",) or row["state"] in ("missing", "exited", "unreachable")
                else "yellow"
            )
        )
        cells = [
            plain(row["service"]),
            plain(row["state"]),
            plain(health or "-", style),
            plain(", ".join(row["ports"]) or row.get("error", "")),
        ]
        if hosts:
            cells.insert(0, plain(str(row.get("host", ""))))
        table.add_row(*cells)
    _console().print(table)


def render_testbed(summary: dict[str, Any], as_json: bool = False) -> None:
    if as_json:
        print_json(summary)
        return
    from rich.table import Table

    table = Table(title=plain(f"testbed up in {summary['seconds']} s"), title_justify="left")
    table.add_column("worker")
    table.add_column("address")
    table.add_column("kind")
    for w in summary["workers"]:
        table.add_row(plain(w["name"]), plain(w["ip"]), plain(w.get("kind", "docker")))
    console = _console()
    console.print(table)
    console.print(plain(f"management stack at {summary['gateway']} (as workers see this host)"))
    from .paths import command

    cmd = command()
    console.print(
        plain(f"use it: {cmd} -f {summary['config']} bootstrap   |   tear down: {cmd} testbed.down")
    )


class Transfer:
    """A byte progress bar on stderr (no-op without a TTY); ``advance`` is thread-safe."""

    def __init__(self, total: int, label: str, enabled: bool | None = None) -> None:
        self.total = total
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Transfer:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=_console(stderr=True),
                transient=True,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(visible(self.label), total=self.total)
        return self

    def __exit__(self, *exc: Any) -> None:  # passed on to rich's Progress as it is
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def advance(self, host: str, nbytes: int) -> None:
        if self._progress is not None and self._task is not None:
            with self._lock:
                self._progress.update(self._task, advance=nbytes)


def render_apps(plan: dict, as_json: bool = False) -> None:
    """Oakestra's applications with their services and what clear-apps would do with each
    (every name, id and reason comes from Oakestra: shown through ``plain``)."""
    if as_json:
        print_json(plan)
        return
    from rich.table import Table

    style = {"delete": "yellow", "blocked": "red", "keep": "green"}
    table = Table(
        title=plain(f"Oakestra applications at {plan['system_manager']}"), title_justify="left"
    )
    for col in ("application", "namespace", "id", "owner", "services", "clear-apps"):
        table.add_column(col, overflow="fold")
    for app in plan["applications"]:
        services = ", ".join(f"{s['name']}/{s['namespace']}" for s in app["services"]) or "-"
        action = app["action"]
        cells = [
            plain(v) for v in (app["name"], app["namespace"], app["id"], app["owner"], services)
        ]
        verdict = plain(action, style.get(action, ""))
        verdict.append_text(plain(f": {app['reason']}"))
        table.add_row(*cells, verdict)
    console = _console()
    console.print(table)
    doomed = sum(app["action"] == "delete" for app in plan["applications"])
    console.print(
        plain(
            f"{doomed} FLOps apps of {len(plan['applications'])}; recognised by "
            f"{plan['identification']}"
        )
    )
