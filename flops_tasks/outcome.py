"""Results: one ``Outcome`` per host and step, collected in a ``Report``.

Logic returns these and prints nothing; ``ui`` renders them as lines or JSON.

A row's status says what happened to that step, and only that:

- ``ok``: the step was already as wanted (or a read found it fine);
- ``changed``: the step changed something, or, in a dry run, would change it. Which one
  follows from the run's change log (``changes.ChangeLog``): a row of a step that recorded a
  change is ``changed`` whatever its code said, so a dry run and a real run agree;
- ``warning``: something the operator must know and flops-tasks could not do or fix (say,
  NodeEngine is not installed). It never fails a run;
- ``skipped``: a check that writes (the push check) and so does not run in a dry run;
- ``failed``, ``unreachable``: the step, or the host, did not get where it should;
- ``interrupted``: the run was stopped (Ctrl-C) while the host was still at work.

``fix`` is a command that mends the row's problem, printed on a line of its own.

A host's overall ``status`` (``ok``, ``changed``, ``failed``, ``unreachable``, plus
``interrupted``: the values JSON consumers have always seen) is the worst of its rows;
warnings and skipped checks leave it as it is. ``recap`` counts each status per host, in the
shape of Ansible's recap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .changes import ChangeLog


class Status(StrEnum):
    OK = "ok"
    CHANGED = "changed"
    WARNING = "warning"
    SKIPPED = "skipped"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    INTERRUPTED = "interrupted"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {
    Status.OK: 0,
    Status.WARNING: 0,
    Status.SKIPPED: 0,
    Status.CHANGED: 1,
    Status.FAILED: 2,
    Status.UNREACHABLE: 3,
    Status.INTERRUPTED: 4,
}
BAD = (Status.FAILED, Status.UNREACHABLE, Status.INTERRUPTED)
# the recap's columns, in Ansible's order; skipped and interrupted are shown when counted
RECAP = (
    Status.OK,
    Status.CHANGED,
    Status.WARNING,
    Status.FAILED,
    Status.UNREACHABLE,
    Status.SKIPPED,
    Status.INTERRUPTED,
)
ALWAYS_IN_RECAP = RECAP[:5]


class ExitCode(IntEnum):
    """What ``flops`` / ``inv`` exits with (README, "Exit codes")."""

    OK = 0  # everything as wanted (warnings included)
    FAILED = 1  # a step failed
    BAD_INPUT = 2  # a flag, host, file or config value is wrong: nothing was done
    REFUSED = 3  # a confirmation was refused (or not possible without --yes): nothing changed
    UNREACHABLE = 4  # a host could not be reached, and nothing failed
    INTERNAL = 70  # an unexpected error (its traceback is written to a file)
    INTERRUPTED = 130  # Ctrl-C


@dataclass(frozen=True)
class Outcome:
    host: str
    step: str
    status: Status
    detail: str = ""
    fix: str = ""  # a command that mends this row's problem

    @property
    def changed(self) -> bool:
        return self.status is Status.CHANGED

    @property
    def bad(self) -> bool:
        return self.status in BAD

    @property
    def warning(self) -> bool:
        return self.status is Status.WARNING

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["changed"] = self.changed
        if not self.fix:
            del data["fix"]
        return data


def ok(host: str, step: str, detail: str = "", fix: str = "") -> Outcome:
    return Outcome(host, step, Status.OK, detail, fix)


def changed(host: str, step: str, detail: str = "", fix: str = "") -> Outcome:
    return Outcome(host, step, Status.CHANGED, detail, fix)


def failed(host: str, step: str, detail: str = "", fix: str = "") -> Outcome:
    return Outcome(host, step, Status.FAILED, detail, fix)


def unreachable(host: str, step: str, detail: str = "", fix: str = "") -> Outcome:
    return Outcome(host, step, Status.UNREACHABLE, detail, fix)


def warning(host: str, step: str, detail: str = "", fix: str = "") -> Outcome:
    return Outcome(host, step, Status.WARNING, detail, fix)


def skipped(host: str, step: str, detail: str = "") -> Outcome:
    return Outcome(host, step, Status.SKIPPED, detail)


def interrupted(host: str, step: str, detail: str = "") -> Outcome:
    return Outcome(host, step, Status.INTERRUPTED, detail)


@dataclass
class Report:
    """Everything a run did, in order; the exit code follows from it.

    ``changes`` is the run's change log: ``extend`` makes the row of every step that recorded
    a change ``changed`` (see the module docstring).
    """

    title: str
    outcomes: list[Outcome] = field(default_factory=list)
    dry: bool = False
    notes: list[str] = field(default_factory=list)
    # host -> {"handshakes": n, "round_trips": n}: the SSH work behind these outcomes
    ssh: dict[str, dict[str, int]] = field(default_factory=dict)
    changes: ChangeLog | None = None
    interrupted: bool = False

    def extend(self, outcomes: list[Outcome]) -> None:
        self.outcomes.extend(self._settled(o) for o in outcomes)

    def add(self, outcome: Outcome) -> None:
        self.extend([outcome])

    def _settled(self, outcome: Outcome) -> Outcome:
        if (
            outcome.status is Status.OK
            and self.changes is not None
            and self.changes.touched(outcome.host, outcome.step)
        ):
            return replace(outcome, status=Status.CHANGED)
        return outcome

    def absorb(self, other: Report) -> None:
        """Take another report's outcomes, notes and SSH counts (a composed workflow)."""
        self.extend(other.outcomes)
        self.notes.extend(other.notes)
        self.count_ssh(other.ssh)

    def count_ssh(self, traffic: dict[str, dict[str, int]]) -> None:
        for host, counts in traffic.items():
            mine = self.ssh.setdefault(host, {"handshakes": 0, "round_trips": 0})
            for key, value in counts.items():
                mine[key] = mine.get(key, 0) + value

    def hosts(self) -> list[str]:
        seen: dict[str, None] = {}
        for outcome in self.outcomes:
            seen.setdefault(outcome.host, None)
        return list(seen)

    def rows(self, host: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.host == host]

    def host_status(self, host: str) -> Status:
        """The worst row of ``host``; warnings and skipped checks leave it ``ok``."""
        statuses = [
            o.status for o in self.rows(host) if o.status not in (Status.WARNING, Status.SKIPPED)
        ]
        return max(statuses, key=lambda s: s.rank) if statuses else Status.OK

    def warnings(self, host: str | None = None) -> list[Outcome]:
        return [o for o in self.outcomes if o.warning and host in (None, o.host)]

    def recap(self, host: str) -> dict[str, int]:
        """Rows of ``host`` per status, as Ansible's recap counts them."""
        counts = {s.value: 0 for s in RECAP}
        for outcome in self.rows(host):
            counts[outcome.status.value] += 1
        return counts

    def counts(self) -> dict[str, int]:
        """Hosts per overall status."""
        counts = {s.value: 0 for s in (*ALWAYS_IN_RECAP[:2], *BAD)}
        for host in self.hosts():
            counts[self.host_status(host).value] += 1
        return counts

    @property
    def ok(self) -> bool:
        return not self.interrupted and not any(o.bad for o in self.outcomes)

    @property
    def changed(self) -> bool:
        return any(o.changed for o in self.outcomes)

    @property
    def exit_code(self) -> ExitCode:
        statuses = {o.status for o in self.outcomes}
        if self.interrupted or Status.INTERRUPTED in statuses:
            return ExitCode.INTERRUPTED
        if Status.FAILED in statuses:
            return ExitCode.FAILED
        if Status.UNREACHABLE in statuses:
            return ExitCode.UNREACHABLE
        return ExitCode.OK

    def summary(self, step: str) -> list[Outcome]:
        """One outcome per host: its first bad row, else its warnings, else ok ("ready")."""
        rows = []
        for host in self.hosts():
            bad = [o for o in self.rows(host) if o.bad]
            warned = self.warnings(host)
            if bad:
                first = bad[0]
                rows.append(
                    Outcome(host, step, first.status, f"{first.step}: {first.detail}", first.fix)
                )
            elif warned:
                text = "; ".join(f"{o.step}: {o.detail}" for o in warned)
                fixes = list(dict.fromkeys(o.fix for o in warned if o.fix))
                rows.append(
                    Outcome(
                        host,
                        step,
                        Status.WARNING,
                        f"ready, with warnings: {text}",
                        "; ".join(fixes),
                    )
                )
            else:
                rows.append(Outcome(host, step, Status.OK, "ready"))
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "dry": self.dry,
            "ok": self.ok,
            "changed": self.changed,
            "exit_code": int(self.exit_code),
            "hosts": {
                host: {
                    "status": self.host_status(host).value,
                    "changed": any(o.changed for o in self.rows(host)),
                    "warnings": len(self.warnings(host)),
                    "recap": self.recap(host),
                    "steps": [o.to_dict() for o in self.rows(host)],
                }
                for host in self.hosts()
            },
            "warnings": [f"{o.host}: {o.step}: {o.detail}" for o in self.warnings()],
            "changes": [c.to_dict() for c in self.changes.entries()] if self.changes else [],
            "notes": list(self.notes),
            **(
                {"ssh": {host: dict(counts) for host, counts in self.ssh.items()}}
                if self.ssh
                else {}
            ),
            **({"interrupted": True} if self.interrupted else {}),
        }
