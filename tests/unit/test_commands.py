import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flops_tasks import commands


def run_local(script: str) -> str:
    # bytes, decoded by hand: text mode would translate "\r" into "\n"
    return subprocess.run(["sh", "-c", script], capture_output=True, check=True).stdout.decode()


HOSTILE = ["a b", "$(touch /tmp/flops-pwned)", "`id`", "'; rm -rf /tmp/x; '", '"', "\\", "*",
           "a\nb", "--help", "-n", "%s%n", "$HOME", "${IFS}", "!!", "~root", ""]


def test_cmd_quotes_every_argument():
    out = run_local(commands.echo_args(HOSTILE))
    assert out.split("\n")[:-1] == [v for part in HOSTILE for v in part.split("\n")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                               blacklist_characters="\x00"), max_size=20),
                min_size=1, max_size=5))
def test_no_value_reaches_the_shell_unquoted(values):
    out = run_local(commands.cmd("printf", "%s\\0", *values))
    assert out.split("\0")[:-1] == values


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=200))
def test_write_file_writes_exact_content(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("w") / "sub dir" / "f;ile"
    run_local(commands.write_file(str(path), content))
    assert path.read_bytes() == content.encode()


def test_probe_batch_round_trip():
    script = commands.probe_batch([
        ("one", commands.cmd("echo", "hello world")),
        ("fails", "exit 3"),
        ("quiet", "true"),
        ("reads_stdin", "cat"),
    ])
    parsed = commands.parse_probe_batch(run_local(script))
    assert parsed == {
        "one": (0, "hello world"),
        "fails": (3, ""),
        "quiet": (0, ""),
        "reads_stdin": (0, ""),
    }


def test_sudo_wraps_whole_compound_command():
    inner = commands.all_of(commands.cmd("true"), commands.cmd("echo", "x y"))
    built = commands.sudo(inner, None)
    assert built.startswith("sudo -n -H -- sh -c ")
    assert commands.q(inner) in built
    assert commands.sudo(inner, "[p] ").startswith("sudo -S -p '[p] ' -H -- sh -c ")


@pytest.mark.parametrize("chain, rc", [(commands.all_of("true", "false"), 1),
                                       (commands.any_of("false", "true"), 0)])
def test_chains(chain, rc):
    assert subprocess.run(["sh", "-c", chain]).returncode == rc


def test_probe_output_without_trailing_newline():
    script = commands.probe_batch([("a", "printf 'no newline'"), ("b", "echo x")])
    assert commands.parse_probe_batch(run_local(script)) == {"a": (0, "no newline"),
                                                             "b": (0, "x")}


@pytest.mark.parametrize("name", ["a\\0b", "x\\cy", "tab\\tz", "-n", "-e \\n", "%s%n"])
def test_probe_names_arrive_literally_under_dash(name):
    """dash's echo reads backslash escapes ('\\c' even cuts the line): names go through
    printf '%s'."""
    script = commands.probe_batch([(name, commands.cmd("printf", "%s", "out")), ("b", "true")])
    assert commands.parse_probe_batch(run_local(script)) == {name: (0, "out"), "b": (0, "")}
