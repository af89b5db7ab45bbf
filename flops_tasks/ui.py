"""All output of flops-tasks: the only module that imports rich.

Logic returns ``Outcome``/``Report`` objects (or plain dicts); this module shows them once,
at the outermost level, as rich tables or as JSON (``--json``), and provides the live
per-host progress observer used during long work.

Text that comes from outside (worker output, file contents, container names) is data: it
is never parsed as rich markup or emoji codes, and control characters (ESC, BEL, CR, C1
codes, bidi overrides) are shown as ``\\x..`` escapes instead of reaching the terminal.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from typing import TYPE_CHECKING, Any

from .outcome import Outcome, Report, Status

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.progress import Progress, TaskID
    from rich.table import Table
    from rich.text import Text

_STYLE = {
    Status.OK: "green",
    Status.CHANGED: "yellow",
    Status.FAILED: "red",
    Status.UNREACHABLE: "magenta",
    Status.WARNING: "dark_orange",
}


# C0 controls but tab and newline, DEL, C1 controls, and the bidi marks and overrides
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible(text: object) -> str:
    """``text`` with every control character written as a ``\\xNN``/``\\uNNNN`` escape."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), str(text))


def plain(text: object, style: str = "") -> Text:
    """A table cell or line that shows ``text`` literally (no markup, no emoji codes)."""
    from rich.text import Text

    return Text(visible(text), style=style)


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False, emoji=False)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def info(message: str) -> None:
    """A progress line on stderr (keeps stdout clean for tables and JSON); never wrapped."""
    _console(stderr=True).print(plain(message), soft_wrap=True)


def render_report(report: Report, as_json: bool = False) -> None:
    if as_json:
        print_json(report.to_dict())
        return
    from rich.table import Table

    title = report.title + (" (dry run: nothing changed)" if report.dry else "")
    table = Table(title=plain(title), title_justify="left", expand=False)
    table.add_column("host")
    table.add_column("step")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for host in report.hosts():
        for outcome in [o for o in report.outcomes if o.host == host]:
            table.add_row(
                plain(host),
                plain(outcome.step),
                plain(outcome.status.value, _STYLE[outcome.status]),
                plain(outcome.detail),
            )
    console = _console()
    console.print(table)
    counts = report.counts()
    summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    warned = len(report.warnings())
    if warned:
        summary += f", {warned} warning{'s' if warned > 1 else ''}"
    if report.hosts():
        verdict = (
            "no changes"
            if report.ok and not report.changed
            else ("changes made" if report.ok else "problems")
        )
        if report.dry and report.changed:
            verdict = "changes planned"
        console.print(plain(f"recap: {summary or 'nothing to do'} ({verdict})"))
    for note in report.notes:
        console.print(plain(note))


class LiveHosts:
    """Live per-host view on stderr while hosts work; a no-op when stderr is not a TTY."""

    def __init__(self, title: str, hosts: list[str], enabled: bool | None = None) -> None:
        self.title = title
        self.state: dict[str, Text] = {h: plain("waiting") for h in hosts}
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._live: Live | None = None
        self._lock = threading.Lock()

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
        return self

    def __exit__(self, *exc: Any) -> None:  # passed on to rich's Live as it is
        if self._live is not None:
            self._live.__exit__(*exc)

    def _set(self, host: str, text: Text) -> None:
        with self._lock:
            self.state[host] = text
            if self._live is not None:
                self._live.update(self._table())

    # Observer protocol (see ssh.Observer)
    def host_started(self, host: str) -> None:
        self._set(host, plain("connecting"))

    def host_step(self, host: str, outcome: Outcome) -> None:
        text = plain(f"{outcome.step}: ")
        text.append_text(plain(outcome.status.value, _STYLE[outcome.status]))
        self._set(host, text)

    def host_done(self, host: str, outcomes: list[Outcome]) -> None:
        worst = max((o.status for o in outcomes), key=lambda s: s.rank, default=Status.OK)
        self._set(host, plain(f"done: {worst.value}", _STYLE[worst]))


def render_env(
    rows: list[tuple[str, str, str]],
    path: str,
    changed: bool,
    dry: bool,
    as_json: bool,
    extra: dict[str, str],
) -> None:
    """Show the resolved addresses (name, value, source) and what happened to the env file."""
    if as_json:
        print_json(
            {
                "addresses": {
                    name: {"value": value, "source": source} for name, value, source in rows
                },
                "env_file": path,
                "changed": changed,
                "dry": dry,
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
    if dry:
        verb = "would be updated" if changed else "is up to date"
    else:
        verb = "written" if changed else "unchanged"
    console.print(plain(f"env file {path}: {verb} (mode 0600)"))


def confirm(question: str, assume_yes: bool) -> bool:
    """Ask on a TTY; refuse (False) when there is no TTY and ``--yes`` was not given."""
    if assume_yes:
        return True
    if sys.stdin is None or not sys.stdin.isatty():
        return False
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
    console.print(
        plain(f"use it: inv -f {summary['config']} bootstrap   |   tear down: inv testbed.down")
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
    """Oakestra's applications with their services and what clear-apps would do with each."""
    if as_json:
        print_json(plan)
        return
    from rich.table import Table

    style = {"delete": "yellow", "blocked": "red", "keep": "green"}
    table = Table(title=f"Oakestra applications at {plan['system_manager']}", title_justify="left")
    for col in ("application", "namespace", "id", "owner", "services", "clear-apps"):
        table.add_column(col, overflow="fold")
    for app in plan["applications"]:
        services = ", ".join(f"{s['name']}/{s['namespace']}" for s in app["services"]) or "-"
        action = app["action"]
        cells = [
            escape_markup(str(v))
            for v in (app["name"], app["namespace"], app["id"], app["owner"], services)
        ]
        table.add_row(*cells, f"[{style[action]}]{action}[/]: {escape_markup(app['reason'])}")
    console = _console()
    console.print(table)
    doomed = sum(app["action"] == "delete" for app in plan["applications"])
    console.print(
        f"{doomed} FLOps apps of {len(plan['applications'])}; recognised by "
        f"{plan['identification']}",
        markup=False,
    )


def escape_markup(text: str) -> str:
    from rich.markup import escape

    return escape(text)
