"""Every remote command string of flops-tasks is built here, from argv lists, with quoting.

Builders are pure: they take values and return a shell string in which every value is
quoted by ``shlex``. Nothing else in the package writes a command line by hand.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence

PROBE_MARK = "@@flops-probe"


def q(value: object) -> str:
    """Quote one value for a POSIX shell."""
    return shlex.quote(str(value))


def cmd(*argv: object) -> str:
    """One command from its argv, every element quoted."""
    return shlex.join(str(a) for a in argv)


def all_of(*commands: str) -> str:
    """Run commands in order, stop at the first failure."""
    return " && ".join(f"{{ {c}; }}" for c in commands if c)


def any_of(*commands: str) -> str:
    return " || ".join(f"{{ {c}; }}" for c in commands if c)


def quiet(command: str) -> str:
    return f"{{ {command}; }} >/dev/null 2>&1"


def sh(script: str) -> str:
    """Run ``script`` (already built from quoted pieces) under ``sh -c``."""
    return cmd("sh", "-c", script)


def sudo(command: str, prompt: str | None) -> str:
    """Run a built command as root: ``sudo -n`` without a password, else ``sudo -S``."""
    if prompt is None:
        return cmd("sudo", "-n", "-H", "--", "sh", "-c", command)
    return cmd("sudo", "-S", "-p", prompt, "-H", "--", "sh", "-c", command)


def write_file(path: str, content: str, mode: str = "0644") -> str:
    """Write ``content`` to ``path`` atomically (temp file + rename), creating its folder."""
    tmp = f"{path}.flops-tmp"
    folder = path.rsplit("/", 1)[0] or "/"
    return all_of(
        cmd("mkdir", "-p", folder),
        f"printf '%s' {q(content)} > {q(tmp)}",
        cmd("chmod", mode, tmp),
        cmd("mv", "-f", tmp, path),
    )


def probe_batch(probes: Sequence[tuple[str, str]]) -> str:
    """Many read-only probes in one round trip.

    Each probe's output is framed by marker lines that carry its name and exit code, so
    ``parse_probe_batch`` can split them apart. Probes run in a subshell with stdin closed.
    """
    parts = []
    for name, command in probes:
        parts.append(
            f"echo {q(PROBE_MARK + ' ' + name)}; ( {command} ) </dev/null 2>&1; "
            f"echo {q(PROBE_MARK + ' rc')} $?"
        )
    return "; ".join(parts)


def parse_probe_batch(stdout: str) -> dict[str, tuple[int, str]]:
    """Split ``probe_batch`` output into ``name -> (exit code, output)``."""
    results: dict[str, tuple[int, str]] = {}
    name: str | None = None
    lines: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(PROBE_MARK + " "):
            rest = line[len(PROBE_MARK) + 1:]
            if name is not None and rest.startswith("rc "):
                code = rest[3:].strip()
                results[name] = (int(code) if code.lstrip("-").isdigit() else 255,
                                 "\n".join(lines).strip())
                name, lines = None, []
                continue
            name, lines = rest, []
            continue
        if name is not None:
            lines.append(line)
    return results


def echo_args(values: Iterable[str]) -> str:
    """Print each value on its own line (used to prove quoting end to end)."""
    return cmd("printf", "%s\\n", *values)
