"""README.md as documentation that runs: every shell block is run by a test (marked
``<!-- run: TEST -->`` before it) or marked ``<!-- illustrative: why -->``; the config
examples are configs flops-tasks accepts; the configuration precedence is the one measured
here. The blocks that need a testbed or a package index run in
tests/integration/test_readme.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flops_tasks import program
from flops_tasks.config import settings_of
from flops_tasks.invoke_config import FlopsConfig

from ..readme import README, SHELL, blocks, run_block

ROOT = README.parent


def test_every_shell_block_runs_or_is_marked_illustrative():
    shell = [b for b in blocks() if b.lang in SHELL]
    assert shell, "the README has shell blocks"
    for block in shell:
        where = f"README.md line {block.line}"
        run = re.fullmatch(r"<!-- run: (tests/[\w/]+\.py)::(\w+) -->", block.marker)
        illustrative = re.fullmatch(r"<!-- illustrative: .+ -->", block.marker)
        assert run or illustrative, f"{where}: neither run by a test nor marked illustrative"
        if run:
            source = (ROOT / run[1]).read_text()
            assert f"def {run[2]}(" in source, f"{where}: {run[1]} has no {run[2]}"
            assert f'run_block("{run[2]}")' in source, f"{where}: {run[2]} does not run it"
    assert not [b for b in blocks() if b.lang == ""], "a block without a language"


def test_the_check_sees_an_unmarked_block():
    text = "Intro.\n\n```sh\nrm -rf /\n```\n\n<!-- illustrative: x -->\n```sh\nls\n```\n"
    found = blocks(text)
    assert [b.marker for b in found] == ["", "<!-- illustrative: x -->"]


def test_the_completion_block_runs_as_written(tmp_path):
    flops = shutil.which("flops", path=str(Path(sys.executable).parent))
    assert flops, "the flops command is not installed in this environment: pip install -e ."
    env = {**os.environ, "HOME": str(tmp_path), "PATH": f"{Path(flops).parent}:/usr/bin:/bin"}
    res = subprocess.run(
        ["bash", "-ec", run_block("test_the_completion_block_runs_as_written").text],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "flops" in (tmp_path / ".flops-completion.sh").read_text()
    assert (tmp_path / ".bashrc").read_text() == ". ~/.flops-completion.sh\n"
    res = subprocess.run(
        ["bash", "-c", ". ~/.flops-completion.sh && complete -p flops"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0 and "flops" in res.stdout, res.stderr


def test_the_config_examples_are_accepted(tmp_path):
    examples = [
        b.text for b in blocks() if b.lang == "yaml" and re.search(r"^flops:", b.text, re.M)
    ]
    assert len(examples) >= 3
    for text in examples:
        data = yaml.safe_load(text)
        path = tmp_path / "example.yaml"
        path.write_text(yaml.safe_dump(data))
        config = FlopsConfig(runtime_path=str(path))
        config.load_runtime()
        settings_of(config)  # raises ConfigError (one line naming the key) if it is refused


@pytest.mark.parametrize(
    "env, with_f, wins",
    [
        ({}, False, "invoke.yaml"),
        ({"INVOKE_FLOPS_ADDRESSES_FLOPS_MANAGER_IP": "10.0.0.8"}, False, "INVOKE_FLOPS_*"),
        ({"INVOKE_FLOPS_ADDRESSES_FLOPS_MANAGER_IP": "10.0.0.8"}, True, "-f FILE"),
        ({}, True, "-f FILE"),
        (
            {"INVOKE_FLOPS_ADDRESSES_FLOPS_MANAGER_IP": "10.0.0.8", "FLOPS_MANAGER_IP": "10.0.0.6"},
            True,
            "FLOPS_MANAGER_IP",
        ),
    ],
)
def test_config_precedence_is_as_the_readme_says(tmp_path, monkeypatch, capsys, env, with_f, wins):
    """invoke.yaml < INVOKE_FLOPS_* < -f FILE, and the FLOps docs' variables over all."""
    values = {
        "invoke.yaml": "10.0.0.7",
        "INVOKE_FLOPS_*": "10.0.0.8",
        "-f FILE": "10.0.0.9",
        "FLOPS_MANAGER_IP": "10.0.0.6",
    }
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for key in [k for k in os.environ if k.startswith("INVOKE_") or k.endswith("_IP")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "invoke.yaml").write_text("flops: {addresses: {flops_manager_ip: 10.0.0.7}}\n")
    (tmp_path / "f.yaml").write_text("flops: {addresses: {flops_manager_ip: 10.0.0.9}}\n")
    try:
        program.main(["flops", *(["-f", "f.yaml"] if with_f else []), "env", "--json"])
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr()
    shown = json.loads(capsys.readouterr().out)["addresses"]["FLOPS_MANAGER_IP"]
    assert shown["value"] == values[wins], shown
    text = " ".join(README.read_text().split())
    assert (
        "`invoke.yaml` in the project folder (for `flops`: the folder it runs in), "
        "`INVOKE_FLOPS_*` environment variables (e.g. `INVOKE_FLOPS_SSH_PARALLEL=32`), "
        "then `-f FILE`: a file given with `-f` wins over the variables"
    ) in text
