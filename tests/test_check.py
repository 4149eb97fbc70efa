"""`synesthesia check`: a venue preflight that finds what would stop the show."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, osc_in: int, source: str = "synth:happy") -> Path:
    pub, ctl = free_port(), free_port()
    path.write_text(
        f'[audio]\nsource = "{source}"\n[render]\nheadless = true\n'
        f'[osc]\nin_port = {osc_in}\nin_host = "127.0.0.1"\n'
        f'[zmq]\npub = "tcp://127.0.0.1:{pub}"\nctl = "tcp://127.0.0.1:{ctl}"\n'
    )
    return path


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", "check", *args], capture_output=True, text=True, timeout=180)


def test_ready_venue_passes(full_bundle: Path, tmp_path: Path) -> None:
    proc = check("--config", str(write_config(tmp_path / "v.toml", free_port())), "--bundle", str(full_bundle))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = {line.split()[1]: line.split()[0] for line in proc.stdout.splitlines()[:-1] if line.split()[1] != "frame"}
    assert lines["bundle"] == "OK" and lines["generator"] == "OK" and lines["audio"] == "OK"
    assert "frame rate" in proc.stdout and proc.stdout.strip().endswith("0 failed, 0 warnings")


def test_busy_port_and_bad_source_fail(full_bundle: Path, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        cfg = write_config(tmp_path / "v.toml", busy.getsockname()[1], source="synth:ecstatic")
        proc = check("--config", str(cfg), "--bundle", str(full_bundle))
    assert proc.returncode == 1
    assert any(line.startswith("FAIL  osc in") for line in proc.stdout.splitlines())
    assert any(line.startswith("FAIL  audio") and "ecstatic" in line for line in proc.stdout.splitlines())


def test_bad_config_and_damaged_bundle_are_named(tiny_bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[render]\nfps = -3\n")
    proc = check("--config", str(bad), "--bundle", str(tiny_bundle))
    assert proc.returncode == 2 and "render.fps" in proc.stdout  # config/bundle invalid: 2, as every command
    proc = check("--bundle", str(tmp_path / "nowhere"))
    assert proc.returncode == 2 and "FAIL  bundle" in proc.stdout and "not found" in proc.stdout


def test_check_takes_runs_source_and_display_flags(full_bundle: Path, tmp_path: Path) -> None:
    cfg = str(write_config(tmp_path / "v.toml", free_port()))
    proc = check("--config", cfg, "--bundle", str(full_bundle), "--source", "synth:tour:music", "--headless")
    lines = {line.split()[1]: line for line in proc.stdout.splitlines()[:-1]}
    assert lines["audio"].startswith("OK") and "synth:tour:music" in lines["audio"], proc.stdout
    assert lines["display"].startswith("OK") and "headless" in lines["display"], proc.stdout
    bad = check("--config", cfg, "--bundle", str(full_bundle), "--source", "synth:happy:banjo", "--headless")
    assert bad.returncode == 1 and "banjo" in bad.stdout
