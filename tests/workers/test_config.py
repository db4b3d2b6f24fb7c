"""The worker configuration: defaults, overrides and malformed values, read in one place,
the same in Django settings, and every variable documented in the README."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from workers.config import ConfigError, ImageLimits, ProtocolLimits, WorkerConfig

ROOT = Path(__file__).resolve().parents[2]


def test_nothing_set_gives_the_working_defaults() -> None:
    config = WorkerConfig.from_env({})
    assert config == WorkerConfig()
    assert config.images.max_bytes == 20 * 1024 * 1024
    assert config.urls.allow_private is False
    assert config.rpc.search_timeout_s == 0.25
    assert config.index.search_threads == 1
    assert config.observability.log_format == "plain"
    assert config.protocol.max_message_bytes >= config.images.max_bytes


def test_set_variables_override_their_fields_and_empty_ones_keep_the_default() -> None:
    config = WorkerConfig.from_env(
        {
            "IMAGE_MAX_BYTES": " 1234 ",
            "IMAGE_MAX_ASPECT": "2.5",
            "IMAGE_URL_ALLOW_PRIVATE": "Yes",
            "WORKER_METRICS_ADDR": "0.0.0.0",
            "LOG_FORMAT": "JSON",
            "LOG_LEVEL": "debug",
            "SHARD_COMPACT_DELTA": "50",
            "FAISS_TRAIN_THREADS": "4",
            "RPC_MAX_K": "",
        }
    )
    assert (config.images.max_bytes, config.images.max_aspect) == (1234, 2.5)
    assert config.urls.allow_private is True
    assert config.observability.metrics_addr == "0.0.0.0"
    assert (config.observability.log_format, config.observability.log_level) == ("json", "DEBUG")
    assert config.upkeep.max_delta == 50
    assert config.index.train_threads == 4
    assert config.protocol.max_k == ProtocolLimits().max_k


@pytest.mark.parametrize(
    ("value", "on"), [("", True), ("auto", True), ("Off", False), ("0", False)]
)
def test_the_gpu_switch_is_auto_unless_turned_off(value: str, on: bool) -> None:
    assert WorkerConfig.from_env({"INDEX_GPU": value}).index.use_gpu is on


def test_the_protocol_image_cap_is_the_image_byte_cap() -> None:
    config = WorkerConfig.from_env({"IMAGE_MAX_BYTES": str(30 * 2**20)})
    assert config.protocol.max_image_bytes == config.images.max_bytes == 30 * 2**20
    assert config.protocol.max_message_bytes > 30 * 2**20


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("IMAGE_MAX_BYTES", "20MB", "expected an integer"),
        ("IMAGE_MAX_ASPECT", "wide", "expected a finite number"),
        ("SEARCH_TIMEOUT_S", "nan", "expected a finite number"),
        ("IMAGE_URL_ALLOW_PRIVATE", "maybe", "expected true or false"),
        ("IMAGE_MAX_PIXELS", "0", "positive"),
        ("RPC_MAX_K", "-1", "at least 1"),
        ("LOG_FORMAT", "xml", "'json' or 'plain'"),
        ("WORKER_METRICS_PORT", "70000", "TCP port"),
        ("SHARD_COMPACT_REMOVED_FRACTION", "1.5", "fractions"),
        ("INDEX_FLAT_MAX", "3000000", "INDEX_FLAT_MAX <= INDEX_HNSW_MAX"),
        ("RPC_MAX_MESSAGE_BYTES", "1024", "no room for an image"),
        ("INDEX_GPU", "cuda", "auto or off"),
        ("INDEX_GPU_MIN_BATCH", "sixteen", "expected an integer"),
        ("INDEX_GPU_MIN_BATCH", "0", "at least 1"),
    ],
)
def test_a_malformed_value_names_its_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)) as raised:
        WorkerConfig.from_env({name: value, "SEARCH_SHARDS": "not ours"})
    assert str(raised.value).startswith(name)


def test_sections_built_in_code_read_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGE_MAX_BYTES", "1234")
    assert ImageLimits().max_bytes == 20 * 1024 * 1024
    assert WorkerConfig.from_env().images.max_bytes == 1234


def _environment_reads(path: Path) -> set[str]:
    """The string literals a module passes to os.environ[...] or as the first argument of
    a call whose name says environment (os.environ.get, os.getenv, env.int, _env_float...)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        key = None
        if isinstance(node, ast.Call) and node.args and "env" in ast.unparse(node.func).lower():
            key = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            names.add(key.value)
    return names


def test_only_the_configuration_reads_its_variables() -> None:
    ours = set(WorkerConfig.variables())
    config = ROOT / "workers" / "config"
    for top in ("workers", "catalog", "searchsite"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if config not in path.parents:
                assert not _environment_reads(path) & ours, path


def _readme_settings() -> set[str]:
    """The variables named in the first column of README's Configuration table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = (line.split("|")[1] for line in section.splitlines() if line.startswith("| `"))
    return {name for cell in rows for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", cell)}


def test_the_readme_lists_every_variable_the_configuration_reads() -> None:
    missing = sorted(set(WorkerConfig.variables()) - _readme_settings())
    assert not missing, f"README's Configuration table lacks {missing}"


def test_the_readme_lists_every_variable_the_django_settings_read() -> None:
    missing = sorted(_environment_reads(ROOT / "searchsite" / "settings.py") - _readme_settings())
    assert not missing, f"README's Configuration table lacks {missing}"


def test_django_settings_take_the_same_values(settings) -> None:
    config = settings.WORKER_CONFIG
    assert config == WorkerConfig.from_env()
    assert config.images.max_bytes == settings.IMAGE_MAX_BYTES
    assert config.urls.total_timeout == settings.IMAGE_URL_TOTAL_TIMEOUT
    assert config.rpc.search_timeout_s == settings.SEARCH_TIMEOUT_S
    assert config.rpc.encode_timeout_s == settings.ENCODE_TIMEOUT_S
    assert config.observability.log_format == settings.LOG_FORMAT
