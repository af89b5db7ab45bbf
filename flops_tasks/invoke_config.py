"""Invoke's ``Config``, subclassed: config files and ``INVOKE_*`` variables read safely.

``FlopsConfig`` is what every flops-tasks run uses (as Fabric does with its own subclass):

- YAML is read with PyYAML's safe loader, nesting is cut off at ``MAX_DEPTH`` while the
  document is composed, and a document that expands to more than ``MAX_VALUES`` values is
  refused. Aliases cost nothing to load, but Invoke copies and formats the whole config
  (its debug lines are built even when debug is off), so an alias bomb of a few lines
  would hang every run.
- Keys must be strings; the top level must be a mapping.
- A ``.py`` config file is refused: Invoke would execute it.
- Keys that Fabric or Invoke act on by running or importing something, or by adding
  credentials (``ACTING_KEYS``: ``gateway``, ``connect_kwargs`` ...), are refused in every
  file and ``INVOKE_*`` variable; flops-tasks' own settings live under ``flops``.
- Every broken file, uncastable ``INVOKE_*`` variable and type clash between config levels
  ends in one ``ConfigError`` line that names the file, variable or key.

The stock ``inv`` builds its Config before it imports ``tasks.py``; ``adopt_running_program``
(called by ``tasks.py``) upgrades that one object with ``Config.clone(into=FlopsConfig)``
before the project's ``invoke.yaml`` and ``-f FILE`` are read, and gives the program the
``edge.FlopsExecutor``: every task of one ``inv`` run is one run (``run.Run``). A program
built on ``invoke.Program(config_class=FlopsConfig, executor_class=FlopsExecutor)`` needs no
adoption.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import sys
from collections.abc import Iterable, Sequence
from os import PathLike
from typing import Any

import yaml
from invoke.config import AmbiguousMergeError, Config
from invoke.env import Environment
from invoke.exceptions import AmbiguousEnvVar, UncastableEnvVar, UnknownFileType
from invoke.executor import Executor

from .errors import ConfigError

MAX_DEPTH = 32
MAX_VALUES = 10_000


class _TooDeep(yaml.YAMLError):
    def __init__(self, mark: yaml.Mark | None) -> None:
        super().__init__(f"nested more than {MAX_DEPTH} levels deep")
        self.problem_mark = mark
        self.problem = f"nested more than {MAX_DEPTH} levels deep"


class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader that stops composing past ``MAX_DEPTH`` levels (before Python's
    recursion limit, which a few thousand nested brackets reach)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml_text(text: str, where: str) -> Any:
    """Parse one YAML config document; every problem is a ``ConfigError`` naming ``where``."""
    try:
        data = yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where}:{line}: {problem}; fix the YAML") from None
    check_shape(data, where)
    return data


def check_shape(data: Any, where: str) -> None:
    """A mapping at the top, string keys, at most ``MAX_DEPTH`` levels and ``MAX_VALUES``
    values once aliases are expanded (shared values are counted each time they appear)."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level, e.g. 'flops:'")
    stack: list[tuple[Any, tuple[str, ...]]] = [(data, ())]
    count = 0
    while stack:
        node, path = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(
                f"{where}: expands to more than {MAX_VALUES} values (YAML "
                "aliases?); write the config out without aliases"
            )
        if len(path) > MAX_DEPTH:
            raise ConfigError(
                f"{where}: nested more than {MAX_DEPTH} levels deep at {'.'.join(path[:4])}..."
            )
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    at = ".".join(path) or "the top level"
                    raise ConfigError(f"{where}: key {key!r} under {at} is not a string; quote it")
                stack.append((value, (*path, key)))
        elif isinstance(node, list | tuple):
            stack.extend((value, (*path, f"[{i}]")) for i, value in enumerate(node))


# Keys Fabric or Invoke act on, and what they would do. None is read from a file or the
# environment; the SSH layer also sets them itself (``ssh.HostSession._new_connection``).
ACTING_KEYS: dict[tuple[str, ...], str] = {
    ("gateway",): "Fabric would run it as a local command (ProxyCommand)",
    ("connect_kwargs",): "Fabric would add its keys or password to every SSH connection",
    ("ssh_config_path",): "Fabric would take ProxyCommand and IdentityFile from that file",
    ("load_ssh_configs",): "Fabric would take ProxyCommand and IdentityFile from ssh_config",
    ("runners",): "Invoke and Fabric would run every command through these classes",
    ("authentication",): "Fabric would offer these identities and strategies",
    ("forward_agent",): "Fabric would hand your SSH agent to every worker",
    ("tasks", "executor_class"): "Invoke would import it and run the tasks through it",
    ("run", "env"): "Fabric would write it, unquoted, before every remote command",
}
# the config levels read from files and the environment, and how errors name them
_LEVELS = ("system", "user", "project", "env", "runtime")


def refuse_acting_keys(config: Config) -> None:
    """One ``ConfigError`` line for the first ``ACTING_KEYS`` entry found in a config file or
    an ``INVOKE_*`` variable (ssh settings go under ``flops.ssh``)."""
    for level in _LEVELS:
        data = getattr(config, f"_{level}", None) or {}
        for keys, why in ACTING_KEYS.items():
            node: Any = data
            for key in keys:
                if not isinstance(node, dict) or key not in node:
                    break
                node = node[key]
            else:
                if level == "env":
                    where = "environment variable INVOKE_" + "_".join(keys).upper()
                else:
                    where = getattr(config, f"_{level}_path", None) or f"the {level} config file"
                raise ConfigError(
                    f"{'.'.join(keys)} (from {where}): {why}, so flops-tasks refuses it: "
                    "remove it (flops-tasks' settings are under flops, SSH ones under flops.ssh)"
                )


class _Environment(Environment):
    """Invoke's ``INVOKE_*`` reader; a value that cannot take the key's type is one line."""

    def _path_set(self, key_path: Sequence[str], value: str) -> None:
        try:
            super()._path_set(key_path, value)
        except (ValueError, TypeError, UncastableEnvVar):
            name = "INVOKE_" + "_".join(key_path).upper()
            old = self._path_get(key_path)
            raise ConfigError(
                f"{name}={value!r}: expected a {type(old).__name__} value; "
                "lists and mappings are set in a config file"
            ) from None


class FlopsConfig(Config):
    """Invoke's Config with safe config files and one-line errors (see the module doc), and
    the ``flops`` namespace's defaults, so a program or a ``tasks.py`` of one's own that uses
    this class has every ``flops.*`` key (and its ``INVOKE_FLOPS_*`` variable)."""

    @staticmethod
    def global_defaults() -> dict[str, Any]:
        from invoke.config import merge_dicts

        from .config import DEFAULTS

        defaults = Config.global_defaults()
        merge_dicts(defaults, {"flops": copy.deepcopy(DEFAULTS)})
        return defaults

    def _load_yaml(self, path: PathLike[str]) -> Any:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        return load_yaml_text(text, str(path)) or {}

    _load_yml = _load_yaml

    def _load_json(self, path: PathLike[str]) -> Any:
        with open(path, encoding="utf-8") as fh:
            try:
                data = json.load(fh)
            except RecursionError:
                raise ConfigError(f"{path}: nested too deep") from None
        check_shape(data, str(path))
        return data or {}

    def _load_py(self, path: str) -> dict[str, Any]:
        if not os.path.exists(path):  # the project's invoke.py is looked for, like .yaml
            raise FileNotFoundError(errno.ENOENT, "No such file", path)
        raise ConfigError(
            f"{path}: Python config files are not read (Invoke would run them "
            "as code); write the settings as YAML"
        )

    def _load_file(self, prefix: str, absolute: bool = False, merge: bool = True) -> None:
        where = getattr(self, f"_{prefix}_path", None) or f"the {prefix} config file"
        try:
            super()._load_file(prefix, absolute, merge)
        except ConfigError:
            raise
        except UnknownFileType as exc:
            raise ConfigError(f"{exc}: use a .yaml, .yml or .json file") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: not UTF-8 text; save it as UTF-8 YAML") from None
        except OSError as exc:
            raise ConfigError(f"{exc.filename or where}: cannot read ({exc.strerror})") from None
        except ValueError as exc:  # JSON syntax
            raise ConfigError(f"{where}: {str(exc).splitlines()[0]}") from None

    def merge(self) -> None:
        try:
            super().merge()
        except AmbiguousMergeError:
            raise ConfigError(merge_conflict(self)) from None
        refuse_acting_keys(self)

    def load_shell_env(self) -> None:
        # Invoke's own steps, with an Environment whose errors are one line
        self.merge()
        reader = _Environment(config=self._config, prefix=self._env_prefix)
        try:
            self._set(_env=reader.load())
        except AmbiguousEnvVar as exc:
            raise ConfigError(f"{exc}: rename one of the config keys") from None
        self.merge()


def merge_conflict(config: Config) -> str:
    """Name the key whose type differs between the defaults and a config level."""

    def walk(base: Any, new: Any, path: tuple[str, ...]) -> tuple[str, ...] | None:
        if isinstance(base, dict) and isinstance(new, dict):
            for key, value in new.items():
                if key in base:
                    found = walk(base[key], value, (*path, str(key)))
                    if found is not None:
                        return found
            return None
        if isinstance(base, dict) != isinstance(new, dict):
            return path
        return None

    bases: Iterable[dict[str, Any]] = [
        getattr(config, "_defaults", None) or {},
        getattr(config, "_collection", None) or {},
    ]
    for attr in ("_system", "_user", "_project", "_env", "_runtime", "_overrides"):
        level = getattr(config, attr, None) or {}
        found = [(b, p) for b in bases if (p := walk(b, level, ()))]
        if found:
            base, path = found[0]
            where = getattr(config, f"{attr}_path", None) or attr.strip("_")
            node: Any = base
            for key in path:
                node = node[key]
            want = "a mapping" if isinstance(node, dict) else "a single value, not a mapping"
            return f"{'.'.join(path)} (from {where}): expected {want}"
    return "config: a section has the wrong type (a mapping given as a single value)"


def adopt_running_program() -> None:
    """Give the running stock ``inv`` a ``FlopsConfig`` (called while it imports tasks.py).

    At that moment Invoke has read only /etc/invoke.yaml and ~/.invoke.yaml; the project's
    invoke.yaml, ``-f FILE``, ``INVOKE_*`` variables and flags are read afterwards, through
    the program's ``config``. Nothing happens outside a running ``inv`` or when the program
    already uses FlopsConfig.
    """
    main = sys.modules.get("invoke.main")
    program = getattr(main, "program", None)
    config = getattr(program, "config", None)
    if program is None or not isinstance(config, Config):
        return
    if getattr(program, "executor_class", None) is Executor:
        from .edge import FlopsExecutor

        program.executor_class = FlopsExecutor
        _describe_dry(program)
    if isinstance(config, FlopsConfig):
        return
    program.config_class = FlopsConfig
    program.config = config.clone(into=FlopsConfig)


def _describe_dry(program: Any) -> None:
    """``--dry``'s help as flops-tasks runs it, in the help ``inv`` prints after it has
    read tasks.py (``inv`` with no task). ``inv --help`` prints Invoke's own text: it
    answers before it reads tasks.py; the ``flops`` command has ours everywhere."""
    from .flags import core_args_with_our_dry

    stock = type(program).core_args
    program.core_args = lambda: core_args_with_our_dry(stock(program))
