"""Placement: which Docker engine runs which services, and a job run on each of them.

``flops.stack.placement`` maps services to hosts (config.py validates it). Each host runs
its services as one compose project (the same project name on every engine), reached
through Docker's own SSH transport; without a placement there is one project, on the
local engine, holding every service (as before placement existed).

- ``projects``: one ``Project`` per engine, the local engine first.
- ``require``: every engine answers (and no two names reach one engine) before a task
  changes anything; else one line naming the host and why, and nothing is changed.
- ``run``: a job on every project, engines in parallel, the manager's engine last (its
  dependencies start first); a failure on one engine is an outcome beside the others'.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from queue import Queue
from threading import Thread

from ..changes import ChangeLog
from ..config import Settings
from ..errors import FlopsError, UsageError
from ..hosts import Target
from ..outcome import Outcome, failed
from .project import Progress, Project, _quiet
from .services import MANAGER, SERVICES

Job = Callable[[Project], list[Outcome]]


def projects(
    s: Settings,
    dry: bool = False,
    progress: Progress = _quiet,
    changes: ChangeLog | None = None,
) -> list[Project]:
    """One project per engine of the placement (sharing the run's change log), local first.
    Services left out on purpose (``flops.stack.omit``) are in none."""
    log = changes if changes is not None else ChangeLog()
    wanted = [svc for svc in SERVICES if svc not in s.stack.omit]
    if not s.stack.placement:
        return [Project(s, dry=dry, progress=progress, changes=log, services=tuple(wanted))]
    groups: dict[Target | None, list[str]] = {}
    for svc in wanted:
        groups.setdefault(s.stack.placement[svc], []).append(svc)
    ordered = sorted(groups.items(), key=lambda item: item[0] is not None)
    return [
        Project(
            s,
            dry=dry,
            progress=_prefixed(progress, target),
            changes=log,
            target=target,
            services=tuple(services),
        )
        for target, services in ordered
    ]


def _prefixed(progress: Progress, target: Target | None) -> Progress:
    if target is None:
        return progress
    return lambda line: progress(f"[{target.label}] {line}")


def project_for(found: list[Project], service: str) -> Project:
    """The project whose engine runs ``service``."""
    return next(p for p in found if service in p.services)


def placed_on(found: list[Project]) -> str:
    """``service@host, ...``: where everything runs, for notes."""
    return ", ".join(f"{svc}@{p.label}" for p in found for svc in p.services)


def _parallel(found: list[Project], job: Callable[[Project], object]) -> list[object]:
    """``job`` on every project at once; results (or the exception raised) in order."""
    if len(found) == 1:
        return [_catch(job, found[0])]
    with ThreadPoolExecutor(max_workers=len(found), thread_name_prefix="flops-engine") as pool:
        return list(pool.map(lambda p: _catch(job, p), found))


def _catch(job: Callable[[Project], object], project: Project) -> object:
    try:
        return job(project)
    except FlopsError as exc:
        return exc


def answers(found: list[Project]) -> dict[str, str]:
    """host label -> why its engine does not answer (empty when every engine answers)."""
    results = _parallel(found, lambda p: p.check_docker())
    return {
        p.label: (r.message or "docker does not answer")
        for p, r in zip(found, results, strict=True)
        if isinstance(r, FlopsError)
    }


def require(found: list[Project], distinct: bool = False) -> None:
    """Every engine answers, before anything changes; ``distinct``: and no two placement
    hosts are one engine (one project name on one engine would collide)."""
    problems = answers(found)
    if problems:
        label, why = next(iter(problems.items()))
        more = f" (and {len(problems) - 1} more hosts)" if len(problems) > 1 else ""
        services = ", ".join(next(p for p in found if p.label == label).services)
        raise FlopsError(
            f"{why}{more}; nothing was changed on any host (placement: {services} on {label})"
        )
    if distinct and len(found) > 1:
        ids = _parallel(found, lambda p: p.cli("system", "info", "--format", "{{.ID}}").strip())
        seen: dict[object, str] = {}
        for project, engine in zip(found, ids, strict=True):
            if isinstance(engine, FlopsError):
                raise engine
            if engine in seen:
                raise UsageError(
                    f"placement hosts {seen[engine]} and {project.label} are one "
                    "Docker engine: name it once in flops.stack.placement; "
                    "nothing was changed"
                )
            seen[engine] = project.label


def run(found: list[Project], job: Job, step: str) -> list[Outcome]:
    """``job`` on every project; the engines without the manager first (in parallel), then
    the manager's. With several engines, a failure on one is a ``failed`` outcome of that
    host (named ``step``) and the others carry on; with one it is raised, as always."""
    if len(found) == 1:
        return job(found[0])
    first = [p for p in found if MANAGER not in p.services]
    last = [p for p in found if MANAGER in p.services]
    outcomes: list[Outcome] = []
    for batch in (first, last):
        if not batch:
            continue
        for project, result in zip(batch, _parallel(batch, job), strict=True):
            if isinstance(result, FlopsError):
                outcomes.append(failed(project.where, step, result.message or f"{step} failed"))
            else:
                outcomes.extend(result)  # type: ignore[arg-type]
    return outcomes


def follow_logs(found: list[Project], service: str | None, tail: str) -> Iterator[str]:
    """Log lines of the services on every engine as they come (``compose logs --follow``
    per engine; with several engines, each line starts with its host)."""

    def lines(project: Project) -> Iterator[str]:
        services = [service] if service else list(project.services) if project.partial else []
        stream = project.call(
            lambda: project.docker.compose.logs(
                services=services, follow=True, stream=True, tail=tail
            )
        )
        for _, raw in stream:
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            yield text if len(found) == 1 else f"[{project.label}] {text}"

    if len(found) == 1:
        yield from lines(found[0])
        return
    queue: Queue[str | None] = Queue()

    def pump(project: Project) -> None:
        try:
            for line in lines(project):
                queue.put(line)
        except FlopsError as exc:
            queue.put(f"[{project.label}] {exc.message}\n")
        finally:
            queue.put(None)

    for project in found:
        Thread(target=pump, args=(project,), daemon=True, name="flops-logs").start()
    open_streams = len(found)
    while open_streams:
        line = queue.get()
        if line is None:
            open_streams -= 1
        else:
            yield line
