"""Every task's flags, read from the collection the CLI runs (testbed.* included): a short
flag means the same long flag in every task, ``-h`` is never a task's (it is help), and
every flag has its help text."""

from __future__ import annotations

from collections import defaultdict

import pytest
from invoke import Collection

from flops_tasks.collection import ns
from flops_tasks.program import program


def every_task(collection: Collection, prefix: str = "") -> dict[str, object]:
    found = {f"{prefix}{name}": task for name, task in collection.tasks.items()}
    for name, sub in collection.collections.items():
        found.update(every_task(sub, f"{prefix}{name}."))
    return found


TASKS = every_task(ns)


def flags_of(task) -> list[tuple[str, str | None, str]]:
    """(long name, short name or None, help) of each flag, as the parser sees them."""
    out = []
    for arg in task.get_arguments():
        long = next(n for n in arg.names if len(n) > 1)
        short = next((n for n in arg.names if len(n) == 1), None)
        out.append((long, short, task.help.get(arg.name) or arg.help or ""))
    return out


def test_the_collection_has_the_tasks_of_the_design():
    assert {"testbed.up", "testbed.down", "demo", "doctor", "bootstrap", "env"} <= set(TASKS)


def test_a_short_flag_means_the_same_long_flag_in_every_task():
    meaning: dict[str, set[str]] = defaultdict(set)
    where: dict[str, list[str]] = defaultdict(list)
    for name, task in TASKS.items():
        for long, short, _ in flags_of(task):
            if short:
                meaning[short].add(long)
                where[short].append(f"{name} --{long}")
    clashes = {short: where[short] for short, longs in meaning.items() if len(longs) > 1}
    assert not clashes, clashes


def test_h_is_never_a_task_flag():
    """``-h`` is help, in every task (``inv prepare-builder -h`` prints its help)."""
    taken = [
        f"{name} --{long}"
        for name, task in TASKS.items()
        for long, short, _ in flags_of(task)
        if short == "h"
    ]
    assert not taken, taken
    core = {n for arg in program().core_args() for n in arg.names}
    assert "h" in core and "help" in core


def test_every_flag_has_help():
    missing = [
        f"{name} --{long}"
        for name, task in TASKS.items()
        for long, _, text in flags_of(task)
        if not text.strip()
    ]
    assert not missing, missing


@pytest.mark.parametrize("name", sorted(TASKS))
def test_each_task_has_a_docstring(name):
    assert (TASKS[name].__doc__ or "").strip(), name
