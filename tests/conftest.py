"""Shared fixtures: small bundles built once per session; real audio and display servers owned by the test
session (see tests/realparts.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import realparts
from tests.bundles import make_bundle


@pytest.fixture(scope="session", autouse=True)
def ndi_loopback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """NDI on 127.0.0.1 for the whole session. The NDI runtime reads its config once per process, when cyndilib
    first loads, so the directory must be set before any test (the benches in test_frame_share do) loads it
    in this process; subprocesses inherit it."""
    directory = tmp_path_factory.mktemp("ndi")
    (directory / "ndi-config.v1.json").write_text(json.dumps({"ndi": {"networks": {"ips": "127.0.0.1"}}}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NDI_CONFIG_DIR", str(directory))
        yield directory


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Encoder-only bundle with random weights."""
    return make_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="session")
def full_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Encoder, 64 px generator and art index, random weights."""
    return make_bundle(tmp_path_factory.mktemp("bundle") / "full", generator=True)


def skip_or_fail(reason: str) -> None:
    """Skip a test whose real parts are missing here; in CI (CI=true) that is a broken setup, so fail."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must provide this: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pulse_server() -> Iterator[realparts.PulseServer]:
    """A private PulseAudio daemon with null sink ``syn_null``; its monitor is what PortAudio records.

    For the whole session, ``pulse_server.env`` is also applied to ``os.environ`` (so in-process
    sounddevice and any subprocess find this server and never the user's), and PortAudio is
    re-initialised if sounddevice was imported before. Tests that break the device use ``pulse``.
    """
    reason = realparts.missing_pulse_parts()
    if reason:
        skip_or_fail(reason)
    server = realparts.PulseServer()
    with pytest.MonkeyPatch.context() as mp:
        try:
            server.start()
            for key, value in server.env.items():
                mp.setenv(key, value)
            realparts.reinit_portaudio()
            yield server
        finally:
            server.close()


@pytest.fixture
def pulse(pulse_server: realparts.PulseServer) -> Iterator[realparts.PulseServer]:
    """The session's PulseAudio server, put back to its initial state after the test.

    Use this instead of ``pulse_server`` in tests that play sound or suspend, unload or stop the device.
    """
    pulse_server.reset()
    yield pulse_server
    pulse_server.reset()


@pytest.fixture(scope="session")
def xvfb_server() -> Iterator[realparts.XvfbServer]:
    """Xvfb on a free display (640x480x24) for the session; ``screenshot()`` reads its framebuffer."""
    reason = realparts.missing_xvfb()
    if reason:
        skip_or_fail(reason)
    server = realparts.XvfbServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def xvfb_display(xvfb_server: realparts.XvfbServer) -> str:
    """The DISPLAY string (e.g. ``":3"``) of the session's Xvfb; pass it to subprocesses, not os.environ."""
    return xvfb_server.display
