"""Run many ``inv`` command lines, each in its own process, without paying Python's start-up
and the libraries' imports for every one.

``python inv_forks.py`` imports invoke, the third-party libraries flops-tasks uses and those
of its modules that read nothing of the environment at import (``FRESH_IN_CHILD`` is
imported by each child, with the child's HOME), then reads one JSON request per line from
stdin until EOF: ``{"key", "argv", "cwd", "env", "out", "err"}``. For each it forks a child
that sets the environment and working directory, points stdin at /dev/null and stdout/stderr
at the files ``out`` and ``err``, and runs Invoke's ``inv`` program
(``invoke.main.program``, what the ``inv`` command runs) with ``argv``. It prints ``<key>
<exit code>`` per finished child, at most ``parallel`` children at a time.

A child is an ordinary process: a traceback, a hang or a stray write is its own, exactly as
for ``inv`` started from a shell; only the interpreter and the preloaded modules are
shared, read-only, from the parent's memory.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

PRELOAD = (
    "invoke",
    "invoke.main",
    "yaml",
    "rich.console",
    "rich.table",
    "fabric",
    "paramiko",
    "python_on_whales",
    "pymongo",
    "tomlkit",
    # flops-tasks' modules that read nothing of the environment when imported
    "flops_tasks.edge",
    "flops_tasks.workflows.stack",
    "flops_tasks.workflows.workers",
    "flops_tasks.workflows.journeys",
    "flops_tasks.config",
    "flops_tasks.invoke_config",
    "flops_tasks.env",
    "flops_tasks.hosts",
    "flops_tasks.data",
    "flops_tasks.ui",
    "flops_tasks.ssh",
    "flops_tasks.commands",
    "flops_tasks.facts",
    "flops_tasks.ops",
    "flops_tasks.stack.project",
)
# modules that would fix a path from HOME when imported: each child imports them with its
# own HOME (none today: the state directory is read when it is used)
FRESH_IN_CHILD: tuple[str, ...] = ()


def child(request: dict) -> None:
    """Become ``inv`` for one request (never returns)."""
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        os.dup2(os.open(request["out"], flags, 0o600), 1)
        os.dup2(os.open(request["err"], flags, 0o600), 2)
        sys.argv = list(request["argv"])
        from invoke.main import program

        try:
            program.run(sys.argv)
            code = 0
        except SystemExit as exc:  # what the inv script's sys.exit would do with it
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: B036 - printed as Python's own top level would
            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main() -> None:
    parallel = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    for name in PRELOAD:
        __import__(name)
    leaked = [name for name in FRESH_IN_CHILD if name in sys.modules]
    assert not leaked, f"preloading imported {leaked}: children would share its HOME"
    requests = [json.loads(line) for line in sys.stdin if line.strip()]
    running: dict[int, str] = {}
    for request in requests:
        if len(running) >= parallel:
            pid, status = os.wait()
            print(running.pop(pid), os.waitstatus_to_exitcode(status), flush=True)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            child(request)
        running[pid] = request["key"]
    while running:
        pid, status = os.wait()
        print(running.pop(pid), os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    main()
