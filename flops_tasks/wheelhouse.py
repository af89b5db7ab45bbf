"""The wheelhouse: every wheel of a requirements file, downloaded once by this host's pip.

The testbed builds images from upstream's Python code offline: containers on these machines
cannot verify TLS to the package index, the host can. ``ensure`` has the host's pip download
binary wheels for the images' Python (Debian bookworm's CPython 3.11, this host's
architecture) into a directory under ``~/.cache/flops-tasks/wheelhouse/``, named by a digest
of the requirements, and reuses it as long as the requirements are the same. Images install
from it with ``pip install --no-index --find-links``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import FlopsError

PYTHON = "3.11"  # Debian bookworm's python3, the interpreter of the testbed's images
GLIBC_MINOR = 36  # bookworm's glibc 2.36: manylinux_2_5 .. manylinux_2_36 wheels run on it
MARKER = "wheelhouse.json"
TIMEOUT = 1800.0

Progress = Callable[[str], None]


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "flops-tasks" / "wheelhouse"


def platforms(machine: str | None = None) -> list[str]:
    """pip ``--platform`` tags of wheels that run on bookworm (pip does not widen them)."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(
        machine or platform.machine(), machine or platform.machine()
    )
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(GLIBC_MINOR, 4, -1)]
    legacy = ["manylinux2014"] + (["manylinux2010", "manylinux1"] if arch == "x86_64" else [])
    return tags + [f"{name}_{arch}" for name in legacy]


def pins(text: str) -> dict[str, str]:
    """``name==version`` lines of a requirements file: normalised name -> version."""
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line)
        if not m:
            raise FlopsError(
                f"requirement {line!r} is not pinned as name==version: pin it, "
                "so the offline images are the ones tested"
            )
        out[_normalise(m.group(1))] = m.group(2)
    return out


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def missing_wheels(wanted: dict[str, str], files: list[str]) -> list[str]:
    """Pinned requirements without a wheel of that exact version among ``files``."""
    have = set()
    for name in files:
        parts = name[: -len(".whl")].split("-") if name.endswith(".whl") else []
        if len(parts) >= 2:
            have.add((_normalise(parts[0]), parts[1]))
    return [f"{n}=={v}" for n, v in wanted.items() if (n, v) not in have]


def location(requirements: Path, cache: Path, python: str, machine: str | None) -> Path:
    text = requirements.read_text()
    digest = hashlib.sha256("\0".join([text, python, *platforms(machine)]).encode())
    return cache / f"{requirements.parent.name}-{digest.hexdigest()[:16]}"


def is_complete(dest: Path) -> bool:
    """The marker is written last, after the check; every file it lists must still be there."""
    try:
        listed = json.loads((dest / MARKER).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all((dest / name).is_file() for name in listed)


def ensure(
    requirements: Path,
    progress: Progress = lambda _: None,
    cache: Path | None = None,
    python: str = PYTHON,
    machine: str | None = None,
    pip: list[str] | None = None,
) -> tuple[Path, bool]:
    """The filled wheelhouse for ``requirements``; True when it was filled now."""
    cache = cache or default_cache()
    wanted = pins(requirements.read_text())
    dest = location(requirements, cache, python, machine)
    if is_complete(dest):
        return dest, False
    cache.mkdir(parents=True, exist_ok=True)
    progress(f"filling the wheelhouse {dest} with pip download (once)")
    tmp = Path(tempfile.mkdtemp(prefix=".filling-", dir=cache))
    try:
        cmd = [
            *(pip or [sys.executable, "-m", "pip"]),
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--python-version",
            python,
            "--implementation",
            "cp",
            "--abi",
            "cp" + python.replace(".", ""),
            *[arg for tag in platforms(machine) for arg in ("--platform", tag)],
            "-r",
            str(requirements),
            "-d",
            str(tmp),
        ]
        try:
            res = subprocess.run(
                cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=TIMEOUT
            )
        except subprocess.TimeoutExpired:
            raise FlopsError(
                f"cannot fill the wheelhouse for {requirements}: pip download "
                f"took over {TIMEOUT:g}s; check this host's access to the "
                "package index and retry"
            ) from None
        if res.returncode != 0:
            raise FlopsError(
                f"cannot fill the wheelhouse for {requirements} "
                f"({_pip_error(res.stderr)}): check that 'pip download' reaches "
                "the package index from this host (proxy, certificates) and retry"
            )
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        missing = missing_wheels(wanted, files)
        if missing:
            raise FlopsError(
                f"the wheelhouse for {requirements} lacks {missing[0]} after pip "
                "download: fix the pin in that file"
            )
        (tmp / MARKER).write_text(
            json.dumps(
                {"requirements": str(requirements), "python": python, "files": files}, indent=1
            )
        )
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest, True


def _pip_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors or lines or ["pip failed without a message"])[-1]
