"""The ``flops`` command: flops-tasks' tasks from any folder, once the package is installed.

An ``invoke.Program`` with the package's own collection (``collection.ns``), its config
class (``FlopsConfig``: the same ``invoke.yaml``, ``-f FILE`` and ``INVOKE_FLOPS_*``
settings as ``inv`` in the checkout, and ``invoke.yaml`` of the folder it runs in) and its
executor (``FlopsExecutor``: one run per call, exit codes, Ctrl-C). ``--version`` names the
pinned addon-FLOps ref too, and ``--dry`` says what a dry run is here. An exception that
escapes everything else is one line naming the file its traceback went to, and exit 70, as
in the executor (``edge.unexpected``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from invoke import Argument, Program

from . import __version__
from .flags import core_args_with_our_dry


def version_line() -> str:
    from .config import DEFAULTS

    return f"flops {__version__} (addon-FLOps {DEFAULTS['addon']['ref']})"


class FlopsProgram(Program):
    """``invoke.Program`` for the ``flops`` command (see the module doc)."""

    def core_args(self) -> list[Argument]:
        return core_args_with_our_dry(super().core_args())

    def print_version(self) -> None:
        print(version_line())

    def parse_collection(self) -> None:
        # A bundled collection has no folder of its own: the project config is the
        # invoke.yaml of the folder flops runs in.
        self.config.set_project_location(os.getcwd())
        self.config.load_project()
        super().parse_collection()

    def run(self, argv: list[str] | None = None, exit: bool = True) -> None:
        try:
            super().run(argv, exit)
        except Exception as exc:  # everything Invoke itself lets through
            from .edge import unexpected

            error = unexpected(exc, getattr(self, "config", None))
            print(error.message, file=sys.stderr)
            if not exit:
                raise error from None
            sys.exit(error.code)


def program() -> FlopsProgram:
    from .collection import ns
    from .edge import FlopsExecutor
    from .invoke_config import FlopsConfig

    return FlopsProgram(
        version=__version__,
        namespace=ns,
        name="flops",
        binary="flops",
        binary_names=["flops"],
        config_class=FlopsConfig,
        executor_class=FlopsExecutor,
    )


def main(argv: Any = None) -> None:
    """The console script ``flops``."""
    program().run(argv)
