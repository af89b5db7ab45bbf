"""A worker for in-process tests: recorded probe output in, planned commands out.

``FakeSession`` has the parts of ``ssh.HostSession`` that preparations use. Its facts are
probe results recorded on real nodes (``facts/*.json``, made by running the probe batch of
``ops.probes_for`` in testbed worker containers with ``docker exec W sh -c BATCH`` and
``commands.parse_probe_batch``; ``*-quick.json``: the quick reads of ``facts.quick_probes``,
recorded the same way on prepared testbed workers, with the registry they trust); a test
overrides single probes where a node differs.
After the first change, probes answer from ``after`` (the node as the changes left it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from flops_tasks import commands as C
from flops_tasks.changes import Change, ChangeLog
from flops_tasks.hosts import Target
from flops_tasks.ssh import Result

FACTS = Path(__file__).parent / "facts"
REGISTRY = "172.20.0.1:5073"  # what the recordings were prepared for


def recorded_registry(name: str) -> str:
    """The registry a recording's worker was prepared for."""
    return json.loads((FACTS / f"{name}.json").read_text())["registry"]


def recorded(name: str, **overrides: tuple[int, str]) -> dict[str, tuple[int, str]]:
    data = json.loads((FACTS / f"{name}.json").read_text())["probes"]
    facts = {k: (v[0], v[1]) for k, v in data.items()}
    facts.update(overrides)
    return facts


@dataclass
class FakeSession:
    facts: dict[str, tuple[int, str]]
    after: dict[str, tuple[int, str]] | None = None
    dry: bool = False
    label: str = "w1"
    # summary substring -> (exit code, stdout) of that change; default (0, "")
    results: dict[str, tuple[int, str]] = field(default_factory=dict)
    # command substring -> stdout of a single probe; default ""
    probe_out: dict[str, str] = field(default_factory=dict)
    plan: list[str] = field(default_factory=list)
    changes: list[tuple[str, str]] = field(default_factory=list)  # (summary, command)
    probed: list[str] = field(default_factory=list)
    gathers: int = 0
    # the run's change log, as HostSession records into it (``changes`` above is this fake's
    # own list of what ran), and the step the changes belong to
    log: ChangeLog = field(default_factory=ChangeLog)
    step: str = "connect"
    checks: list[tuple[str, str]] = field(default_factory=list)  # (summary, command) run

    @property
    def target(self) -> Target:
        return Target(host="192.0.2.10", user="root", port=22, name=self.label)

    def is_root(self) -> bool:
        return True

    def probes(
        self, probes: list[tuple[str, str]], grouped: bool = False
    ) -> dict[str, tuple[int, str]]:
        self.gathers += 1
        source = self.after if (self.changes and self.after is not None) else self.facts
        return {name: tuple(source.get(name, (1, ""))) for name, _ in probes}

    def probe(self, command: str, timeout: float | None = None) -> Result:
        self.probed.append(command)
        out = next((v for k, v in self.probe_out.items() if k in command), "")
        return Result(command=command, exited=0, stdout=out)

    def change(
        self,
        command: str,
        summary: str,
        timeout: float | None = None,
        step: str | None = None,
        file: tuple[str, str | None, str | None] | None = None,
        also: tuple[str, ...] = (),
    ) -> Result:
        path, before, after = file if file is not None else ("", None, None)
        records = [
            Change(self.label, name, summary, not self.dry, path, before, after)
            for name in dict.fromkeys((step or self.step, *also))
        ]
        if self.dry:
            self.plan.append(summary)
            for record in records:
                self.log.record(record)
            return Result(command=command, exited=0, dry=True)
        self.changes.append((summary, command))
        rc, out = next((v for k, v in self.results.items() if k in summary), (0, ""))
        if rc:
            from flops_tasks.ssh import RemoteFailure

            raise RemoteFailure(f"{summary}: exit {rc}")
        for record in records:
            self.log.record(record)
        return Result(command=command, exited=0, stdout=out)

    def write(
        self, path: str, before: str | None, after: str, summary: str, timeout: float | None = None
    ) -> Result:
        return self.change(C.write_file(path, after), summary, file=(path, before, after))

    def verify(self, command: str, summary: str, timeout: float | None = None) -> Result | None:
        if self.dry:
            return None
        self.checks.append((summary, command))
        rc, out = next((v for k, v in self.results.items() if k in summary), (0, ""))
        return Result(command=command, exited=rc, stdout=out)

    def summaries(self) -> list[str]:
        return [s for s, _ in self.changes]
