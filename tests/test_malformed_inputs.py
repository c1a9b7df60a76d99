"""Malformed input of every kind ends in one line on stderr and exit code 2, before any compute
and with no output written (issue 21). The inputs are the table in malformed_cases.py; each runs
`experiments.cli.main` in-process in a fresh directory, and a few run as a real subprocess to
prove the exit code of the entry point.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from malformed_cases import CASES, DIR, SOCKET, SWEEP, Case, dump

from experiments.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_the_table_is_large_and_ids_unique():
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)


# ------------------------------------------------------------------------------- harness


def materialise(case: Case, root) -> list[socket.socket]:
    """Write the case's files under root; returns the sockets to close afterwards."""
    held = []
    for name, content in case.files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content == DIR:
            path.mkdir()
        elif content == SOCKET:
            s = socket.socket(socket.AF_UNIX)
            s.bind(str(path))
            held.append(s)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return held


def snapshot(root) -> dict:
    return {
        str(p.relative_to(root)): p.stat().st_size if p.is_file() else -1 for p in root.rglob("*")
    }


@pytest.fixture
def no_compute(monkeypatch):
    """Validation must refuse the input before any run trains; corpora are read afresh (the
    cache is keyed by the config, whose relative paths every case reuses)."""
    from experiments import runner
    from scaling import data

    def refuse(*args, **kwargs):
        raise AssertionError("compute started: the input was not refused")

    monkeypatch.setattr(runner, "execute_run", refuse)
    data.load_corpus.cache_clear()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_malformed_input_is_one_line_and_exit_code_2(
    case, tmp_path, monkeypatch, capsys, no_compute
):
    monkeypatch.chdir(tmp_path)
    held = materialise(case, tmp_path)
    before = snapshot(tmp_path)
    try:
        code = main(list(case.argv))
    except SystemExit as e:  # argparse
        code = e.code
    finally:
        for s in held:
            s.close()
    err = capsys.readouterr().err
    # What a terminal shows: a progress bar that appeared (slow checks) is erased by its \r.
    shown = (line.rsplit("\r", 1)[-1] for line in err.split("\n"))
    lines = [line for line in shown if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("scaling: error: ") and "; fix: " in lines[0], err
    assert not lines[0].rstrip().endswith(("of", ":", "fix:")), err  # a hint that trails off
    assert snapshot(tmp_path) == before, "output written for refused input"


SUBPROCESS = ["config-garbage", "sweep-base-list", "fit-n-text", "lm-eval-list", "task-list"]


@pytest.mark.parametrize("case", [c for c in CASES if c.id in SUBPROCESS], ids=lambda c: c.id)
def test_the_real_entry_point_exits_2(case, tmp_path):
    materialise(case, tmp_path)
    env = os.environ | {"JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "experiments", *case.argv],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", ["train", "sweep", "plan"])
def test_an_unreadable_file_is_one_line(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    locked = tmp_path / "in.yaml"
    locked.write_text(dump(SWEEP))
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads whatever the mode: fail the read as the kernel would
        read_bytes = Path.read_bytes

        def denied(path):
            if path.resolve() == locked:
                raise PermissionError(13, "Permission denied", str(path))
            return read_bytes(path)

        monkeypatch.setattr(Path, "read_bytes", denied)
    assert main([command, "in.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "in.yaml: Permission denied" in err, err
