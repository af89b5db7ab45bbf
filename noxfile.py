"""Nox sessions for flops-tasks: tests, lint, demo, bench."""

from __future__ import annotations

import os

import nox

nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests"]

PYTHON = "3.11"


def _setup_machine(session: nox.Session) -> None:
    """Install and start Docker, compose v2, buildx, QEMU, OpenSSH (idempotent)."""
    if os.environ.get("FLOPS_SKIP_SETUP") != "1":
        session.run("bash", ".ci/setup", external=True)


def _install(session: nox.Session, extras: str = "test") -> None:
    session.install("-e", f".[{extras}]")


def _pytest(session: nox.Session, *args: str) -> None:
    session.run("pytest", *args, *session.posargs)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Every test: unit, then integration against real OpenSSH, Docker and the testbed."""
    _setup_machine(session)
    _install(session)
    _pytest(session)


@nox.session(python=PYTHON)
def unit(session: nox.Session) -> None:
    """Unit tests only (no Docker, no SSH server)."""
    _install(session)
    _pytest(session, "tests/unit")


@nox.session(python=PYTHON, default=False)
def integration(session: nox.Session) -> None:
    """Integration tests only."""
    _setup_machine(session)
    _install(session)
    _pytest(session, "tests/integration")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format over the project (the testbed's servers and scripts
    included), and mypy over the package."""
    _install(session, "dev")
    paths = [
        "flops_tasks",
        "tasks.py",
        "noxfile.py",
        "tests",
        "bench",
        "testbed",
        "compose",
        "testbed/flops_db/mongo-ping",
    ]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)
    session.run("mypy")


@nox.session(python=PYTHON, default=False)
def demo(session: nox.Session) -> None:
    """The main job on the offline testbed: testbed up, bootstrap, doctor."""
    _setup_machine(session)
    _install(session)
    session.run("inv", "demo", *session.posargs)


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks in bench/ (medians of repeated runs; not part of CI)."""
    _setup_machine(session)
    _install(session)
    session.run("python", "-m", "bench", *session.posargs)
