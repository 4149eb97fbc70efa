"""Shared fixtures: small bundles built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bundles import make_bundle


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Encoder-only bundle with random weights."""
    return make_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def full_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Encoder, 64 px generator and art index, random weights."""
    return make_bundle(tmp_path_factory.mktemp("bundle") / "full", generator=True)
