"""Results: one ``Outcome`` per host and step, collected in a ``Report``.

Logic returns these and prints nothing; ``ui`` renders them as a table or JSON.

A ``warning`` is a step that could not be done for a reason outside flops-tasks' reach (say,
NodeEngine is not installed) and that the operator must know about. It never fails a run:
``Report.ok`` and the exit code ignore it, and a host's status (``ok``, ``changed``,
``failed``, ``unreachable``: the values JSON consumers have always seen) is computed from its
other rows. Warnings are shown as rows with status ``warning`` and counted per host and per
report under the new key ``warnings``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum


class Status(StrEnum):
    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    WARNING = "warning"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {
    Status.OK: 0,
    Status.WARNING: 0,
    Status.CHANGED: 1,
    Status.FAILED: 2,
    Status.UNREACHABLE: 3,
}
# what a host as a whole can be (a warning row does not change it)
HOST_STATUSES = (Status.OK, Status.CHANGED, Status.FAILED, Status.UNREACHABLE)


@dataclass(frozen=True)
class Outcome:
    host: str
    step: str
    status: Status
    detail: str = ""

    @property
    def changed(self) -> bool:
        return self.status is Status.CHANGED

    @property
    def bad(self) -> bool:
        return self.status in (Status.FAILED, Status.UNREACHABLE)

    @property
    def warning(self) -> bool:
        return self.status is Status.WARNING

    def to_dict(self) -> dict:
        data = asdict(self)
        data["status"] = self.status.value
        data["changed"] = self.changed
        return data


def ok(host: str, step: str, detail: str = "") -> Outcome:
    return Outcome(host, step, Status.OK, detail)


def changed(host: str, step: str, detail: str = "") -> Outcome:
    return Outcome(host, step, Status.CHANGED, detail)


def failed(host: str, step: str, detail: str = "") -> Outcome:
    return Outcome(host, step, Status.FAILED, detail)


def unreachable(host: str, step: str, detail: str = "") -> Outcome:
    return Outcome(host, step, Status.UNREACHABLE, detail)


def warning(host: str, step: str, detail: str = "") -> Outcome:
    return Outcome(host, step, Status.WARNING, detail)


@dataclass
class Report:
    """Everything a task did, in order; the exit code follows from it."""

    title: str
    outcomes: list[Outcome] = field(default_factory=list)
    dry: bool = False
    notes: list[str] = field(default_factory=list)
    # host -> {"handshakes": n, "round_trips": n}: the SSH work behind these outcomes
    ssh: dict[str, dict[str, int]] = field(default_factory=dict)

    def extend(self, outcomes: list[Outcome]) -> None:
        self.outcomes.extend(outcomes)

    def absorb(self, other: Report) -> None:
        """Take another report's outcomes, notes and SSH counts (a composed workflow)."""
        self.outcomes.extend(other.outcomes)
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

    def host_status(self, host: str) -> Status:
        """The worst row of ``host``; warnings leave it ``ok`` (see the module docstring)."""
        statuses = [o.status for o in self.outcomes if o.host == host and not o.warning]
        return max(statuses, key=lambda s: s.rank) if statuses else Status.OK

    def warnings(self, host: str | None = None) -> list[Outcome]:
        return [o for o in self.outcomes if o.warning and host in (None, o.host)]

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in HOST_STATUSES}
        for host in self.hosts():
            counts[self.host_status(host).value] += 1
        return counts

    @property
    def ok(self) -> bool:
        return not any(o.bad for o in self.outcomes)

    @property
    def changed(self) -> bool:
        return any(o.changed for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def summary(self, step: str) -> list[Outcome]:
        """One outcome per host: its first bad row, else its warnings, else ok ("ready")."""
        rows = []
        for host in self.hosts():
            bad = [o for o in self.outcomes if o.host == host and o.bad]
            warned = self.warnings(host)
            if bad:
                rows.append(Outcome(host, step, bad[0].status, f"{bad[0].step}: {bad[0].detail}"))
            elif warned:
                text = "; ".join(f"{o.step}: {o.detail}" for o in warned)
                rows.append(Outcome(host, step, Status.WARNING, f"ready, with warnings: {text}"))
            else:
                rows.append(Outcome(host, step, Status.OK, "ready"))
        return rows

    def to_dict(self) -> dict:
        return {
            "title": self.title,
            "dry": self.dry,
            "ok": self.ok,
            "changed": self.changed,
            "hosts": {
                host: {
                    "status": self.host_status(host).value,
                    "changed": any(o.changed for o in self.outcomes if o.host == host),
                    "warnings": len(self.warnings(host)),
                    "steps": [o.to_dict() for o in self.outcomes if o.host == host],
                }
                for host in self.hosts()
            },
            "warnings": [f"{o.host}: {o.step}: {o.detail}" for o in self.warnings()],
            "notes": list(self.notes),
            **(
                {"ssh": {host: dict(counts) for host, counts in self.ssh.items()}}
                if self.ssh
                else {}
            ),
        }
