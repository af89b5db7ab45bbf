"""The FLOps image registry: its catalog, and clearing it.

The registry keeps a blob descriptor cache in memory: deleting its storage without a restart
makes later pushes skip layers and pulls fail. Clearing therefore removes the container and
its volume together, and starts the registry again.
"""

from __future__ import annotations

import json

from .. import httpclient
from ..errors import FlopsError
from ..outcome import Outcome, changed
from .project import Project
from .services import REGISTRY

VOLUME = "registry_data"


def url(project: Project) -> str:
    return project.url(project.s.registry_port)


def catalog(project: Project) -> list[str]:
    """The repositories the registry lists (raises ``httpclient.HttpFailure``, an OSError,
    without an answer and ``ValueError`` for one that is not a catalog). No proxy, no
    redirect: the answer comes from the registry at that address or not at all."""
    answer = httpclient.request("GET", url(project) + "/v2/_catalog", timeout=10)
    if answer.status != 200:
        raise httpclient.HttpFailure(f"the registry answered HTTP {answer.status}")
    data = json.loads(answer.body)
    repositories = data.get("repositories") if isinstance(data, dict) else None
    if not isinstance(repositories, list | None) or not all(
        isinstance(r, str) for r in repositories or []
    ):
        raise ValueError("not a registry catalog")
    return list(repositories or [])


def what_clear_deletes(project: Project) -> str:
    where = f" on {project.label}" if project.remote else ""
    return f"every image in the FLOps registry (volume {project.volume_name(VOLUME)}{where})"


def holds(project: Project) -> bool:
    """True when the registry is placed on this project's engine."""
    return REGISTRY in project.services


def drop(project: Project) -> None:
    """Remove the registry container and its storage volume (a start brings both back)."""
    project.act(
        project.compose_cmd("rm", "--stop", "--force", REGISTRY),
        lambda: project.docker.compose.rm(services=[REGISTRY], stop=True),
        step="clear-registry",
    )
    project.remove_volume(VOLUME, step="clear-registry")


def verify_empty(project: Project) -> None:
    repos = catalog(project)
    if repos:
        raise FlopsError(
            f"registry still lists {len(repos)} repositories after clearing ({repos[0]}, ...)"
        )


def clear(project: Project) -> list[Outcome]:
    """Empty registry storage and restart the registry; verify it answers, empty.

    Nothing to do on an engine the registry is not placed on."""
    if not holds(project):
        return []
    drop(project)
    started = project.start(services=[REGISTRY], no_deps=True, recreate=(REGISTRY,))
    if project.dry:
        return [
            changed(
                project.where,
                "clear-registry",
                f"would remove volume {project.volume_name(VOLUME)} and restart {REGISTRY}",
            ),
            *started,
        ]
    verify_empty(project)
    return [
        changed(
            project.where,
            "clear-registry",
            "registry storage emptied and registry restarted; it answers, empty",
        ),
        *started,
    ]
