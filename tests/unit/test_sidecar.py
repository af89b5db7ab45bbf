"""The learner sidecar is published on one address only: the worker's docker0 by default."""

from __future__ import annotations

import json
import shlex

import pytest

from flops_tasks import commands as C
from flops_tasks.facts import WorkerFacts
from flops_tasks.ops import PrepContext, act_sidecar, check_sidecar, sidecar_problems
from flops_tasks.ssh import RemoteFailure, Result

IMAGE = "registry:5073/ml-data-server:1"


def facts(
    bindings: list[dict[str, str]] | None, docker0: str = "172.17.0.1", tcp: bool = True
) -> WorkerFacts:
    raw: dict[str, tuple[int, str]] = {
        "docker0": (0, docker0 + "\n"),
        "sidecar_tcp": (0 if tcp else 1, docker0),
    }
    if bindings is not None:
        info = {
            "State": {"Running": True, "Status": "running"},
            "Config": {"Image": IMAGE},
            "HostConfig": {
                "RestartPolicy": {"Name": "unless-stopped"},
                "PortBindings": {"11027/tcp": bindings},
            },
            "Mounts": [{"Name": C.DATA_VOLUME, "Destination": C.DATA_MOUNT}],
        }
        raw["sidecar"] = (0, json.dumps(info))
    return WorkerFacts(raw)


def ctx(publish: str = "") -> PrepContext:
    return PrepContext(registry="10.0.0.1:5073", learner_image=IMAGE, publish_address=publish)


@pytest.mark.parametrize(
    "bindings, publish, problem",
    [
        ([{"HostIp": "172.17.0.1", "HostPort": "11027"}], "", None),
        ([{"HostIp": "", "HostPort": "11027"}], "", "published on 0.0.0.0, not only on 172.17.0.1"),
        ([{"HostIp": "0.0.0.0", "HostPort": "11027"}], "", "published on 0.0.0.0"),
        (
            [
                {"HostIp": "172.17.0.1", "HostPort": "11027"},
                {"HostIp": "0.0.0.0", "HostPort": "11027"},
            ],
            "",
            "published on 0.0.0.0, 172.17.0.1",
        ),
        ([{"HostIp": "172.17.0.1", "HostPort": "11028"}], "", "not published"),
        ([], "", "not published"),
        ([{"HostIp": "", "HostPort": "11027"}], "0.0.0.0", None),
        ([{"HostIp": "10.0.0.5", "HostPort": "11027"}], "10.0.0.5", None),
        ([{"HostIp": "172.17.0.1", "HostPort": "11027"}], "10.0.0.5", "not only on 10.0.0.5"),
    ],
)
def test_the_sidecar_check_verifies_the_binding_address(bindings, publish, problem):
    found = sidecar_problems(facts(bindings), ctx(publish))
    if problem is None:
        assert found == []
        assert check_sidecar(facts(bindings), ctx(publish))[0]
    else:
        assert any(problem in p for p in found), found
        assert not check_sidecar(facts(bindings), ctx(publish))[0]


class Recorder:
    """A HostSession stand-in that records the changes it is asked to make."""

    dry = False

    def __init__(self) -> None:
        self.changes: list[str] = []

    def change(self, command: str, summary: str, timeout: float | None = None) -> Result:
        self.changes.append(command)
        return Result(command=command, exited=0)


@pytest.mark.parametrize(
    "publish, docker0, spec",
    [
        ("", "172.17.0.1", "172.17.0.1:11027:11027"),
        ("", "10.200.0.1", "10.200.0.1:11027:11027"),
        ("0.0.0.0", "172.17.0.1", "0.0.0.0:11027:11027"),
        ("fd00::5", "172.17.0.1", "[fd00::5]:11027:11027"),
    ],
)
def test_the_sidecar_is_started_on_the_publish_address_only(publish, docker0, spec):
    session = Recorder()
    act_sidecar(session, facts(None, docker0=docker0), ctx(publish))  # type: ignore[arg-type]
    run = next(c for c in session.changes[0].split(" && ") if "docker run" in c)
    argv = shlex.split(run.strip("{} ;"))
    assert argv[argv.index("-p") + 1] == spec


def test_without_docker0_and_without_an_address_the_sidecar_is_not_started():
    session = Recorder()
    with pytest.raises(RemoteFailure, match="flops.learner.publish_address"):
        act_sidecar(session, facts(None, docker0=""), ctx())  # type: ignore[arg-type]
    assert session.changes == []
