import shutil

import pytest

from .sshd import running_as_root, start_sshd


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    if not shutil.which("sshd") and not shutil.which("/usr/sbin/sshd"):
        pytest.fail("OpenSSH server (sshd) is not installed: run .ci/setup")
    if not running_as_root():
        pytest.skip("the loopback sshd logs in as the current user only when run as root")
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()
