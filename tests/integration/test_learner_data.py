"""Learner data on fresh Docker learners: tags, --list, link safety, and the real sidecar.

Both testbed workers run Docker and are learners; the sidecar is upstream's ml_data_server.
"""

from __future__ import annotations

import json
import shlex
import struct
import subprocess
from pathlib import Path

import pytest

from .helpers import in_worker, inv, worker

pytestmark = pytest.mark.integration


MOUNT = "/var/lib/docker/volumes/ml_data_server_volume/_data"


def parquet(path: Path, **columns) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


@pytest.fixture(scope="module")
def learners(fresh):
    """Prepared learners (a no-change run when bootstrap already prepared them)."""
    res = inv("prepare-learner")
    assert res.returncode == 0, res.stdout + res.stderr
    return fresh


def empty_mount(i: int) -> None:
    in_worker(worker(i), f"rm -rf {MOUNT}/* {MOUNT}/.[!.]*")


def mount_names(i: int) -> list[str]:
    res = in_worker(worker(i), "docker exec ml_data_server ls -A /ml_data_server_volume")
    return res.stdout.split()


def test_learner_data_twice_copies_once(learners, tmp_path):
    for i in (1, 2):
        empty_mount(i)
    parquet(tmp_path / "src" / "a.parquet", x=[1, 2, 3])
    parquet(tmp_path / "src" / "b.parquet", x=[4])
    first = json.loads(
        inv("learner-data", "--tag", "mnist", "--src", str(tmp_path / "src"), "--json").stdout
    )
    assert first["hosts"]["w1"]["steps"][0]["status"] == "changed"
    assert "copied 2 files" in first["hosts"]["w1"]["steps"][0]["detail"]
    second = json.loads(
        inv("learner-data", "--tag", "mnist", "--src", str(tmp_path / "src"), "--json").stdout
    )
    assert second["changed"] is False and second["ok"] is True
    for i in (1, 2):
        assert mount_names(i) == ["mnist.a.parquet", "mnist.b.parquet"]
    (tmp_path / "c.csv").write_text("not parquet")
    res = inv("learner-data", "--tag", "mnist", "--src", str(tmp_path / "c.csv"))
    assert res.returncode == 2 and "not a parquet file" in res.stderr
    assert mount_names(1) == ["mnist.a.parquet", "mnist.b.parquet"]


def test_learner_data_list_shows_what_the_sidecar_serves_and_what_breaks_it(learners, tmp_path):
    parquet(tmp_path / "cats.parquet", y=[1])
    assert (
        inv(
            "learner-data",
            "--tag",
            "cifar",
            "--src",
            str(tmp_path / "cats.parquet"),
            "--host",
            "w2",
        ).returncode
        == 0
    )
    res = inv("learner-data", "--list", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    listing = json.loads(res.stdout)
    assert listing["hosts"]["w1"]["mount"] == MOUNT
    assert listing["hosts"]["w1"]["sidecar"] == "running"
    assert sorted(listing["hosts"]["w1"]["tags"]) == ["mnist"]
    assert sorted(listing["hosts"]["w2"]["tags"]) == ["cifar", "mnist"]
    assert [f["name"] for f in listing["hosts"]["w2"]["tags"]["cifar"]] == ["cifar.cats.parquet"]
    res = inv("learner-data", "--list", "--tag", "dogs")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip() == "unknown tag 'dogs': the learners hold the tags cifar, mnist"
    # a file the sidecar would read as Parquet and cannot: flagged, non-zero exit
    in_worker(
        worker(2),
        "docker exec ml_data_server sh -c 'echo hello > /ml_data_server_volume/cifar.readme.txt'",
    )
    res = inv("learner-data", "--list", "--tag", "cifar", "--json")
    assert res.returncode == 1
    problems = json.loads(res.stdout)["hosts"]["w2"]["problems"]
    assert [(p["name"], p["breaks"]) for p in problems] == [("cifar.readme.txt", "cifar")]
    in_worker(worker(2), "rm -f " + MOUNT + "/cifar.readme.txt")


def test_learner_data_never_writes_through_a_link_planted_by_the_sidecar(learners, tmp_path):
    """The sidecar (root in its container) can write to the mount; learner-data runs as root
    on the host. A link it plants must never make learner-data write or chmod a host file."""
    w = worker(1)
    in_worker(w, "printf secret > /etc/flops-victim && chmod 600 /etc/flops-victim")
    # the old predictable temp name, and a link at the destination name itself
    in_worker(
        w,
        "docker exec ml_data_server sh -c 'cd /ml_data_server_volume && "
        "ln -sf /etc/flops-victim mnist.planted.parquet.flops-tmp && "
        "ln -sf /etc/flops-victim mnist.linked.parquet'",
    )
    parquet(tmp_path / "planted.parquet", x=[1])
    res = inv(
        "learner-data", "--tag", "mnist", "--src", str(tmp_path / "planted.parquet"), "--host", "w1"
    )
    parquet(tmp_path / "linked.parquet", x=[2])
    refused = inv(
        "learner-data",
        "--tag",
        "mnist",
        "--src",
        str(tmp_path / "linked.parquet"),
        "--host",
        "w1",
        "--json",
    )
    victim = in_worker(
        w,
        "stat -c '%a %U' /etc/flops-victim; "
        '[ "$(cat /etc/flops-victim)" = secret ] && echo intact || '
        "echo overwritten",
    ).stdout.split()
    assert victim == ["600", "root", "intact"], f"written through the link: {victim}"
    assert res.returncode == 0, res.stdout + res.stderr
    assert refused.returncode == 1
    step = json.loads(refused.stdout)["hosts"]["w1"]["steps"][0]
    assert step["status"] == "failed" and "symbolic link" in step["detail"]
    assert (
        in_worker(
            w,
            f"test -f {MOUNT}/mnist.planted.parquet && ! test -L {MOUNT}/mnist.planted.parquet",
            check=False,
        ).returncode
        == 0
    )
    in_worker(
        w, f"rm -f /etc/flops-victim {MOUNT}/mnist.planted.parquet* {MOUNT}/mnist.linked.parquet"
    )


FLIGHT_CLIENT = """
import json, sys
import pyarrow.flight as flight
client = flight.connect("grpc://172.17.0.1:11027")  # what upstream's learners dial
out = {}
for tag in sys.argv[1:]:
    out[tag] = []
    criteria = json.dumps({"data_tags": [tag]}).encode("utf-8")
    for f in client.list_flights(criteria=criteria):
        table = client.do_get(f.endpoints[0].ticket).read_all()
        out[tag].append({"name": f.descriptor.path[0].decode("utf-8"),
                         "rows": table.to_pydict()})
print(json.dumps(out))
"""
# run the client with whatever Python of the sidecar image has pyarrow (upstream's image
# runs poetry's environment); none: fail loudly, this is not upstream's ml_data_server
WITH_PYARROW = (
    'for py in python3 python; do if command -v "$py" >/dev/null 2>&1 && '
    '"$py" -c "import pyarrow.flight" 2>/dev/null; then exec "$py" -c "$0" "$@"; fi; done; '
    "if command -v poetry >/dev/null 2>&1 && (cd /ml_data_server 2>/dev/null; "
    'poetry run python -c "import pyarrow.flight") 2>/dev/null; then cd /ml_data_server && '
    'exec poetry run python -c "$0" "$@"; fi; '
    'echo "no Python with pyarrow.flight in this image" >&2; exit 97'
)


def test_the_real_sidecar_serves_the_copied_file_to_learners_at_172_17_0_1(learners, tmp_path):
    """End to end, from inside the worker: a container on the worker's Docker bridge, like a
    learner, dials grpc://172.17.0.1:11027, lists the tag's flights and streams the file."""
    empty_mount(1)
    parquet(tmp_path / "mnist" / "train.parquet", x=[1, 2, 3], label=["a", "b", "c"])
    parquet(tmp_path / "cifar" / "cats.parquet", x=[9])
    for tag in ("mnist", "cifar"):
        res = inv("learner-data", "--tag", tag, "--src", str(tmp_path / tag), "--host", "w1")
        assert res.returncode == 0, res.stdout + res.stderr
    w = worker(1)
    docker0 = in_worker(w, "ip -4 -o addr show docker0 | awk '{print $4}'").stdout.strip()
    assert docker0.startswith("172.17.0.1/"), f"learners dial 172.17.0.1, docker0 is {docker0}"
    image = in_worker(
        w, "docker container inspect -f '{{.Config.Image}}' ml_data_server"
    ).stdout.strip()
    script = " ".join(
        shlex.quote(a)
        for a in [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "sh",
            image,
            "-c",
            WITH_PYARROW,
            FLIGHT_CLIENT,
            "mnist",
            "cifar",
        ]
    )
    res = in_worker(w, script, check=False)
    assert res.returncode != 97, (
        f"the sidecar image {image} has no pyarrow: it is not upstream's ml_data_server (the "
        f"testbed's stand-in speaks plain HTTP), so nothing was served over Arrow Flight: "
        f"{res.stderr.strip()}"
    )
    assert res.returncode == 0, f"Flight client failed in {w}: {res.stdout}{res.stderr}"
    served = json.loads(res.stdout.strip().splitlines()[-1])
    assert served["mnist"] == [
        {"name": "mnist.train.parquet", "rows": {"x": [1, 2, 3], "label": ["a", "b", "c"]}}
    ]
    assert served["cifar"] == [{"name": "cifar.cats.parquet", "rows": {"x": [9]}}]


FLIGHT_TAGS = """
import json, sys
import pyarrow.flight as flight
client = flight.connect("grpc://172.17.0.1:11027")  # what upstream's learners dial
out = {}
for tag in sys.argv[1:]:
    criteria = json.dumps({"data_tags": [tag]}).encode("utf-8")
    try:
        out[tag] = sorted(f.descriptor.path[0].decode("utf-8")
                          for f in client.list_flights(criteria=criteria))
    except Exception as exc:
        out[tag] = {"error": type(exc).__name__}
print(json.dumps(out))
"""


def real_sidecar_lists(i: int, *tags: str) -> dict:
    """What the real sidecar on worker ``i`` answers a learner's list_flights, per tag."""
    w = worker(i)
    image = in_worker(
        w, "docker container inspect -f '{{.Config.Image}}' ml_data_server"
    ).stdout.strip()
    script = shlex.join(
        ["docker", "run", "--rm", "--entrypoint", "sh", image, "-c", WITH_PYARROW, FLIGHT_TAGS]
        + list(tags)
    )
    res = in_worker(w, script, check=False)
    assert res.returncode == 0, f"Flight client failed in {w}: {res.stdout}{res.stderr}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def put_in_mount(i: int, local: Path, name: str) -> None:
    subprocess.run(
        ["docker", "cp", str(local), f"{worker(i)}:{MOUNT}/{name}"], check=True, timeout=60
    )


def corrupt_footer(path: Path) -> Path:
    raw = path.read_bytes()
    (length,) = struct.unpack("<I", raw[-8:-4])
    path.write_bytes(raw[: -(length + 8)] + b"\xff" * length + raw[-8:])
    return path


def test_list_says_served_only_where_the_real_sidecar_serves(learners, tmp_path):
    """Footers read with pyarrow in the sidecar (and here while it is stopped): a corrupt
    footer breaks its tag, a link is served, a tag of other schemas is flagged; each
    prediction checked against the real sidecar's list_flights."""
    empty_mount(1)
    put_in_mount(1, parquet(tmp_path / "a.parquet", x=[1, 2]), "mnist.a.parquet")
    put_in_mount(1, parquet(tmp_path / "b.parquet", x=[3]), "mnist.b.parquet")
    put_in_mount(1, corrupt_footer(parquet(tmp_path / "c.parquet", x=[4])), "bad.c.parquet")
    put_in_mount(1, parquet(tmp_path / "d.parquet", x=["four"]), "mixed.a.parquet")
    put_in_mount(1, parquet(tmp_path / "e.parquet", x=[5]), "mixed.b.parquet")
    put_in_mount(1, parquet(tmp_path / "f.parquet", y=[6]), "-dash.f.parquet")
    in_worker(worker(1), f"cd {MOUNT} && ln -s mnist.a.parquet linked.a.parquet")
    seen = {}
    for reader in ("sidecar", "controller"):
        if reader == "controller":
            in_worker(worker(1), "docker stop ml_data_server >/dev/null")
        res = inv("learner-data", "--list", "--host", "w1", "--json")
        assert res.returncode == 1, res.stdout + res.stderr
        w1 = json.loads(res.stdout)["hosts"]["w1"]
        assert w1["footers"]["read_by"] == reader
        assert w1["footers"]["pyarrow"].startswith("15.")
        problems = {p["name"]: p for p in w1["problems"]}
        assert problems["bad.c.parquet"]["breaks"] == "bad"
        assert "pyarrow cannot read its footer" in problems["bad.c.parquet"]["problem"]
        assert "linked.a.parquet" not in problems and "-dash.f.parquet" not in problems
        assert list(w1["merge_problems"]) == ["mixed"]
        seen[reader] = {t: [f["name"] for f in files] for t, files in w1["tags"].items()}
    in_worker(worker(1), "docker start ml_data_server >/dev/null")
    assert seen["sidecar"] == seen["controller"]
    assert seen["sidecar"]["linked"] == ["linked.a.parquet"]
    assert seen["sidecar"]["-dash"] == ["-dash.f.parquet"]
    res = inv("learner-data", "--list", "--host", "w1", "--json")  # the sidecar runs again
    assert json.loads(res.stdout)["hosts"]["w1"]["footers"]["read_by"] == "sidecar"
    real = real_sidecar_lists(1, "mnist", "bad", "linked", "-dash", "mixed")
    assert real["mnist"] == ["mnist.a.parquet", "mnist.b.parquet"]
    assert "error" in real["bad"]  # the whole listing of the tag fails
    assert real["linked"] == ["linked.a.parquet"] and real["-dash"] == ["-dash.f.parquet"]
    assert real["mixed"] == ["mixed.a.parquet", "mixed.b.parquet"]  # served; the merge fails
    empty_mount(1)


def test_the_copy_refuses_a_broken_footer_before_anything_is_copied(learners, tmp_path):
    empty_mount(1)
    parquet(tmp_path / "src" / "good.parquet", x=[1])
    corrupt_footer(parquet(tmp_path / "src" / "bad.parquet", x=[2]))
    res = inv("learner-data", "--tag", "mnist", "--src", str(tmp_path / "src"), "--host", "w1")
    assert res.returncode == 2 and res.stdout == ""
    [line] = res.stderr.strip().splitlines()
    assert "bad.parquet: its Parquet footer does not parse (pyarrow 15." in line
    assert line.endswith("nothing copied")
    assert mount_names(1) == []


def test_a_data_dir_that_leads_into_root_is_refused_and_nothing_changes(learners):
    """As configured, /tmp/flops-link/data looks like a folder of its own; on the worker the
    link leads to /root/data. Before, the sidecar was replaced with /root mounted."""
    w = worker(2)
    in_worker(w, "ln -sfn /root /tmp/flops-link")
    sidecar = "docker container inspect -f '{{.Id}} {{json .Mounts}}' ml_data_server"
    before = in_worker(w, sidecar).stdout
    res = inv("prepare-learner", "--host", "w2", "--data-dir", "/tmp/flops-link/data", "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    steps = {s["step"]: s for s in json.loads(res.stdout)["hosts"]["w2"]["steps"]}
    assert steps["data"]["status"] == "failed"
    assert "it leads to /root/data on this host (a symbolic link)" in steps["data"]["detail"]
    assert in_worker(w, "test -e /root/data", check=False).returncode != 0
    assert in_worker(w, sidecar).stdout == before
    in_worker(w, "rm -f /tmp/flops-link")
