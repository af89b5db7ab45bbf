"""flops-tasks: wiring only. Logic lives in flops_tasks/; every default is in configure()."""

from invoke import Collection, task

from flops_tasks import cli
from flops_tasks.config import DEFAULTS, install_friendly_loaders

install_friendly_loaders()

JSON = {"json": "print the result as JSON on stdout"}


@task(help=JSON)
def env(c, json=False):
    """Resolve, validate and show the six FLOps addresses; write the compose env file."""
    cli.env(c, as_json=json)


ns = Collection(env)
ns.configure({"flops": DEFAULTS})
