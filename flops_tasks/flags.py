"""Every flag of every task, declared once: its help and its short form.

A short flag means the same in every task that has it, and ``-h`` is never one (it is
help). ``FlopsTask`` takes the help and the short form from ``FLAGS`` (Invoke would pick the
first free letter of each name, so ``-s`` meant ``--service`` in one task and ``--src`` in
another); a task parameter missing from ``FLAGS`` is an error when the task is loaded.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from invoke import Argument
from invoke.tasks import Task


@dataclass(frozen=True)
class Flag:
    help: str
    short: str = ""


FLAGS: dict[str, Flag] = {
    "json": Flag("print the result as JSON on stdout", "j"),
    "verbose": Flag("show every step of every host with its detail, not only what changed", "v"),
    "diff": Flag(
        "show each file a preparation changes on a worker as a unified diff (with --dry: "
        "the diff it would make)"
    ),
    "yes": Flag("do not ask before deleting (needed without a terminal)", "y"),
    "host": Flag(
        "[user@]host[:port], comma-separated; default: the inventory hosts the task is for",
        "H",
    ),
    "service": Flag(
        "one service of the stack, e.g. flops_manager (reset: rebuild and restart only it, "
        "all data kept)",
        "s",
    ),
    "registry": Flag("also empty the FLOps registry (delete every image in it)", "r"),
    "build": Flag("build the images first (flops_manager from the addon-FLOps checkout)", "b"),
    "db": Flag("also empty the FLOps manager database (Mongo database 'flops')"),
    "clean": Flag(
        "empty every store but the registry: FLOps DB, MLflow backend DB, artifacts, MQTT state"
    ),
    "all_": Flag("empty every store, the registry too"),
    "skip_apps": Flag(
        "do not remove FLOps' apps from Oakestra first (they stay deployed: the next FLOps "
        "project may then fail with 409)"
    ),
    "recreate": Flag("down + up: recreate every container and the network (slower)"),
    "follow": Flag("keep printing new lines"),
    "tail": Flag("lines from the end of each log (default 200, 'all' for everything)"),
    "push_check": Flag(
        "also build a linux/amd64+arm64 image as FLOps' image builder does (buildah; and "
        "docker buildx where Docker runs) and push it to the FLOps registry"
    ),
    "remove_check_tools": Flag(
        "only remove what --push-check installed on the hosts (buildah and its dependencies)"
    ),
    "data_dir": Flag(
        "bind-mount this host directory instead of the docker volume ml_data_server_volume"
    ),
    "image": Flag("ml_data_server image (default: flops.learner.image)"),
    "tag": Flag(
        "the data tag learners request (FLOps' data_tags); files are stored as "
        "<tag>.<stem>.parquet, the name the sidecar serves for it; with --list: only this tag",
        "t",
    ),
    "src": Flag("parquet files, folders or globs, comma-separated"),
    "list_": Flag(
        "show per learner the tags and files its sidecar will serve, and files that break it "
        "(non-zero exit if any)"
    ),
    "registry_only": Flag(
        "remove only images of the FLOps registry, keep FLOps' upstream ghcr.io images"
    ),
    "without_db": Flag(
        "recognise FLOps' apps by FLOps' names and namespaces only (when the FLOps DB cannot "
        "be read)"
    ),
    "workers": Flag("number of testbed workers (1-32, default 2)", "w"),
    "kind": Flag(
        "docker (sshd + containerd + dockerd; builder and learner) or containerd (sshd + "
        "containerd, no Docker; builder only), or a comma list, one per worker in order (the "
        "last repeats); default docker"
    ),
    "keep_images": Flag("keep the built images (faster next testbed.up)"),
    "addon": Flag("the addon-FLOps checkout to build from (default: flops.addon.path)"),
    "component": Flag(
        "comma-separated, of image-builder, project-observer, tracking-server, "
        "mock-data-provider, ml-data-server; default: those whose sources changed since the "
        "last run (with --restore: every one)"
    ),
    "platform": Flag(
        "also build for linux/amd64 or linux/arm64 (comma-separated), besides the target "
        "workers' own platforms"
    ),
    "restore": Flag("remove the side-loaded images instead: the next deploy pulls the public ones"),
    "no_cache": Flag("build every layer of the images again (a cold build)"),
    "placement": Flag(
        "start the suite placed across machines: split (the registry and the FTP store on "
        "worker w1's own Docker engine, the rest here) or remote (everything on w1); its "
        "config is written beside the testbed's (split.yaml, remote.yaml)"
    ),
}


class FlopsTask(Task):
    """Invoke's Task with help and short flags from ``FLAGS`` (see the module doc)."""

    def __init__(self, body: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        kwargs["auto_shortflags"] = False
        super().__init__(body, *args, **kwargs)

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        if name not in FLAGS:
            raise ValueError(f"flag {name!r} of task {self.name!r} is not declared in FLAGS")
        opts = super().arg_opts(name, default, taken_names)
        flag = FLAGS[name]
        if flag.short:
            opts["names"].append(flag.short)
        opts.setdefault("help", flag.help)
        return opts


def flops_task(*args: Any, **kwargs: Any) -> Any:
    """``invoke.task`` making a ``FlopsTask``."""
    from invoke import task

    return task(*args, klass=FlopsTask, **kwargs)


def parameters(body: Callable[..., Any]) -> list[str]:
    """The flag names of a task body (every parameter but the context)."""
    return list(inspect.signature(body).parameters)[1:]


DRY_HELP = (
    "Run every probe and check, change nothing, and report exactly the changes the real "
    "run would make."
)


def core_args_with_our_dry(args: list[Argument]) -> list[Argument]:
    """Invoke's core flags, with ``--dry`` described as flops-tasks runs it (Invoke's own
    text, "Echo commands instead of running", is not what happens here)."""
    for arg in args:
        if arg.name == "dry":
            arg.help = DRY_HELP
    return args
