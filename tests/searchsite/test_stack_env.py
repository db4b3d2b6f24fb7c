"""data/stack.env: written by `make run`, read by settings in other shells."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import environ
import pytest

from searchsite.stack_env import (
    read_stack_env,
    remove_stack_env,
    stack_env_path,
    write_stack_env,
)


@pytest.fixture
def fake_environ(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """What read_stack_env writes into (django-environ's Env.ENVIRON), not os.environ."""
    values: dict[str, str] = {}
    monkeypatch.setattr(environ.Env, "ENVIRON", values)
    return values


def test_written_for_its_owner_only_and_read_back_verbatim(tmp_path: Path, fake_environ):
    path = tmp_path / "stack.env"
    url = "redis://vps:p-w_d@127.0.0.1:6390/0"
    write_stack_env(path, {"REDIS_URL": url, "WEB_PORT": "8000"}, "line one\nline two")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.startswith("# line one\n# line two\n")
    assert f"STACK_PID='{os.getpid()}'" in text

    assert read_stack_env(path)
    assert fake_environ == {"REDIS_URL": url, "WEB_PORT": "8000", "STACK_PID": str(os.getpid())}


def test_the_environment_wins(tmp_path: Path, fake_environ):
    path = tmp_path / "stack.env"
    write_stack_env(path, {"REDIS_URL": "redis://from-file/0", "WEB_PORT": "8000"}, "")
    fake_environ["REDIS_URL"] = "redis://from-environment/0"
    assert read_stack_env(path)
    assert fake_environ["REDIS_URL"] == "redis://from-environment/0"
    assert fake_environ["WEB_PORT"] == "8000"


def test_a_file_left_by_a_run_that_is_gone_is_ignored(tmp_path: Path, fake_environ, capsys):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path = tmp_path / "stack.env"
    path.write_text(f"REDIS_URL='redis://stale/0'\nSTACK_PID='{gone.pid}'\n")
    assert not read_stack_env(path)
    assert fake_environ == {}
    assert "the `make run` that wrote it is gone" in capsys.readouterr().err


def test_no_file_reads_nothing(tmp_path: Path, fake_environ):
    assert not read_stack_env(tmp_path / "missing.env")
    assert not read_stack_env(None)


def test_where_it_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("STACK_ENV", raising=False)
    monkeypatch.delenv("DATA_DIR", raising=False)
    assert stack_env_path(tmp_path) == tmp_path / "data" / "stack.env"
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "elsewhere"))
    assert stack_env_path(tmp_path) == tmp_path / "elsewhere" / "stack.env"
    monkeypatch.setenv("STACK_ENV", str(tmp_path / "named.env"))
    assert stack_env_path(tmp_path) == tmp_path / "named.env"
    monkeypatch.setenv("STACK_ENV", "")
    assert stack_env_path(tmp_path) is None


def test_only_the_run_that_wrote_it_removes_it(tmp_path: Path):
    path = tmp_path / "stack.env"
    path.write_text("STACK_PID='1'\n")  # another run took it over
    remove_stack_env(path)
    assert path.exists()
    write_stack_env(path, {}, "")
    remove_stack_env(path)
    assert not path.exists()
    remove_stack_env(path)  # gone already: nothing to do


def test_values_that_cannot_be_read_back_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="cannot write REDIS_URL"):
        write_stack_env(tmp_path / "stack.env", {"REDIS_URL": "it's"}, "")
