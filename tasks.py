"""flops-tasks: wiring only. Logic lives in flops_tasks/; every default is in configure()."""

from invoke import Collection, task

from flops_tasks import cli
from flops_tasks.config import DEFAULTS
from flops_tasks.invoke_config import adopt_running_program

adopt_running_program()  # the stock inv reads invoke.yaml and -f FILE through FlopsConfig

JSON = "print the result as JSON on stdout"
YES = "do not ask before deleting (needed without a terminal)"
SERVICE = "one service of the stack, e.g. flops_manager"


@task(help={"json": JSON})
def env(c, json=False):
    """Resolve, validate and show the six FLOps addresses; write the compose env file."""
    cli.env(c, as_json=json)


@task(
    help={"build": "build images first (flops_manager from the addon-FLOps checkout)", "json": JSON}
)
def up(c, build=False, json=False):
    """Start the FLOps management suite and wait until every service is healthy."""
    cli.up(c, build=build, as_json=json)


@task(help={"json": JSON})
def down(c, json=False):
    """Stop the FLOps management suite; all data is kept."""
    cli.down(c, as_json=json)


SKIP_APPS = (
    "do not remove FLOps' apps from Oakestra first (they stay deployed: the next "
    "FLOps project may then fail with 409)"
)


@task(
    help={
        "registry": "also delete every image in the FLOps registry",
        "db": "also empty the FLOps manager database (Mongo database 'flops')",
        "clean": "empty every store but the registry: FLOps DB, MLflow backend DB, "
        "artifacts, MQTT state",
        "all_": "empty every store, the registry too",
        "skip_apps": SKIP_APPS,
        "service": "rebuild and restart only this service, keeping all data",
        "build": "rebuild images while restarting",
        "recreate": "down + up: recreate every container and the network (slower)",
        "yes": YES,
        "json": JSON,
    }
)
def reset(
    c,
    registry=False,
    db=False,
    clean=False,
    all_=False,
    skip_apps=False,
    service=None,
    build=False,
    recreate=False,
    yes=False,
    json=False,
):
    """Restart the stack with fresh processes (data kept unless a flag says otherwise)."""
    cli.reset(
        c,
        registry=registry,
        db=db,
        clean=clean,
        all_=all_,
        skip_apps=skip_apps,
        service=service,
        build=build,
        recreate=recreate,
        yes=yes,
        as_json=json,
    )


@task(name="clear-registry", help={"yes": YES, "json": JSON})
def clear_registry(c, yes=False, json=False):
    """Delete every image in the FLOps registry and restart the registry."""
    cli.clear_registry(c, yes=yes, as_json=json)


@task(help={"skip_apps": SKIP_APPS, "yes": YES, "json": JSON})
def redb(c, skip_apps=False, yes=False, json=False):
    """Empty the FLOps manager database only (MLflow, registry and artifacts are kept)."""
    cli.redb(c, skip_apps=skip_apps, yes=yes, as_json=json)


@task(help={"json": JSON})
def status(c, json=False):
    """Show every stack service with its state, health and published ports."""
    cli.status(c, as_json=json)


@task(
    help={
        "service": SERVICE,
        "follow": "keep printing new lines",
        "tail": "lines from the end of each log (default 200, 'all' for everything)",
    }
)
def logs(c, service=None, follow=False, tail="200"):
    """Show the stack's logs."""
    cli.logs(c, service=service, follow=follow, tail=tail)


HOST = "[user@]host[:port], comma-separated; default: the inventory hosts of this role"


@task(
    name="prepare-builder",
    help={
        "host": HOST,
        "push_check": "also build a linux/amd64+arm64 image as FLOps' image builder "
        "does (buildah; and docker buildx where Docker runs) and push it to the FLOps registry",
        "remove_check_tools": "only remove what --push-check installed on the hosts (buildah and "
        "its dependencies)",
        "json": JSON,
    },
)
def prepare_builder(c, host=None, push_check=False, remove_check_tools=False, json=False):
    """Prepare image-builder workers: QEMU, registry trust, NodeEngine's imageBuilder add-on;
    buildx + a multi-platform builder where Docker runs."""
    cli.prepare(
        c,
        roles={"builder"},
        host=host,
        push_check=push_check,
        remove_check_tools=remove_check_tools,
        as_json=json,
        title="prepare-builder",
    )


@task(
    name="prepare-learner",
    help={
        "host": HOST,
        "data_dir": "bind-mount this host directory instead of the docker volume "
        "ml_data_server_volume",
        "image": "ml_data_server image (default: flops.learner.image)",
        "json": JSON,
    },
)
def prepare_learner(c, host=None, data_dir=None, image=None, json=False):
    """Prepare learner workers: data mount, the ml_data_server sidecar (11027), registry trust."""
    cli.prepare(
        c,
        roles={"learner"},
        host=host,
        data_dir=data_dir,
        image=image,
        as_json=json,
        title="prepare-learner",
    )


@task(
    name="learner-data",
    help={
        "tag": "the data tag learners request (FLOps' data_tags); files are stored as "
        "<tag>.<stem>.parquet, the name the sidecar serves for it; with --list: only this tag",
        "src": "parquet files, folders or globs, comma-separated",
        "host": HOST,
        "list": "show per learner the tags and files its sidecar will serve, and "
        "files that break it (non-zero exit if any)",
        "json": JSON,
    },
)
def learner_data(c, tag=None, src=None, host=None, list_=False, json=False):
    """Copy Parquet data to learners under a data tag, or --list what their sidecars serve."""
    cli.learner_data(c, host=host, src=src, tag=tag, listing=list_, as_json=json)


@task(
    name="clear-images",
    help={
        "host": "[user@]host[:port], comma-separated; default: every inventory host",
        "registry_only": "remove only images of "
        "the FLOps registry, keep FLOps' upstream ghcr.io images",
        "yes": YES,
        "json": JSON,
    },
)
def clear_images(c, host=None, registry_only=False, yes=False, json=False):
    """Remove unused FLOps images (registry and upstream) from workers' docker and containerd."""
    cli.clear_images(c, host=host, registry_only=registry_only, yes=yes, as_json=json)


@task(name="oakestra-apps", help={"json": JSON})
def oakestra_apps(c, json=False):
    """List Oakestra's applications and services; say which are FLOps' (read-only)."""
    cli.oakestra_apps(c, as_json=json)


@task(
    name="clear-apps",
    help={
        "without_db": "recognise FLOps' apps by FLOps' names and namespaces only (when the FLOps "
        "DB cannot be read)",
        "yes": YES,
        "json": JSON,
    },
)
def clear_apps(c, without_db=False, yes=False, json=False):
    """Undeploy and delete FLOps' applications in Oakestra; every other app is kept."""
    cli.clear_apps(c, without_db=without_db, yes=yes, as_json=json)


@task(
    name="fresh-start",
    help={
        "registry": "also empty the FLOps registry (reset --all instead of --clean)",
        "skip_apps": SKIP_APPS,
        "yes": YES,
        "json": JSON,
    },
)
def fresh_start(c, registry=False, skip_apps=False, yes=False, json=False):
    """Between experiments: clear FLOps' apps, reset --clean, clear worker images, doctor."""
    cli.fresh_start(c, registry=registry, skip_apps=skip_apps, yes=yes, as_json=json)


@task(help={"json": JSON})
def doctor(c, json=False):
    """Check (read-only) every inventory host and stack service; non-zero exit if not ready."""
    cli.doctor(c, as_json=json)


@task(help={"json": JSON})
def bootstrap(c, json=False):
    """Start the stack, prepare every inventory host for its roles in parallel, then doctor."""
    cli.bootstrap(c, as_json=json)


@task(help={"workers": "number of testbed workers (default 2)", "json": JSON})
def demo(c, workers=None, json=False):
    """The whole rehearsal offline: testbed up, bootstrap against it, doctor, what now."""
    cli.demo(c, workers=workers, as_json=json)


@task(
    name="up",
    help={
        "workers": "number of worker containers (1-32, default 2)",
        "kind": "docker (sshd + containerd + dockerd; builder and learner) or "
        "containerd (sshd + containerd, no Docker; builder only), or a comma "
        "list, one per worker in order (the last repeats); default docker",
        "json": JSON,
    },
)
def testbed_up(c, workers=None, kind=None, json=False):
    """Start the offline testbed: worker containers (sshd, containerd, dockerd) and the stack."""
    cli.testbed_up(c, workers=workers, kind=kind, as_json=json)


@task(
    name="down",
    help={"keep_images": "keep the built images (faster next testbed.up)", "json": JSON},
)
def testbed_down(c, keep_images=False, json=False):
    """Remove everything the testbed created (label org.flops-tasks.testbed) and .testbed/."""
    cli.testbed_down(c, keep_images=keep_images, as_json=json)


@task(
    name="dev-images",
    help={
        "addon": "the addon-FLOps checkout to build from (default: flops.addon.path)",
        "component": "comma-separated, of image-builder, project-observer, tracking-server, "
        "mock-data-provider, ml-data-server; default: those whose sources changed since the "
        "last run (with --restore: every one)",
        "host": "[user@]host[:port], comma-separated; default: every inventory host",
        "platform": "also build for linux/amd64 or linux/arm64 (comma-separated), besides the "
        "target workers' own platforms",
        "restore": "remove the side-loaded images instead: the next deploy pulls the public ones",
        "no_cache": "build every layer of the images again (a cold build)",
        "json": JSON,
    },
)
def dev_images(
    c,
    addon=None,
    component=None,
    host=None,
    platform=None,
    restore=False,
    no_cache=False,
    json=False,
):
    """FLOps' developer loop: build FLOps' own images from a checkout, run them on workers."""
    cli.dev_images(
        c,
        addon=addon,
        component=component,
        host=host,
        platform=platform,
        restore=restore,
        no_cache=no_cache,
        as_json=json,
    )


testbed = Collection("testbed", testbed_up, testbed_down)
ns = Collection(
    env,
    up,
    down,
    reset,
    clear_registry,
    redb,
    status,
    logs,
    prepare_builder,
    prepare_learner,
    learner_data,
    clear_images,
    oakestra_apps,
    clear_apps,
    fresh_start,
    doctor,
    bootstrap,
    demo,
    dev_images,
    testbed,
)
ns.configure({"flops": DEFAULTS})
