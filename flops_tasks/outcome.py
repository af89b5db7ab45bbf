"""Results: one ``Outcome`` per host and step, collected in a ``Report``.

Logic returns these and prints nothing; ``ui`` renders them as a table or JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum


class Status(StrEnum):
    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    UNREACHABLE = "unreachable"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Status.OK: 0, Status.CHANGED: 1, Status.FAILED: 2, Status.UNREACHABLE: 3}


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


@dataclass
class Report:
    """Everything a task did, in order; the exit code follows from it."""

    title: str
    outcomes: list[Outcome] = field(default_factory=list)
    dry: bool = False
    notes: list[str] = field(default_factory=list)

    def extend(self, outcomes: list[Outcome]) -> None:
        self.outcomes.extend(outcomes)

    def hosts(self) -> list[str]:
        seen: dict[str, None] = {}
        for outcome in self.outcomes:
            seen.setdefault(outcome.host, None)
        return list(seen)

    def host_status(self, host: str) -> Status:
        statuses = [o.status for o in self.outcomes if o.host == host]
        return max(statuses, key=lambda s: s.rank) if statuses else Status.OK

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Status}
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
        """One outcome per host: ok when all its rows are, else its first bad row."""
        rows = []
        for host in self.hosts():
            bad = [o for o in self.outcomes if o.host == host and o.bad]
            if bad:
                rows.append(Outcome(host, step, bad[0].status, f"{bad[0].step}: {bad[0].detail}"))
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
                    "steps": [o.to_dict() for o in self.outcomes if o.host == host],
                }
                for host in self.hosts()
            },
            "notes": list(self.notes),
        }
