"""Services left out on purpose (``flops.stack.omit``, what the testbed writes without
upstream's source): no project has them, ``up`` and ``doctor`` show each as a warning (never
a failure) with why, starting the others neither needs nor removes them."""

from __future__ import annotations

import pytest

from flops_tasks.config import settings
from flops_tasks.errors import ConfigError
from flops_tasks.outcome import Status
from flops_tasks.run import Run
from flops_tasks.stack import placement, preflight
from flops_tasks.stack.services import MANAGER, SERVICES
from flops_tasks.workflows import stack as stack_flow

from .test_stack import inspect, make  # noqa: F401 - the fixture

WHY = "upstream's source could not be had: set FLOPS_UPSTREAM_TARBALL"


def test_an_omitted_service_is_in_no_project(ctx_factory):
    s = settings(ctx_factory({"stack": {"omit": {MANAGER: WHY}}}))
    (project,) = placement.projects(s)
    assert MANAGER not in project.services and len(project.services) == len(SERVICES) - 1
    placed = settings(
        ctx_factory(
            {
                "inventory": {"w1": {"host": "10.0.0.5"}},
                "stack": {"omit": {MANAGER: WHY}, "placement": {"default": "w1"}},
            }
        )
    )
    assert all(MANAGER not in p.services for p in placement.projects(placed))


def test_up_and_doctor_warn_with_why(ctx_factory):
    run = Run(ctx_factory({"stack": {"omit": {MANAGER: WHY}}}).config)
    (row,) = stack_flow.left_out(run, "not checked")
    assert row.status is Status.WARNING and row.step == MANAGER
    assert row.detail == f"left out on purpose (flops.stack.omit), not checked: {WHY}"
    assert stack_flow.left_out(Run(ctx_factory().config), "not started") == []


@pytest.mark.parametrize(
    "omit, needle",
    [
        ({"mongo": ""}, "flops.stack.omit.mongo"),
        ({MANAGER: ["x"]}, "flops.stack.omit.flops_manager"),
        ({MANAGER: "a\nb"}, "flops.stack.omit.flops_manager"),
    ],
)
def test_a_bad_omit_is_one_line(ctx_factory, omit, needle):
    with pytest.raises(ConfigError) as err:
        settings(ctx_factory({"stack": {"omit": omit}}))
    assert needle in err.value.message and "\n" not in err.value.message


def test_preflight_and_start_leave_an_omitted_service_alone(make):  # noqa: F811
    """No image is asked for it, and its container (from before) is not removed."""
    project = make(omit={MANAGER: WHY})
    project.services = tuple(svc for svc in SERVICES if svc != MANAGER)
    project.engine.image.names.discard(f"img/{MANAGER}:1")  # not built: must not be needed
    project.engine.put(inspect(MANAGER, state="exited"))
    preflight.preflight(project)
    project.start()
    assert project.moved_away() == []
    started = [call for call in project.engine.calls if call[0] == "up"]
    assert started and MANAGER not in started[0][1]
    assert ("rm", (MANAGER,), None) not in project.engine.calls
