"""Every HTTP call of the stack and the System Manager client: no proxy, no redirects, bounded
in size and in total time; a hostile answer is one line, never a traceback.

The peers are small local servers (tests/unit/hostile_http.py). ``http_proxy`` points at a
recording proxy in every test: nothing may reach it.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from flops_tasks import httpclient
from flops_tasks.errors import FlopsError
from flops_tasks.oakestra import SystemManager
from flops_tasks.stack import flopsdb, registry

from .hostile_http import Server, drip, flood, reply

SECRET = "Pr0xy-s33s-n0thing-4e1d"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJBZG1pbiJ9.c2lnbmF0dXJl"
APP = "6650a1b2c3d4e5f601020301"


@pytest.fixture
def proxy(monkeypatch):
    """A proxy every variable names; a request that reaches it is a defect."""
    server = Server(reply(502, b"{}"))
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.setenv(name, server.url)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    yield server
    server.stop()


@pytest.fixture
def no_proxy(monkeypatch):
    """No proxy variable: the bounds tests see the client's own behaviour."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def servers():
    started: list[Server] = []

    def start(answer) -> Server:
        started.append(Server(answer))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def routes(table: dict[tuple[str, str], object]):
    """An answer per (method, path); anything else 404."""

    def answer(h) -> None:
        found = table.get((h.command, h.path))
        (found or reply(404, b'{"code": 404, "status": "Not Found"}'))(h)  # type: ignore[operator]

    return answer


def login_ok(token: str = TOKEN):
    return reply(200, json.dumps({"token": token, "refresh_token": "r"}).encode())


def listing(docs) -> object:
    return reply(200, json.dumps(json.dumps(docs)).encode())


def client(server: Server, timeout: float = 5) -> SystemManager:
    return SystemManager("127.0.0.1", server.port, "Admin", SECRET, "test", timeout=timeout)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    assert SECRET not in text and TOKEN not in text
    return text


# -- proxies and redirects ---------------------------------------------------------------------
def test_the_system_manager_login_never_goes_through_a_proxy(proxy, servers):
    sm = servers(
        routes(
            {
                ("POST", "/api/auth/login"): login_ok(),
                ("GET", "/api/applications/"): listing([]),
                ("GET", "/api/services/"): listing([]),
            }
        )
    )
    assert client(sm).applications() == []
    assert proxy.seen == []
    (login, *_) = sm.seen
    assert json.loads(login[3])["password"] == SECRET  # it went to the System Manager itself


def test_a_redirect_is_not_followed_and_the_token_goes_nowhere_else(proxy, servers):
    elsewhere = servers(reply(200, b"[]"))
    sm = servers(
        routes(
            {
                ("POST", "/api/auth/login"): login_ok(),
                ("GET", "/api/applications/"): reply(
                    308, b"", {"Location": elsewhere.url + "/api/applications/"}
                ),
            }
        )
    )
    with pytest.raises(FlopsError) as err:
        client(sm).applications()
    text = one_line(err.value)
    assert "redirect (HTTP 308), which is not followed" in text
    assert elsewhere.seen == [] and proxy.seen == []


def test_redbs_delete_goes_to_the_manager_itself_and_follows_no_redirect(proxy, servers):
    manager = servers(reply(200, b'{"message": "ok"}'))
    project = SimpleNamespace(
        owner=lambda *_: None,
        url=lambda _port: manager.url,
        progress=lambda _msg: None,
    )
    assert flopsdb._via_manager(project) == "through the FLOps manager API"
    assert proxy.seen == [] and [r[:2] for r in manager.seen] == [
        ("DELETE", "/api/flops/database/")
    ]

    elsewhere = servers(reply(200, b"{}"))
    moved = servers(reply(308, b"", {"Location": elsewhere.url + "/api/flops/database/"}))
    project.url = lambda _port: moved.url
    notes: list[str] = []
    project.progress = notes.append
    assert flopsdb._via_manager(project) is None  # then redb goes to Mongo directly
    assert elsewhere.seen == [] and proxy.seen == []
    assert "manager answered 308" in notes[-1]


def test_the_registry_catalog_is_read_from_the_registry_itself(proxy, servers):
    reg = servers(reply(200, b'{"repositories": ["flops/a"]}'))
    project = SimpleNamespace(url=lambda _port: reg.url, s=SimpleNamespace(registry_port=5073))
    assert registry.catalog(project) == ["flops/a"]
    assert proxy.seen == [] and [r[:2] for r in reg.seen] == [("GET", "/v2/_catalog")]


# -- bounds ----------------------------------------------------------------------------------
def test_a_dripping_system_manager_cannot_hold_a_call_past_its_timeout(no_proxy, servers):
    sm = servers(drip(seconds=5))
    started = time.monotonic()
    with pytest.raises(FlopsError) as err:
        client(sm, timeout=1).applications()
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, f"a 1 s call took {elapsed:.1f} s"
    assert "no complete answer within 1 s" in one_line(err.value)


def test_an_answer_larger_than_the_limit_is_refused(no_proxy, servers):
    sm = servers(
        routes(
            {
                ("POST", "/api/auth/login"): login_ok(),
                ("GET", "/api/applications/"): flood(httpclient.LIMIT + 1),
            }
        )
    )
    with pytest.raises(FlopsError) as err:
        client(sm).applications()
    assert f"answer larger than {httpclient.LIMIT} bytes" in one_line(err.value)


def test_the_helper_itself_bounds_time_and_size(servers):
    slow = servers(drip(seconds=3))
    started = time.monotonic()
    with pytest.raises(httpclient.OutOfBounds, match="within 0.5 s"):
        httpclient.request("GET", slow.url + "/", timeout=0.5)
    assert time.monotonic() - started < 1.5
    big = servers(flood(2048))
    with pytest.raises(httpclient.OutOfBounds, match="larger than 1024 bytes"):
        httpclient.request("GET", big.url + "/", limit=1024)


# -- hostile answers -------------------------------------------------------------------------
JOB = {
    "_id": {"$oid": "6650a1b2c3d4e5f6010203a1"},
    "microserviceID": "6650a1b2c3d4e5f6010203a1",
    "microservice_name": "trackinge3afed0047b0",
    "microservice_namespace": "tracking",
    "applicationID": APP,
    "image": "x",
    "instance_list": [{"instance_number": 0}],
}
APP_DOC = {
    "_id": {"$oid": APP},
    "applicationID": APP,
    "application_name": "observatory",
    "application_namespace": "observatory",
    "userId": "Admin",
    "microservices": ["6650a1b2c3d4e5f6010203a1"],
}


@pytest.mark.parametrize(
    "login, apps, jobs, needle",
    [
        (login_ok(TOKEN + "\r\nX-Injected: 1"), None, None, "not a bearer token"),
        (login_ok(), reply(200, b"[" * 100_000 + b"]" * 100_000), None, "no JSON"),
        (login_ok(), listing([{**APP_DOC, "microservices": 5}]), listing([JOB]), "microservices"),
        (login_ok(), listing([APP_DOC]), listing([{**JOB, "instance_list": 7}]), "instance_list"),
        (login_ok(), listing([{**APP_DOC, "application_name": ["x"]}]), listing([]), "not text"),
        (login_ok(), listing([APP_DOC]), listing([{**JOB, "microserviceID": 5}]), "without an id"),
        (login_ok(), listing([APP_DOC]), listing([{**JOB, "image": {"x": 1}}]), "not a string"),
    ],
    ids=[
        "crlf-token",
        "nested-json",
        "microservices-5",
        "instance-list-7",
        "name-list",
        "id-number",
        "image-object",
    ],
)
def test_a_hostile_answer_is_one_line(no_proxy, servers, login, apps, jobs, needle):
    table = {("POST", "/api/auth/login"): login}
    if apps is not None:
        table[("GET", "/api/applications/")] = apps
    if jobs is not None:
        table[("GET", "/api/services/")] = jobs
    sm = servers(routes(table))
    with pytest.raises(FlopsError) as err:
        client(sm).applications()
    text = one_line(err.value)
    assert needle in text and "X-Injected" not in text


@pytest.mark.parametrize(
    "app_id",
    ["../services/", "6650a1b2c3d4e5f601020301#x", "6650a1b2c3d4e5f601020301?x=1", "g" * 24, ""],
)
def test_only_object_ids_reach_a_delete_url(no_proxy, servers, app_id):
    sm = servers(routes({("POST", "/api/auth/login"): login_ok()}))
    with pytest.raises(FlopsError) as err:
        client(sm).delete_application(app_id)
    assert "24 hex digits" in one_line(err.value)
    assert [r[0] for r in sm.seen if r[0] == "DELETE"] == []


def test_an_object_id_is_sent_as_it_is(no_proxy, servers):
    sm = servers(
        routes(
            {
                ("POST", "/api/auth/login"): login_ok(),
                ("DELETE", f"/api/application/{APP}"): reply(200, b'{"message": "deleted"}'),
                ("DELETE", f"/api/service/{APP}/instance/3"): reply(200, b'{"message": "ok"}'),
            }
        )
    )
    sm_client = client(sm)
    assert sm_client.delete_application(APP) == "deleted"
    sm_client.undeploy_instance(APP, 3)
    assert [r[:2] for r in sm.seen][1:] == [
        ("DELETE", f"/api/application/{APP}"),
        ("DELETE", f"/api/service/{APP}/instance/3"),
    ]
