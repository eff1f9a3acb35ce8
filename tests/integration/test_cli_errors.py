"""Bad input to the ops commands and the root CLI is a one-line error (exit 2), never a traceback:
model names, aliases, versions and run ids, durations and numbers, a closed pipe, Ctrl-C; and a
fuzz run of ``nbops.cli.main`` with generated argv on a seeded project."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbops import cli, envvars
from nbops.errors import Exit
from nbops.tracking import audit

BAD_NAMES = ["../x", "a/b", "' OR 1=1 --", "x" * 10_000, "a\x00b", "a\nb", "", " ", "m:1", "./m"]


def run_main(*argv: str) -> tuple[int, str, str]:
    """``nbops.cli.main`` in this process: (exit code, stdout, stderr); SystemExit is its code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert 1 <= len(lines) <= 2 and lines[-1].startswith("  hint: ") or len(lines) == 1, err
    for w in words:
        assert w in lines[0], (w, err)


@pytest.fixture
def seeded(project: Path, client: Any) -> dict[str, Any]:
    """A project store with one run (metrics, no model), model ``wine`` with two versions and
    @champion, and a model whose name holds a quote and a filter (``wine' OR name LIKE '%``)."""
    from nbops.mlflow.store import open_store

    open_store()  # the store as nbops makes it; seeded with MLflow's own client
    exp = client.create_experiment("wine")
    run = client.create_run(exp, run_name="train")
    client.log_metric(run.info.run_id, "accuracy", 0.9)
    client.set_terminated(run.info.run_id)
    for name in ("wine", "wine' OR name LIKE '%"):
        client.create_registered_model(name)
        for _ in range(2):
            client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias("wine", "champion", "1")
    audit.record("promote", model="wine", version="1")
    return {"run": run.info.run_id, "root": project}


def test_bad_model_names_are_one_line_errors_naming_them(seeded):
    rid = seeded["run"]
    for name in BAD_NAMES:
        shown = repr(name[:60])[1:-1][:20]
        for argv in (
            ("models", name),
            ("rollback", name),
            ("promote", rid, "--model", name),
            ("lineage", f"{name}@champion"),
        ):
            code, out, err = run_main(*argv)
            assert_one_line_error(code, err)
            if name.strip():
                assert shown in err.splitlines()[0] or "model name" in err, (argv, err)
    code, _, err = run_main("models", "' OR 1=1 --")
    assert "' OR 1=1 --" in err and "is not registered" in err  # a valid MLflow name, looked up


def test_a_quote_in_a_model_name_does_not_reach_the_filter(seeded):
    code, out, err = run_main("models", "wine' OR name LIKE '%", "--json")
    assert code == 0, err
    import json

    rows = json.loads(out)
    assert [r["version"] for r in rows] == ["2", "1"]  # its own two versions, not wine's too
    code, out, err = run_main("models", "wine")
    assert code == 0 and "@champion" in out


def test_a_new_model_needs_a_plain_name(seeded):
    code, _, err = run_main("promote", seeded["run"], "--model", "' OR 1=1 --")
    assert_one_line_error(code, err, "is not a plain name for a new model")


BAD_REFERENCES = [
    (("lineage", "wine/../x"), "contains '/'"),
    (("lineage", "wine/b"), "version 'b' of model 'wine'"),
    (("lineage", "wine/0"), "does not exist"),
    (("lineage", "wine@latest"), "reserved"),
    (("lineage", "wine@a b"), "not a valid alias"),
    (("rollback", "wine", "--alias", "../x"), "not a valid alias"),
    (("promote", "0" * 32, "--model", "wine", "--alias", "v3"), "reserved"),
    (("show", "abc"), "not an MLflow run id"),
    (("show", "../" + "0" * 29), "not an MLflow run id"),
    (("show", "0" * 33), "not an MLflow run id"),
    (("promote", "' OR 1=1 --", "--model", "wine"), "run id"),
    (("verify", "x" * 10_000), "10000 characters"),
    (("lineage", "nope"), "not an MLflow run id"),
    (("lineage", ""), "empty"),
]


def test_bad_versions_aliases_and_run_ids(seeded):
    for argv, words in BAD_REFERENCES:
        code, _, err = run_main(*argv)
        assert_one_line_error(code, err, words)


@pytest.mark.parametrize(
    "since",
    [
        "99999999999d",
        "99999999999999999999w",
        "-1d",
        "+2h",
        "0",
        "garbage",
        "1e9d",
        "",
        "2h ago",
        "9999-12-31T23:59:59-14:00",
        "2026-13-01",
        "\x00",
    ],
)
def test_bad_since_values_are_one_line_errors(root_project, since):
    code, _, err = run_main("audit", f"--since={since}")
    assert_one_line_error(code, err, "--since")


@pytest.fixture
def root_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / ".nbops").mkdir()
    monkeypatch.setenv("NBOPS_PROJECT_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def test_good_since_values_work(root_project):
    audit.record("run.start")
    for since in ("1.5h", "30m", "0d", "2w", "2026-01-01", "2026-01-01T09:00:00Z"):
        code, out, err = run_main("audit", "--since", since)
        assert code == 0 and "run.start" in out, (since, err)


@pytest.mark.parametrize(
    "argv",
    [
        ("runs", "--max", "0"),
        ("runs", "--max", "-1"),
        ("runs", "--max", "99999999999999999999"),
        ("sync", "--wait", "nan"),
        ("sync", "--wait", "-1"),
        ("sync", "--wait", "inf"),
        ("ui", "--port", "70000"),
        ("drift", "a.csv", "b.csv", "--threshold", "nan"),
        ("drift", "a.csv", "b.csv", "--threshold", "1.5"),
        ("verify", "0" * 32, "--tolerance", "-1"),
        ("verify", "0" * 32, "--tolerance", "nan"),
        ("ui", "--workers", "0"),
    ],
)
def test_bad_numbers_are_usage_errors(root_project, argv):
    code, _, err = run_main(*argv)
    assert code == 2 and "Traceback" not in err
    assert f"argument {argv[-2]}" in err


def test_ui_on_a_busy_port_or_an_unknown_host_is_named_before_mlflow_starts(root_project):
    """MLflow's server logs 'address already in use' and exits 0: nbops names the port first."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run_main("ui", "--port", str(port))
    assert_one_line_error(code, err, f"--port {port}", "another program")
    assert "hint: pick another port with --port" in err
    assert out == ""  # not the "MLflow UI on ..." line: nothing was started
    code, _, err = run_main("ui", "--host", "no-such-host.invalid")
    assert_one_line_error(code, err, "--host 'no-such-host.invalid' cannot be resolved")


def test_drift_html_that_cannot_be_written_is_named(project):
    import csv

    for name in ("ref.csv", "cur.csv"):
        with open(project / name, "w", newline="") as f:
            csv.writer(f).writerows([["x"], *[[i] for i in range(20)]])
    (project / "afile").write_text("")
    code, _, err = run_main("drift", "ref.csv", "cur.csv", "--html", "afile/report.html")
    assert_one_line_error(code, err, "--html", "cannot be written")


def test_closed_pipe_exits_quietly(root_project):
    for i in range(3000):
        audit.record("run.end", i=i)
    codes = []
    for argv in (["audit", "--json"], ["audit"], ["--help"]):
        p = subprocess.Popen(
            [sys.executable, "-m", "nbops", *argv],
            cwd=root_project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert p.stdout is not None and p.stderr is not None
        p.stdout.readline()  # `| head -1`
        p.stdout.close()
        err = p.stderr.read().decode()
        codes.append(p.wait(timeout=60))
        assert err == "", err  # no traceback, no "Exception ignored"
    # the listings are far bigger than a pipe's buffer; --help may fit in it and end 0
    assert codes[:2] == [Exit.BROKEN_PIPE, Exit.BROKEN_PIPE] and codes[2] in (0, Exit.BROKEN_PIPE)


def test_ctrl_c_is_130_without_a_traceback(root_project):
    """A real SIGINT while the command runs (sync waits for a writer it will not find: the
    interrupt lands in whatever it is doing)."""
    import signal

    code = (
        "import os, signal, sys, threading\n"
        # a shell's background job (`cmd &`, as CI may start the suite) ignores SIGINT, and Python
        # then installs no KeyboardInterrupt handler: give this process a terminal's Ctrl-C
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from nbops import cli\n"
        "threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()\n"
        "import nbops.tracking.audit as a\n"
        "orig = a.select\n"
        "def slow(*x, **k):\n"
        "    import time\n"
        "    while True: time.sleep(0.05)\n"
        "a.select = slow\n"
        "sys.exit(cli.main(['audit']))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], cwd=root_project, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == Exit.INTERRUPTED, p.stderr
    assert p.stderr.strip() == "nbops audit: interrupted"
    assert signal.SIGINT  # (the signal module is what delivered it)


def test_an_unexpected_error_is_one_line_naming_it(root_project, monkeypatch):
    """A fault no input can produce (a bug): one line with its type and place, exit 1."""
    from nbops.ops import commands

    def boom(args: Any) -> int:
        raise RuntimeError("something nbops did not expect")

    monkeypatch.setattr(commands, "cmd_audit", boom)
    code, _, err = run_main("audit")
    assert code == Exit.FAILED and "Traceback" not in err
    assert "internal error: RuntimeError: something nbops did not expect" in err
    monkeypatch.setenv(envvars.DEBUG, "1")
    with pytest.raises(RuntimeError):
        cli.main(["audit"])


# --- fuzz -----------------------------------------------------------------------------------
WORDS = [
    *BAD_NAMES,
    "wine",
    "wine@champion",
    "wine/1",
    "wine/2",
    "wine@nope",
    "champion",
    "0" * 32,
    "1h",
    "99999999999d",
    "-1",
    "0",
    "nan",
    "inf",
    "1e400",
    "run",
    "promote",
    "audit.gap",
    "metrics.accuracy > 0.9",
    "metrics.accuracy DESC",
    "params.x = 'a''",
    "/dev/zero",
    "/",
    "nbops.yaml",
]
# per command: (positional arguments it takes, options with a value, flags)
COMMANDS: dict[str, tuple[int, list[str], list[str]]] = {
    "runs": (0, ["-e", "--experiment", "--filter", "--order-by", "--max"], ["--json"]),
    "show": (1, [], ["--json"]),
    "audit": (0, ["--action", "--since"], ["--verify", "--json"]),
    "models": (1, [], ["--json"]),
    "lineage": (1, [], ["--json"]),
    "promote": (1, ["--model", "-m", "--alias", "-a"], []),
    "rollback": (1, ["--alias", "-a"], []),
    "verify": (1, ["--tolerance"], []),
    "drift": (2, ["--threshold"], ["--json"]),
    "sync": (0, ["--wait"], []),
}


@st.composite
def argvs(draw: st.DrawFn, run_id: str) -> list[str]:
    """Mostly well-formed command lines with hostile values, some junk tokens."""
    command = draw(st.sampled_from(sorted(COMMANDS)))
    positional, options, flags = COMMANDS[command]
    value = st.one_of(
        st.sampled_from([*WORDS, run_id, "wine@champion", run_id.upper(), run_id[:31]]),
        st.text(max_size=30).filter(lambda t: not t.startswith("-")),
    )
    argv = [command]
    argv += draw(st.lists(value, max_size=positional, min_size=positional if positional else 0))
    for opt in draw(st.lists(st.sampled_from(options or ["--json"]), max_size=3)):
        if opt in options:
            argv.append(f"{opt}={draw(value)}")
    if flags:
        argv += draw(st.lists(st.sampled_from(flags), max_size=len(flags), unique=True))
    if draw(st.integers(0, 9)) == 0:
        argv.insert(draw(st.integers(1, len(argv))), draw(st.text(max_size=10)))
    if command == "sync" and not any(a.startswith("--wait") for a in argv):
        argv.append("--wait=0")
    return argv


def test_fuzzed_argv_never_raises_or_crashes(seeded):
    rid = seeded["run"]

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(argv=argvs(rid))
    def fuzz(argv: list[str]) -> None:
        code, _, err = run_main(*argv)
        assert code in (0, 1, 2, 3), (argv, code, err)
        assert "Traceback" not in err and "internal error" not in err, (argv, err)

    fuzz()


def test_runs_search_is_bounded_like_the_servers(seeded):
    """31+ order keys crash SQLite in the process; duplicates were an MlflowException."""
    many = [a for i in range(40) for a in ("--order-by", f"metrics.m{i}")]
    terms = " and ".join(f"metrics.m{i} > 0" for i in range(40))
    for argv, words in (
        (["runs", *many], "--order-by is given 40 times (at most 8)"),
        (["runs", "--order-by", "metrics.a", "--order-by", "metrics.a DESC"], "twice"),
        (["runs", "--filter", terms], "--filter: has 40 comparisons (at most 20)"),
        (["runs", "--filter", "x" * 5000], "more than 4096 characters"),
        (["runs", "--filter", "a\x00"], "NUL"),
        (["runs", "--order-by", "metrics.a SIDEWAYS"], "order_by"),
    ):
        code, _, err = run_main(*argv)
        assert_one_line_error(code, err, words)
    code, out, err = run_main("runs", "--filter", "metrics.accuracy > 0.5", "--json")
    assert code == 0 and seeded["run"] in out, err


def test_verbose_before_or_after_the_command_reaches_the_command_and_no_further(root_project):
    """`nbops -v CMD` and `nbops CMD -v` set NBOPS_VERBOSE while the command runs (for the
    processes it starts); main() gives an in-process caller its environment back."""
    import os

    seen = []
    real = cli.cmd_sync

    def spy(args):
        seen.append(os.environ.get(envvars.VERBOSE))
        return real(args)

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(envvars.VERBOSE, raising=False)
        mp.setattr(cli, "cmd_sync", spy)
        for argv in (["-v", "sync"], ["sync", "--verbose"], ["sync"]):
            code, _, err = run_main(*argv)
            assert code == 0, err
            assert envvars.VERBOSE not in os.environ
    assert seen == ["1", "1", None]
