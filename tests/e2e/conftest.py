"""pytest fixtures for the end-to-end tests (helpers live in e2e_lib.py).

Everything binds to 127.0.0.1. Every chartroom process a fixture starts is
stopped by its PID at teardown (SIGTERM, then SIGKILL after a timeout) and
waited for.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e_lib import (
    CHART_SOURCES,
    ROOT,
    YAML11_SOURCES,
    ChartroomPool,
    ChartSet,
    HelmHome,
    find_binary,
    package_charts,
)


@pytest.fixture(scope="session")
def chartroom_bin() -> Path:
    binary = find_binary()
    if binary is None or not binary.is_file():
        pytest.fail(
            "chartroom binary not found: build it (cargo build --release) or set CHARTROOM_BIN "
            f"(looked for {binary or ROOT / 'target/{release,debug}/chartroom'})"
        )
    return binary


@pytest.fixture
def start_chartroom(chartroom_bin, tmp_path):
    """Factory fixture: ``start_chartroom(args, env=, config=, ...)`` -> Chartroom."""
    pool = ChartroomPool(chartroom_bin, tmp_path)
    yield pool.start
    pool.stop_all()


@pytest.fixture(scope="module")
def module_chartroom(chartroom_bin, tmp_path_factory):
    """Module-scoped factory, for servers shared by several tests."""
    pool = ChartroomPool(chartroom_bin, tmp_path_factory.mktemp("chartroom"))
    yield pool.start
    pool.stop_all()


@pytest.fixture
def helm_home(tmp_path):
    """Factory: ``helm_home("name")`` -> a fresh HelmHome under tmp_path."""
    counter = {"n": 0}

    def make(name: str = "helm") -> HelmHome:
        counter["n"] += 1
        return HelmHome(tmp_path / f"{name}-{counter['n']}")

    return make


@pytest.fixture(scope="session")
def charts(tmp_path_factory) -> ChartSet:
    """Test charts packaged with the real Helm client (helm-python-sdk)."""
    return package_charts(CHART_SOURCES, tmp_path_factory.mktemp("charts"))


@pytest.fixture(scope="session")
def yaml11_charts(tmp_path_factory) -> ChartSet:
    """A chart whose Chart.yaml holds strings YAML 1.1 would retype."""
    return package_charts(YAML11_SOURCES, tmp_path_factory.mktemp("yaml11"))
