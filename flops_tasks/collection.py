"""flops-tasks' tasks: wiring only. Logic lives in flops_tasks/workflows; every default is
in configure(); every flag's help and short form in flops_tasks/flags.py.

``ns`` is what the installed ``flops`` command runs (flops_tasks/program.py) and what the
checkout's tasks.py hands to the stock ``inv``.
"""

from invoke import Collection, Context

from .config import DEFAULTS
from .edge import task as run_task
from .flags import flops_task as task
from .invoke_config import adopt_running_program

adopt_running_program()  # the stock inv reads invoke.yaml and -f FILE through FlopsConfig


@task
def env(c: Context, json: bool = False) -> None:
    """Resolve, validate and show the six FLOps addresses (read-only)."""
    from .run import Run
    from .workflows import stack

    stack.env(Run.of(c), as_json=json)


@task
def up(
    c: Context, build: bool = False, json: bool = False, verbose: bool = False, diff: bool = False
) -> None:
    """Start the FLOps management suite and wait until every service is healthy."""
    from .workflows import stack

    run_task(c, "up", lambda run: stack.up(run, build=build), json=json, verbose=verbose, diff=diff)


@task
def down(c: Context, json: bool = False, verbose: bool = False) -> None:
    """Stop the FLOps management suite; all data is kept."""
    from .workflows import stack

    run_task(c, "down", stack.down, json=json, verbose=verbose)


@task
def reset(
    c: Context,
    registry: bool = False,
    db: bool = False,
    clean: bool = False,
    all_: bool = False,
    skip_apps: bool = False,
    service: str | None = None,
    build: bool = False,
    recreate: bool = False,
    yes: bool = False,
    json: bool = False,
    verbose: bool = False,
    diff: bool = False,
) -> None:
    """Restart the stack with fresh processes (data kept unless a flag says otherwise)."""
    from .workflows import stack

    run_task(
        c,
        "reset",
        lambda run: stack.reset(
            run,
            registry=registry,
            db=db,
            clean=clean,
            all_=all_,
            skip_apps=skip_apps,
            service=service,
            build=build,
            recreate=recreate,
            yes=yes,
        ),
        json=json,
        verbose=verbose,
        diff=diff,
    )


@task(name="clear-registry")
def clear_registry(
    c: Context, yes: bool = False, json: bool = False, verbose: bool = False
) -> None:
    """Delete every image in the FLOps registry and restart the registry."""
    from .workflows import stack

    run_task(
        c,
        "clear-registry",
        lambda run: stack.clear_registry(run, yes=yes),
        json=json,
        verbose=verbose,
    )


@task
def redb(
    c: Context,
    skip_apps: bool = False,
    yes: bool = False,
    json: bool = False,
    verbose: bool = False,
) -> None:
    """Empty the FLOps manager database only (MLflow, registry and artifacts are kept)."""
    from .workflows import stack

    run_task(
        c,
        "redb",
        lambda run: stack.redb(run, skip_apps=skip_apps, yes=yes),
        json=json,
        verbose=verbose,
    )


@task
def status(c: Context, json: bool = False) -> None:
    """Show every stack service with its state, health and published ports."""
    from .run import Run
    from .workflows import stack

    stack.status(Run.of(c), as_json=json)


@task
def logs(c: Context, service: str | None = None, follow: bool = False, tail: str = "200") -> None:
    """Show the stack's logs."""
    from .run import Run
    from .workflows import stack

    stack.logs(Run.of(c), service=service, follow=follow, tail=tail)


@task(name="prepare-builder")
def prepare_builder(
    c: Context,
    host: str | None = None,
    push_check: bool = False,
    remove_check_tools: bool = False,
    json: bool = False,
    verbose: bool = False,
    diff: bool = False,
) -> None:
    """Prepare image-builder workers: QEMU, registry trust, NodeEngine's imageBuilder add-on;
    buildx + a multi-platform builder where Docker runs."""
    from .workflows import workers

    run_task(
        c,
        "prepare-builder",
        lambda run: workers.prepare(
            run,
            roles={"builder"},
            host=host,
            push_check=push_check,
            remove_check_tools=remove_check_tools,
            title="prepare-builder",
        ),
        json=json,
        verbose=verbose,
        diff=diff,
    )


@task(name="prepare-learner")
def prepare_learner(
    c: Context,
    host: str | None = None,
    data_dir: str | None = None,
    image: str | None = None,
    json: bool = False,
    verbose: bool = False,
    diff: bool = False,
) -> None:
    """Prepare learner workers: data mount, the ml_data_server sidecar (11027), registry trust."""
    from .workflows import workers

    run_task(
        c,
        "prepare-learner",
        lambda run: workers.prepare(
            run,
            roles={"learner"},
            host=host,
            data_dir=data_dir,
            image=image,
            title="prepare-learner",
        ),
        json=json,
        verbose=verbose,
        diff=diff,
    )


@task(name="learner-data")
def learner_data(
    c: Context,
    tag: str | None = None,
    src: str | None = None,
    host: str | None = None,
    list_: bool = False,
    json: bool = False,
    verbose: bool = False,
) -> None:
    """Copy Parquet data to learners under a data tag, or --list what their sidecars serve."""
    from .errors import UsageError
    from .run import Run
    from .workflows import learner_data as flow

    if list_:
        if src is not None:
            raise UsageError("--src copies files and --list only shows them: use one of them")
        flow.listing(Run.of(c), host=host, tag=tag, as_json=json)
        return
    run_task(
        c,
        "learner-data",
        lambda run: flow.copy(run, host=host, src=src, tag=tag),
        json=json,
        verbose=verbose,
    )


@task(name="clear-images")
def clear_images(
    c: Context,
    host: str | None = None,
    registry_only: bool = False,
    yes: bool = False,
    json: bool = False,
    verbose: bool = False,
) -> None:
    """Remove unused FLOps images (registry and upstream) from workers' docker and containerd."""
    from .workflows import workers

    run_task(
        c,
        "clear-images",
        lambda run: workers.clear_images(run, host=host, registry_only=registry_only, yes=yes),
        json=json,
        verbose=verbose,
    )


@task(name="oakestra-apps")
def oakestra_apps(c: Context, json: bool = False) -> None:
    """List Oakestra's applications and services; say which are FLOps' (read-only)."""
    from .run import Run
    from .workflows import oakestra

    oakestra.oakestra_apps(Run.of(c), as_json=json)


@task(name="clear-apps")
def clear_apps(
    c: Context,
    without_db: bool = False,
    yes: bool = False,
    json: bool = False,
    verbose: bool = False,
) -> None:
    """Undeploy and delete FLOps' applications in Oakestra; every other app is kept."""
    from .workflows import oakestra

    run_task(
        c,
        "clear-apps",
        lambda run: oakestra.clear_apps(run, yes=yes, without_db=without_db),
        json=json,
        verbose=verbose,
    )


@task(name="fresh-start")
def fresh_start(
    c: Context,
    registry: bool = False,
    skip_apps: bool = False,
    yes: bool = False,
    json: bool = False,
    verbose: bool = False,
) -> None:
    """Between experiments: clear FLOps' apps, reset --clean, clear worker images, doctor."""
    from .workflows import journeys

    run_task(
        c,
        "fresh-start",
        lambda run: journeys.fresh_start(run, registry=registry, skip_apps=skip_apps, yes=yes),
        json=json,
        verbose=verbose,
    )


@task
def doctor(c: Context, json: bool = False, verbose: bool = False) -> None:
    """Check (read-only) every inventory host and stack service; non-zero exit if not ready."""
    from .workflows import journeys

    run_task(c, "doctor", journeys.doctor, json=json, verbose=verbose)


@task
def bootstrap(c: Context, json: bool = False, verbose: bool = False, diff: bool = False) -> None:
    """Start the stack, prepare every inventory host for its roles in parallel, then doctor."""
    from .workflows import journeys

    run_task(c, "bootstrap", journeys.bootstrap, json=json, verbose=verbose, diff=diff)


@task
def demo(c: Context, workers: str | None = None, json: bool = False, verbose: bool = False) -> None:
    """The whole rehearsal offline: testbed up, bootstrap against it, doctor, what now."""
    from .workflows import journeys, testbed

    count = testbed.workers(workers)
    run_task(c, "demo", lambda run: journeys.demo(run, count), json=json, verbose=verbose)


@task(name="up")
def testbed_up(
    c: Context,
    workers: str | None = None,
    kind: str | None = None,
    placement: str | None = None,
    json: bool = False,
) -> None:
    """Start the offline testbed: worker containers (sshd, containerd, dockerd) and the stack."""
    from .paths import state_dir
    from .workflows import testbed

    testbed.up(workers, kind, as_json=json, placement=placement, state=state_dir(c.config))


@task(name="down")
def testbed_down(c: Context, keep_images: bool = False, json: bool = False) -> None:
    """Remove everything the testbed created (label org.flops-tasks.testbed) and its folder."""
    from .paths import state_dir
    from .workflows import testbed

    testbed.down(keep_images=keep_images, as_json=json, state=state_dir(c.config))


@task(name="dev-images")
def dev_images(
    c: Context,
    addon: str | None = None,
    component: str | None = None,
    host: str | None = None,
    platform: str | None = None,
    restore: bool = False,
    no_cache: bool = False,
    json: bool = False,
    verbose: bool = False,
) -> None:
    """FLOps' developer loop: build FLOps' own images from a checkout, run them on workers."""
    from flops_tasks.workflows import dev

    run_task(
        c,
        "dev-images --restore" if restore else "dev-images",
        lambda run: dev.dev_images(
            run,
            addon=addon,
            component=component,
            host=host,
            platform=platform,
            restore=restore,
            no_cache=no_cache,
        ),
        json=json,
        verbose=verbose,
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
