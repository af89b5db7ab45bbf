"""dev-images without Docker or SSH: source hashes and the default selection, the pushes
(against the registry stand-in), the per-worker import and restore (recorded ``ctr``/``docker``
output in, planned commands out), doctor's warnings, and the checks that refuse a run before
anything is built, pushed or imported."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from flops_tasks import commands as C
from flops_tasks import devimages as D
from flops_tasks import oci, sideload
from flops_tasks.config import settings
from flops_tasks.errors import FlopsError, UsageError
from flops_tasks.hosts import Target
from flops_tasks.outcome import Status

from .fake_worker import FakeSession
from .registry_standin import Running

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = "172.20.0.1:5073"
MDS = sideload.public_name("ml-data-server")
MDP = sideload.public_name("mock-data-provider")
INDEX = "sha256:" + "a" * 64
OLD = "sha256:" + "b" * 64


def tarball() -> Path:
    from flops_tasks.testbed import upstream_tarball

    path = upstream_tarball()
    if not path.is_file():
        pytest.skip(f"the upstream addon-FLOps tarball is not at {path}")
    return path


@pytest.fixture(scope="module")
def upstream(tmp_path_factory) -> Path:
    """The upstream tarball unpacked, as a developer's checkout (read-only here)."""
    dest = tmp_path_factory.mktemp("upstream")
    with tarfile.open(tarball()) as tar:
        tar.extractall(dest, filter="data")
    return next(p for p in dest.iterdir() if p.is_dir())


@pytest.fixture
def checkout(upstream, tmp_path) -> Path:
    """A copy a test may change."""
    dest = tmp_path / "addon-FLOps"
    shutil.copytree(upstream, dest)
    return dest


# -- input and source hashes ------------------------------------------------------------------
def test_a_folder_without_the_addon_layout_is_not_a_checkout(tmp_path):
    with pytest.raises(UsageError, match="is not an addon-FLOps checkout"):
        D.checkout(str(tmp_path))
    with pytest.raises(UsageError, match="is not an addon-FLOps checkout"):
        D.checkout(str(ROOT))


def test_components_are_checked_by_name_and_by_build_mode():
    assert [c.name for c in D.parse_components("ml-data-server,mock-data-provider", "offline")] == [
        "ml-data-server",
        "mock-data-provider",
    ]
    with pytest.raises(UsageError, match="unknown component 'flops_manager'"):
        D.parse_components("flops_manager", "upstream")
    with pytest.raises(UsageError, match="image-builder cannot be built offline"):
        D.parse_components("image-builder", "offline")
    assert D.parse_components(None, "offline") is None
    # every public name the manager deploys is a component (images.UPSTREAM lists them)
    from flops_tasks.images import UPSTREAM

    assert {c.public.rsplit(":", 1)[0] for c in D.COMPONENTS.values()} == set(UPSTREAM)


@pytest.mark.parametrize("mode", ["offline", "upstream"])
def test_the_source_hash_follows_the_components_own_inputs(checkout, mode):
    mdp, mds = D.COMPONENTS["mock-data-provider"], D.COMPONENTS["ml-data-server"]
    before = {c.name: D.source_hash(c, checkout, mode) for c in (mdp, mds)}
    assert before == {c.name: D.source_hash(c, checkout, mode) for c in (mdp, mds)}
    main = checkout / "mock_data_provider_package" / "mock_data_provider" / "main.py"
    main.write_text(main.read_text() + "\nprint('marker')\n")
    after = {c.name: D.source_hash(c, checkout, mode) for c in (mdp, mds)}
    assert after["mock-data-provider"] != before["mock-data-provider"]
    assert after["ml-data-server"] == before["ml-data-server"]
    assert D.source_hash(mdp, checkout, "offline") != D.source_hash(mdp, checkout, "upstream")


def test_offline_builds_hash_the_shared_utils_library_too(checkout):
    mds = D.COMPONENTS["ml-data-server"]
    offline, upstream = (
        D.source_hash(mds, checkout, "offline"),
        D.source_hash(mds, checkout, "upstream"),
    )
    (checkout / "utils_library" / "flops_utils" / "logging.py").write_text("# changed\n")
    assert D.source_hash(mds, checkout, "offline") != offline
    # upstream's Dockerfile installs flops-utils from GitHub, not from the checkout
    assert D.source_hash(mds, checkout, "upstream") == upstream


def test_the_default_selection_is_what_changed_since_the_last_run(checkout, tmp_path):
    state = tmp_path / "state.json"
    with pytest.raises(UsageError, match="no earlier dev-images run .* --component"):
        D.changed_since(state, REGISTRY, checkout, "offline")
    mdp, mds = D.COMPONENTS["mock-data-provider"], D.COMPONENTS["ml-data-server"]
    D.record(
        state,
        REGISTRY,
        checkout,
        {c.name: {"source": D.source_hash(c, checkout, "offline")} for c in (mdp, mds)},
    )
    picked, notes = D.changed_since(state, REGISTRY, checkout, "offline")
    assert picked == [] and "ml-data-server, mock-data-provider" in notes[0]
    server = checkout / "ml_data_server_package" / "ml_data_server" / "main.py"
    server.write_text(server.read_text() + "\n# one line\n")
    picked, _ = D.changed_since(state, REGISTRY, checkout, "offline")
    assert [c.name for c in picked] == ["ml-data-server"]
    # another registry (another cluster) has its own record
    with pytest.raises(UsageError):
        D.changed_since(state, "10.0.0.9:5073", checkout, "offline")
    D.forget(state, ["ml-data-server"])
    assert set(D.recorded(state, REGISTRY, checkout)) == {"mock-data-provider"}
    D.forget(state, ["mock-data-provider"])
    assert json.loads(state.read_text()) == {}  # nothing side-loaded: nothing recorded


def test_the_state_path_is_beside_the_managers_staged_context(ctx_factory):
    from flops_tasks.build_context import manager_context_dir

    s = settings(ctx_factory())
    assert D.state_path(s).parent == manager_context_dir(s).parent


# -- the local builder ------------------------------------------------------------------------
BUILDX_INSPECT = """Name:          default
Driver:        docker
Last Activity: 2026-12-04 23:33:55 +0000 UTC

Nodes:
Name:      default
Endpoint:  default
Status:    running
BuildKit:  v0.8+unknown
Platforms: linux/amd64, linux/386
"""


def test_a_builder_without_the_target_platform_is_refused_in_one_line():
    offered = D.parse_builder_platforms(BUILDX_INSPECT)
    assert offered == ["linux/amd64", "linux/386"]
    D.check_builder(["linux/amd64"], offered)
    with pytest.raises(FlopsError) as err:
        D.check_builder(["linux/amd64", "linux/arm64"], offered)
    msg = err.value.message
    assert "cannot build linux/arm64" in msg and "qemu-user-static" in msg and "\n" not in msg


# -- the registry -----------------------------------------------------------------------------
@pytest.fixture
def registry():
    server = Running()
    yield server
    server.stop()


def saved(tmp_path: Path, payload: bytes, arch: str = "amd64") -> oci.SavedImage:
    layer = tmp_path / f"layer-{arch}.tar"
    layer.write_bytes(payload)
    cache = oci.BlobCache(tmp_path / "cache")
    diff_id = oci.sha256_bytes(payload)
    blob = cache.add_layer(diff_id, layer)
    config = oci.canonical(
        {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    )
    return oci.SavedImage(config, (blob,), (diff_id,))


def test_push_uploads_only_what_the_registry_lacks_and_reads_back(registry, tmp_path):
    client = oci.Registry(registry.address)
    amd64 = saved(tmp_path, b"x" * 5000)
    arm64 = saved(tmp_path, b"y" * 5000, "arm64")
    digest, blobs, _ = oci.push_image(client, "flops-dev/c", amd64)
    assert blobs == 2  # config and layer
    again, blobs, sent = oci.push_image(client, "flops-dev/c", amd64)
    assert (again, blobs, sent) == (digest, 0, 0)
    second, _, _ = oci.push_image(client, "flops-dev/c", arm64)
    entries = [
        oci.Entry(digest, len(amd64.manifest()), amd64.platform),
        oci.Entry(second, len(arm64.manifest()), arm64.platform),
    ]
    index = oci.push_index(client, "flops-dev/c", "dev-1", entries)
    found = oci.read_index(client, "flops-dev/c", "dev-1")
    assert found is not None and found[0] == index
    assert sorted(e.name for e in found[1]) == ["linux/amd64", "linux/arm64"]
    assert oci.read_index(client, "flops-dev/c", "dev-2") is None
    # the compressed layer is a gzip of the layer: what containerd and Docker unpack
    import gzip

    assert gzip.decompress(registry.state.blobs[amd64.layers[0].digest]) == b"x" * 5000


def test_a_registry_that_refuses_pushes_is_one_line(registry):
    registry.state.read_only = True
    client = oci.Registry(registry.address)
    client.check()
    with pytest.raises(FlopsError) as err:
        client.accepts_push("flops-dev/ml-data-server")
    msg = err.value.message
    assert f"the FLOps registry {registry.address} refused a push" in msg
    assert "HTTP 405" in msg and "UNSUPPORTED" in msg and "\n" not in msg


def test_a_registry_that_does_not_answer_is_one_line():
    with pytest.raises(FlopsError, match="does not answer"):
        oci.Registry("127.0.0.1:9", timeout=2).check()


# -- the workers ------------------------------------------------------------------------------
CTR_HEADER = "REF TYPE DIGEST SIZE PLATFORMS LABELS"
MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def ctr_line(ref: str, digest: str, labels: dict[str, str] | None = None) -> str:
    text = ",".join(f"{k}={v}" for k, v in (labels or {}).items()) or "-"
    return f"{ref} {MANIFEST_LIST} {digest} 95.1 MiB linux/amd64,linux/arm64 {text}"


def docker_info(trusted: list[str]) -> str:
    return json.dumps(
        {
            "ServerVersion": "26.1.5",
            "RegistryConfig": {"IndexConfigs": {r: {"Name": r, "Secure": False} for r in trusted}},
        }
    )


def worker_raw(
    ctr: list[str] | None = None,
    docker: dict[str, tuple[str, dict]] | None = None,
    has_docker: bool = True,
    trusted: tuple[str, ...] = (REGISTRY,),
    containerd: bool = True,
    machine: str = "x86_64",
    sidecar: str = "",
) -> dict[str, tuple[int, str]]:
    lines = []
    for c in sideload.ALL:
        ref = sideload.public_name(c)
        if docker and ref in docker:
            lines.append(f"{ref} {docker[ref][0]} {json.dumps(docker[ref][1])}")
        else:
            lines.append(f"{ref} -")
    return {
        "machine": (0, machine),
        "containerd": (0 if containerd else 1, ""),
        "dev_ctr": (0, "\n".join([CTR_HEADER, *(ctr or [])])),
        "docker": (0, docker_info(list(trusted)))
        if has_docker
        else (0, f"{C.MISSING_MARK} docker"),
        "dev_docker": (0, "\n".join(lines)) if has_docker else (0, f"{C.MISSING_MARK} docker"),
        "dev_sidecar": (0, sidecar),
    }


def wanted(component: str, source: str = "1234567890abcdef", digest: str = INDEX):
    return sideload.Wanted(component, source, f"{REGISTRY}/flops-dev/{component}", digest)


def side_loaded(source: str = "1234567890abcdef", digest: str = INDEX) -> dict[str, str]:
    return {C.DEV_SOURCE_LABEL: source, C.DEV_DIGEST_LABEL: digest}


def test_a_worker_without_containerd_or_trust_is_refused_with_the_fix():
    assert sideload.Worker("w1", worker_raw()).problem(REGISTRY, True) is None
    no_containerd = sideload.Worker("w2", worker_raw(containerd=False))
    msg = no_containerd.problem(REGISTRY, False)
    assert msg and "w2 has no containerd" in msg and "--host" in msg
    no_ctr = worker_raw()
    no_ctr["dev_ctr"] = (0, f"{C.MISSING_MARK} ctr")
    assert "ctr is not installed" in (sideload.Worker("w2", no_ctr).problem(REGISTRY, False) or "")
    untrusting = sideload.Worker("w1", worker_raw(trusted=()))
    assert "inv prepare-learner --host w1" in (untrusting.problem(REGISTRY, True) or "")
    assert untrusting.problem(REGISTRY, False) is None  # no sidecar image: Docker is not used
    armv7 = sideload.Worker("w3", worker_raw(machine="armv7l"))
    assert "armv7l" in (armv7.problem(REGISTRY, False) or "")


def test_import_plans_every_store_and_changes_nothing_in_a_dry_run():
    worker = sideload.Worker("w1", worker_raw(ctr=[ctr_line(MDS, OLD)]))
    session = FakeSession(worker.raw, dry=True)
    rows = sideload.import_host(
        session, worker, [wanted("ml-data-server"), wanted("mock-data-provider")]
    )
    assert [(r.step, r.status) for r in rows] == [
        ("ml-data-server", Status.CHANGED),
        ("mock-data-provider", Status.CHANGED),
    ]
    assert "into containerd oakestra and Docker" in rows[0].detail
    assert f"replaced {OLD[7:19]} (containerd oakestra)" in rows[0].detail
    assert "nothing replaced" in rows[1].detail
    assert session.changes == [] and len(session.plan) == 3


def test_import_runs_quoted_commands_then_verifies():
    worker = sideload.Worker("w2", worker_raw(has_docker=False))
    after = worker_raw(has_docker=False, ctr=[ctr_line(MDP, INDEX, side_loaded())])
    session = FakeSession(worker.raw, after=after, label="w2")
    rows = sideload.import_host(session, worker, [wanted("mock-data-provider")])
    assert [(r.step, r.status) for r in rows] == [("mock-data-provider", Status.CHANGED)]
    ((summary, command),) = session.changes
    source = f"{REGISTRY}/flops-dev/mock-data-provider@{INDEX}"
    assert command == C.ctr_sideload(source, MDP, "linux/amd64", side_loaded())
    assert "--plain-http" in command and f"images tag --force {source} {MDP}" in command


def test_an_import_that_does_not_verify_fails():
    worker = sideload.Worker("w2", worker_raw(has_docker=False))
    session = FakeSession(worker.raw, after=worker.raw, label="w2")
    from flops_tasks.ssh import RemoteFailure

    with pytest.raises(RemoteFailure, match="is not dev-1234567890abcdef in containerd"):
        sideload.import_host(session, worker, [wanted("mock-data-provider")])


def test_an_image_already_there_is_not_imported_again():
    worker = sideload.Worker(
        "w1",
        worker_raw(
            ctr=[ctr_line(MDS, INDEX, side_loaded())],
            docker={MDS: ("sha256:" + "c" * 64, {C.DEV_SOURCE_LABEL: "1234567890abcdef"})},
        ),
    )
    session = FakeSession(worker.raw)
    rows = sideload.import_host(session, worker, [wanted("ml-data-server")])
    assert [(r.status, r.detail) for r in rows] == [
        (
            Status.OK,
            f"{MDS} is already dev-1234567890abcdef (containerd oakestra, Docker): nothing "
            "imported",
        )
    ]
    assert session.changes == [] and session.gathers == 0


def test_a_public_pull_over_a_side_loaded_image_is_not_mistaken_for_it():
    # a pull of the public image keeps the record's labels but changes its target
    held = sideload.parse_ctr(ctr_line(MDP, OLD, side_loaded(digest=INDEX)))[MDP]
    assert not held.side_loaded
    worker = sideload.Worker("w2", worker_raw(ctr=[ctr_line(MDP, OLD, side_loaded())]))
    assert sideload.doctor_rows("w2", worker.raw) == []


def test_the_running_sidecar_gets_a_warning_with_the_fix():
    sidecar = f"{MDS} sha256:{'d' * 64}"
    worker = sideload.Worker("w1", worker_raw(sidecar=sidecar))
    session = FakeSession(worker.raw, dry=True)
    rows = sideload.import_host(session, worker, [wanted("ml-data-server")])
    assert [(r.step, r.status) for r in rows] == [
        ("ml-data-server", Status.CHANGED),
        ("sidecar", Status.WARNING),
    ]
    assert "docker rm -f ml_data_server" in rows[1].detail


def test_restore_removes_only_side_loaded_images_and_verifies():
    before = worker_raw(
        ctr=[ctr_line(MDS, INDEX, side_loaded()), ctr_line(MDP, OLD)],
        docker={MDS: ("sha256:" + "c" * 64, {C.DEV_SOURCE_LABEL: "1234567890abcdef"})},
    )
    worker = sideload.Worker("w1", before)
    dry = FakeSession(before, dry=True)
    planned = sideload.restore_host(dry, worker, list(sideload.ALL))
    session = FakeSession(before, after=worker_raw(ctr=[ctr_line(MDP, OLD)]))
    rows = sideload.restore_host(session, worker, list(sideload.ALL))
    assert [(r.step, r.status) for r in rows] == [(r.step, r.status) for r in planned]
    assert {r.step: r.status for r in rows} == {
        "image-builder": Status.OK,
        "project-observer": Status.OK,
        "tracking-server": Status.OK,
        "mock-data-provider": Status.OK,  # the public image: kept
        "ml-data-server": Status.CHANGED,
    }
    assert [cmd for _, cmd in session.changes] == [
        C.ctr_unload([MDS]),
        C.docker_unload([MDS]),
    ]


def test_doctor_warns_per_side_loaded_component_naming_its_source():
    raw = worker_raw(
        ctr=[ctr_line(MDS, INDEX, side_loaded()), ctr_line(MDP, OLD)],
        docker={MDS: ("sha256:" + "c" * 64, {C.DEV_SOURCE_LABEL: "1234567890abcdef"})},
    )
    rows = sideload.doctor_rows("w1", raw)
    assert [(r.host, r.step, r.status) for r in rows] == [("w1", "side-loaded", Status.WARNING)]
    assert rows[0].detail.startswith("ml-data-server: ")
    assert "source 1234567890abcdef" in rows[0].detail
    assert "containerd oakestra and Docker" in rows[0].detail
    assert "inv dev-images --restore --host w1" in rows[0].detail


# -- a whole run: refused before anything changes -----------------------------------------
class Tripwire:
    """Everything that builds, pushes or imports: a refused run must call none of it."""

    def __init__(self, monkeypatch) -> None:
        self.called: list[str] = []
        for name in ("build", "build_and_push", "offline_inputs"):
            monkeypatch.setattr(D, name, self._trip(name))
        monkeypatch.setattr(sideload, "import_host", self._trip("import_host"))
        monkeypatch.setattr(oci, "push_image", self._trip("push_image"))

    def _trip(self, name):
        def tripped(*args, **kwargs):
            self.called.append(name)
            raise AssertionError(f"{name} was called")

        return tripped


@pytest.fixture
def run_with(monkeypatch, ctx_factory, checkout, tmp_path):
    """``devimages.run`` against recorded workers (no SSH) and a given local builder."""

    def go(workers: dict[str, dict], offered=("linux/amd64", "linux/arm64"), registry=REGISTRY):
        inventory = {
            name: {"host": f"192.0.2.{i + 10}", "roles": ["builder"]}
            for i, name in enumerate(workers)
        }
        s = settings(
            ctx_factory(
                {
                    "inventory": inventory,
                    "addon": {"build": "offline"},
                    "stack": {"compose_file": str(tmp_path / "compose" / "flops.compose.yml")},
                }
            )
        )

        def read_workers(s, config, targets, report, observer):
            return {t.label: sideload.Worker(t.label, workers[t.label]) for t in targets}

        monkeypatch.setattr(D, "_read_workers", read_workers)
        monkeypatch.setattr(D, "builder_platforms", lambda: list(offered))
        trip = Tripwire(monkeypatch)
        with pytest.raises(FlopsError) as err:
            D.run(
                s,
                None,
                registry,
                addon=str(checkout),
                component="ml-data-server,mock-data-provider",
            )
        assert trip.called == []
        assert not D.state_path(s).exists()
        return err.value.message

    return go


def test_a_run_with_a_worker_without_containerd_builds_and_imports_nothing(run_with):
    msg = run_with({"w1": worker_raw(), "w2": worker_raw(containerd=False, has_docker=False)})
    assert msg.startswith("w2 has no containerd") and "nothing was built or imported" in msg


def test_a_run_whose_builder_lacks_a_workers_platform_builds_nothing(run_with):
    msg = run_with(
        {"w1": worker_raw(), "pi": worker_raw(machine="aarch64", has_docker=False)},
        offered=("linux/amd64",),
    )
    assert "cannot build linux/arm64" in msg and "nothing was built" in msg


def test_a_run_against_a_registry_that_refuses_pushes_builds_nothing(run_with, registry):
    registry.state.read_only = True
    msg = run_with({"w1": worker_raw(trusted=(registry.address,))}, registry=registry.address)
    assert "refused a push to flops-dev/ml-data-server" in msg
    assert not registry.state.blobs and not registry.state.manifests


def test_no_change_since_the_last_run_builds_pushes_and_imports_nothing(
    monkeypatch, ctx_factory, checkout, tmp_path
):
    s = settings(
        ctx_factory(
            {
                "inventory": {"w1": {"host": "192.0.2.10", "roles": ["builder"]}},
                "addon": {"build": "offline"},
                "stack": {"compose_file": str(tmp_path / "compose" / "flops.compose.yml")},
            }
        )
    )
    mds = D.COMPONENTS["ml-data-server"]
    D.record(
        D.state_path(s),
        REGISTRY,
        checkout.resolve(),
        {mds.name: {"source": D.source_hash(mds, checkout.resolve(), "offline")}},
    )
    trip = Tripwire(monkeypatch)
    monkeypatch.setattr(D, "_read_workers", trip._trip("_read_workers"))
    report = D.run(s, None, REGISTRY, addon=str(checkout))
    assert trip.called == []
    assert [(o.host, o.step, o.status) for o in report.outcomes] == [
        ("local", "changes", Status.OK)
    ]
    assert "nothing built, pushed or imported" in report.outcomes[0].detail
    assert "unchanged since the last run: ml-data-server" in report.notes


def test_targets_default_to_every_inventory_host(ctx_factory):
    s = settings(
        ctx_factory(
            {
                "inventory": {
                    "w1": {"host": "192.0.2.10", "roles": ["builder", "learner"]},
                    "w2": {"host": "192.0.2.11", "roles": ["builder"]},
                }
            }
        )
    )
    assert [t.label for t in D._targets(s, None)] == ["w1", "w2"]
    assert [t.label for t in D._targets(s, "w2")] == ["w2"]
    assert isinstance(D._targets(s, "w2")[0], Target)


def test_doctor_shows_the_warning_among_a_prepared_hosts_rows():
    from flops_tasks import ops

    from .fake_worker import REGISTRY as PREPARED_FOR
    from .fake_worker import recorded

    raw = worker_raw(ctr=[ctr_line(MDP, INDEX, side_loaded())])
    ctx = ops.PrepContext(
        registry=PREPARED_FOR, learner_image=f"{PREPARED_FOR}/flops/ml-data-server:offline"
    )
    session = FakeSession(recorded("prepared-docker-both", dev_ctr=raw["dev_ctr"]))
    rows = ops.doctor_host(session, {"builder", "learner"}, ctx)
    warned = [o for o in rows if o.step == "side-loaded"]
    assert [(o.status, o.detail.split(":")[0]) for o in warned] == [
        (Status.WARNING, "mock-data-provider")
    ]
    assert not any(o.bad for o in rows)  # a warning never fails doctor
    # the same host without side-loaded images: no such row
    plain = ops.doctor_host(FakeSession(recorded("prepared-docker-both")), {"builder"}, ctx)
    assert not [o for o in plain if o.step == "side-loaded"]


# -- the offline recipes ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ml-data-server", "mock-data-provider"])
def test_every_copy_in_an_offline_recipe_finds_its_source(upstream, tmp_path, name):
    from flops_tasks.build_context import stage

    component = D.COMPONENTS[name]
    wheel = tmp_path / "x-1-py3-none-any.whl"
    wheel.write_text("w")
    extra = {"requirements.txt": component.requirements, "wheels/amd64/x.whl": wheel}
    dest = tmp_path / "ctx"
    stage(component.recipe, upstream, dest, extra=extra)
    text = (dest / "Dockerfile").read_text().replace("${TARGETARCH}", "amd64")
    sources = [
        line.split()[1]
        for line in text.splitlines()
        if line.startswith("COPY ") and not line.startswith("COPY --from=")
    ]
    assert sources and all((dest / src).exists() for src in sources), sources
    # nothing runs on the target platform: the last stage has no RUN
    last = text.rsplit("\nFROM ", 1)[1]
    assert "\nRUN " not in last
    assert (dest / "poetry").read_text() == (D.RECIPES / "ml-data-server" / "poetry").read_text()


def test_the_build_runs_with_the_dev_labels_and_the_platform():
    argv = D.build_argv(
        D.COMPONENTS["ml-data-server"],
        Path("/ctx"),
        Path("/ctx/Dockerfile"),
        "linux/arm64",
        "flops-dev/ml-data-server:abc-arm64",
        "abc",
        {"BASE_IMAGE": "b"},
        no_cache=True,
    )
    assert argv[:3] == ["docker", "buildx", "build"]
    assert ["--platform", "linux/arm64"] == argv[
        argv.index("--platform") : argv.index("--platform") + 2
    ]
    assert f"{C.DEV_SOURCE_LABEL}=abc" in argv and "--no-cache" in argv
    assert argv[-1] == "/ctx"


# -- the manager from the developer's checkout (reset --service flops_manager --build) --------
class FakeProject:
    def __init__(self, s, build: dict) -> None:
        self.s = s
        self.build = build

    def compose_config(self) -> dict:
        return {"services": {"flops_manager": {"build": self.build}}}


def test_a_staged_manager_context_is_staged_again_from_flops_addon_path(
    checkout, tmp_path, ctx_factory, monkeypatch
):
    from flops_tasks import build_context as bc
    from flops_tasks import wheelhouse
    from flops_tasks.addon import ensure_checkout
    from flops_tasks.stack.preflight import builds_from_addon

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "flask-3.0.3-py3-none-any.whl").write_text("w")
    monkeypatch.setattr(wheelhouse, "ensure", lambda *a, **k: (wheels, False))
    testbed_ctx = tmp_path / "testbed-build" / "flops_manager"
    bc.stage(bc.MANAGER, checkout, testbed_ctx, wheels)  # as testbed.up stages it
    s = settings(ctx_factory({"addon": {"path": str(checkout)}}))
    offline = FakeProject(s, {"context": str(testbed_ctx), "args": {"PIP_SOURCE": "wheelhouse"}})
    assert builds_from_addon(offline) == (testbed_ctx, True)
    assert builds_from_addon(FakeProject(s, {"context": str(tmp_path / "elsewhere")})) is None
    # the developer's change, staged into that context, wheels included
    init = checkout / "flops_manager_package" / "flops_manager" / "__init__.py"
    init.write_text(init.read_text() + "\nDEV_MARKER = 'x'\n")
    from flops_tasks.stack.project import Project

    assert ensure_checkout(Project(s)).status is Status.OK  # an unpacked tree, not a clone
    row = bc.ensure_manager_context(Project(s), dest=testbed_ctx, offline=True)
    assert row.status is Status.CHANGED and "with the wheelhouse" in row.detail
    assert "DEV_MARKER" in (testbed_ctx / "flops_manager" / "__init__.py").read_text()
    assert (testbed_ctx / "wheels" / "flask-3.0.3-py3-none-any.whl").is_file()
    again = bc.ensure_manager_context(Project(s), dest=testbed_ctx, offline=True)
    assert again.status is Status.OK


# -- reading the local engine's image (docker save) ------------------------------------------
FAKE_DOCKER = """#!/bin/sh
# a stand-in for the docker CLI: `image inspect` and `save` of one prepared image
case "$1 $2" in
  "image inspect") cat "$FAKE_DIR/diff_ids.json" ;;
  "save "*) cat "$FAKE_DIR/save.tar" ;;
  *) echo "unexpected: $*" >&2; exit 3 ;;
esac
"""


def fake_save(tmp_path: Path, layers: list[bytes], oci_layout: bool) -> None:
    import io

    diff_ids = [oci.sha256_bytes(b) for b in layers]
    config = oci.canonical(
        {"architecture": "arm64", "variant": "v8", "os": "linux", "rootfs": {"diff_ids": diff_ids}}
    )
    members: dict[str, bytes] = {}
    if oci_layout:
        names = [f"blobs/sha256/{d[7:]}" for d in diff_ids]
        cfg_name = f"blobs/sha256/{oci.sha256_bytes(config)[7:]}"
    else:
        names = [f"{i:064x}/layer.tar" for i in range(len(layers))]
        cfg_name = f"{oci.sha256_bytes(config)[7:]}.json"
    members.update(dict(zip(names, layers, strict=True)))
    members[cfg_name] = config
    members["manifest.json"] = json.dumps(
        [{"Config": cfg_name, "RepoTags": ["x:1"], "Layers": names}]
    ).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (tmp_path / "save.tar").write_bytes(buf.getvalue())
    (tmp_path / "diff_ids.json").write_text(json.dumps(diff_ids))


@pytest.mark.parametrize("oci_layout", [False, True], ids=["docker-20.10", "docker-25-oci"])
def test_docker_save_is_read_into_compressed_layers_once(tmp_path, monkeypatch, oci_layout):
    import gzip

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_DIR", str(tmp_path))
    big, small = b"B" * (3 << 20), b"tiny layer"  # a small layer is a layer too
    fake_save(tmp_path, [big, small], oci_layout)
    cache = oci.BlobCache(tmp_path / "cache")
    said: list[str] = []
    image = oci.saved_image("x:1", cache, said.append)
    assert image.platform_name == "linux/arm64/v8"
    assert [gzip.decompress(b.path.read_bytes()) for b in image.layers] == [big, small]
    assert len([s for s in said if s.startswith("compressing")]) == 2
    said.clear()
    again = oci.saved_image("x:1", oci.BlobCache(tmp_path / "cache"), said.append)
    assert again == image and not said  # known members: not read, not compressed again


def test_only_the_platforms_the_registry_lacks_are_built_and_the_index_keeps_the_rest(
    registry, checkout, tmp_path, monkeypatch, ctx_factory
):
    built: list[tuple[str, bool, str]] = []

    def fake_build(component, context, dockerfile, platform, tag, source, args, log, progress,
                   no_cache=False):  # fmt: skip
        assert (context / "Dockerfile").is_file() and (context / "ml_data_server").is_dir()
        built.append((platform, no_cache, args["BASE_IMAGE"]))

    mds = D.COMPONENTS["ml-data-server"]
    monkeypatch.setattr(D, "engine_arch", lambda: "amd64")
    monkeypatch.setattr(D, "offline_inputs", lambda job, c, p: {"requirements.txt": c.requirements})
    monkeypatch.setattr(D, "build", fake_build)
    monkeypatch.setattr(D, "_drop_older", lambda component, source: None)
    monkeypatch.setattr(
        oci, "saved_image", lambda tag, cache, progress: saved(tmp_path, tag.encode(), tag[-5:])
    )
    s = settings(
        ctx_factory({"stack": {"compose_file": str(tmp_path / "compose" / "flops.compose.yml")}})
    )

    def job(platforms: list[str], no_cache: bool = False) -> D.Job:
        cache = oci.BlobCache(tmp_path / "cache")
        return D.Job(
            s, registry.address, checkout, "offline", [mds], platforms, False, print, cache,
            no_cache,
        )  # fmt: skip

    row, first = D.build_and_push(job(["linux/amd64"], no_cache=True), mds, "abc")
    assert row.status is Status.CHANGED and first.platforms == ["linux/amd64"]
    assert built == [("linux/amd64", True, "flops-testbed/python:bookworm-amd64")]
    built.clear()
    row, both = D.build_and_push(job(["linux/amd64", "linux/arm64"]), mds, "abc")
    assert built == [("linux/arm64", False, "flops-testbed/python:bookworm-arm64")]
    assert both.platforms == ["linux/amd64", "linux/arm64"] and both.digest != first.digest
    entries = {e.name: e.digest for e in oci.read_index(job([]).client, mds.repo, "dev-abc")[1]}
    old = {e.name: e.digest for e in oci.read_index(job([]).client, mds.repo, first.digest)[1]}
    assert entries["linux/amd64"] == old["linux/amd64"]  # kept, not built again
    built.clear()
    row, again = D.build_and_push(job(["linux/amd64"]), mds, "abc")
    assert row.status is Status.OK and built == [] and again.digest == both.digest
    assert "nothing built or pushed" in row.detail


def test_a_recorded_worker_with_side_loaded_images_reads_as_such():
    """``sideload.probes()`` as a testbed worker with Docker answered it after
    ``dev-images --component ml-data-server,mock-data-provider`` (tests/unit/facts)."""
    data = json.loads((Path(__file__).parent / "facts" / "side-loaded-docker.json").read_text())
    raw = {k: (v[0], v[1]) for k, v in data["probes"].items()}
    worker = sideload.Worker("w1", raw)
    assert worker.problem(data["registry"], docker_needed=True) is None
    held = worker.containerd_images
    assert set(held) == {MDS, MDP} and all(h.side_loaded for h in held.values())
    assert worker.docker_images[MDS].source == held[MDS].source  # the same build in both
    assert MDP not in worker.docker_images  # containerd only: not the sidecar
    rows = sideload.doctor_rows("w1", raw)
    assert [r.detail.split(":")[0] for r in rows] == ["ml-data-server", "mock-data-provider"]
    assert "in containerd oakestra and Docker" in rows[0].detail
    # what the registry holds for that source: nothing to import
    want = sideload.Wanted(
        "ml-data-server", held[MDS].source, f"{data['registry']}/flops-dev/ml-data-server",
        held[MDS].digest,
    )  # fmt: skip
    session = FakeSession(raw)
    assert [r.status for r in sideload.import_host(session, worker, [want])] == [Status.OK]
    assert session.changes == []
