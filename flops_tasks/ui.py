"""All output of flops-tasks: the only module that imports rich.

Logic returns ``Outcome``/``Report`` objects (or plain dicts); this module shows them once,
at the outermost level, as rich tables or as JSON (``--json``), and provides the live
per-host progress observer used during long work.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from .outcome import Outcome, Report, Status

_STYLE = {
    Status.OK: "green",
    Status.CHANGED: "yellow",
    Status.FAILED: "red",
    Status.UNREACHABLE: "magenta",
    Status.WARNING: "dark_orange",
}


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    """A progress line on stderr (keeps stdout clean for tables and JSON)."""
    _console(stderr=True).print(message, markup=False)


def render_report(report: Report, as_json: bool = False) -> None:
    if as_json:
        print_json(report.to_dict())
        return
    from rich.table import Table

    title = report.title + (" (dry run: nothing changed)" if report.dry else "")
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("host")
    table.add_column("step")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for host in report.hosts():
        for outcome in [o for o in report.outcomes if o.host == host]:
            style = _STYLE[outcome.status]
            table.add_row(host, outcome.step, f"[{style}]{outcome.status.value}[/]",
                          outcome.detail)
    console = _console()
    console.print(table)
    counts = report.counts()
    summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    warned = len(report.warnings())
    if warned:
        summary += f", {warned} warning{'s' if warned > 1 else ''}"
    if report.hosts():
        verdict = "no changes" if report.ok and not report.changed else (
            "changes made" if report.ok else "problems")
        if report.dry and report.changed:
            verdict = "changes planned"
        console.print(f"recap: {summary or 'nothing to do'} ({verdict})", markup=False)
    for note in report.notes:
        console.print(note, markup=False)


class LiveHosts:
    """Live per-host view on stderr while hosts work; a no-op when stderr is not a TTY."""

    def __init__(self, title: str, hosts: list[str], enabled: bool | None = None) -> None:
        self.title = title
        self.state: dict[str, str] = {h: "waiting" for h in hosts}
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._live: Any = None
        self._lock = threading.Lock()

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=self.title, title_justify="left")
        table.add_column("host")
        table.add_column("progress")
        for host, text in self.state.items():
            table.add_row(host, text)
        return table

    def __enter__(self) -> LiveHosts:
        if self.enabled:
            from rich.live import Live

            self._live = Live(self._table(), console=_console(stderr=True),
                              refresh_per_second=8, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def _set(self, host: str, text: str) -> None:
        with self._lock:
            self.state[host] = text
            if self._live is not None:
                self._live.update(self._table())

    # Observer protocol (see ssh.Observer)
    def host_started(self, host: str) -> None:
        self._set(host, "connecting")

    def host_step(self, host: str, outcome: Outcome) -> None:
        style = _STYLE[outcome.status]
        self._set(host, f"{outcome.step}: [{style}]{outcome.status.value}[/]")

    def host_done(self, host: str, outcomes: list[Outcome]) -> None:
        worst = max((o.status for o in outcomes), key=lambda s: s.rank, default=Status.OK)
        self._set(host, f"[{_STYLE[worst]}]done: {worst.value}[/]")


def render_env(rows: list[tuple[str, str, str]], path: str, changed: bool, dry: bool,
               as_json: bool, extra: dict[str, str]) -> None:
    """Show the resolved addresses (name, value, source) and what happened to the env file."""
    if as_json:
        print_json({
            "addresses": {name: {"value": value, "source": source} for name, value, source in rows},
            "env_file": path,
            "changed": changed,
            "dry": dry,
            "other": extra,
        })
        return
    from rich.table import Table

    table = Table(title="FLOps management addresses", title_justify="left")
    table.add_column("variable")
    table.add_column("value")
    table.add_column("source")
    for name, value, source in rows:
        table.add_row(name, value, source)
    console = _console()
    console.print(table)
    if dry:
        verb = "would be updated" if changed else "is up to date"
    else:
        verb = "written" if changed else "unchanged"
    console.print(f"env file {path}: {verb} (mode 0600)", markup=False)


def confirm(question: str, assume_yes: bool) -> bool:
    """Ask on a TTY; refuse (False) when there is no TTY and ``--yes`` was not given."""
    if assume_yes:
        return True
    if sys.stdin is None or not sys.stdin.isatty():
        return False
    from rich.prompt import Confirm

    return Confirm.ask(question, console=_console(stderr=True), default=False)


def raw(text: str | bytes) -> None:
    """Pass text through unchanged (logs)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    sys.stdout.flush()


def render_status(rows: list[dict], as_json: bool = False) -> None:
    if as_json:
        print_json({"services": rows})
        return
    from rich.table import Table

    table = Table(title="FLOps management suite", title_justify="left")
    for col in ("service", "state", "health", "ports"):
        table.add_column(col)
    for row in rows:
        health = row["health"]
        style = "green" if health == "healthy" else ("red" if health in ("unhealthy",) or
                                                      row["state"] in ("missing", "exited")
                                                      else "yellow")
        table.add_row(row["service"], row["state"], f"[{style}]{health or '-'}[/]",
                      ", ".join(row["ports"]))
    _console().print(table)


def render_testbed(summary: dict, as_json: bool = False) -> None:
    if as_json:
        print_json(summary)
        return
    from rich.table import Table

    table = Table(title=f"testbed up in {summary['seconds']} s", title_justify="left")
    table.add_column("worker")
    table.add_column("address")
    table.add_column("kind")
    for w in summary["workers"]:
        table.add_row(w["name"], w["ip"], w.get("kind", "docker"))
    console = _console()
    console.print(table)
    console.print(f"management stack at {summary['gateway']} (as workers see this host)",
                  markup=False)
    console.print(f"use it: inv -f {summary['config']} bootstrap   |   tear down: "
                  "inv testbed.down", markup=False)


class Transfer:
    """A byte progress bar on stderr (no-op without a TTY); ``advance`` is thread-safe."""

    def __init__(self, total: int, label: str, enabled: bool | None = None) -> None:
        self.total = total
        self.label = label
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Any = None
        self._task: Any = None
        self._lock = threading.Lock()

    def __enter__(self) -> Transfer:
        if self.enabled:
            from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

            self._progress = Progress("[progress.description]{task.description}", BarColumn(),
                                      DownloadColumn(), TransferSpeedColumn(),
                                      console=_console(stderr=True), transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.label, total=self.total)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def advance(self, host: str, nbytes: int) -> None:
        if self._progress is not None:
            with self._lock:
                self._progress.update(self._task, advance=nbytes)
