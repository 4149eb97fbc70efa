"""The last line of `synesthesia run`: `stopped after N s (reason)`, through the real command line."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.netparts import OscReceiver


def run_cmd(bundle: Path, osc: OscReceiver, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "engine", "run", "--headless", "--source", "synth:happy", "--backend", "onnx"]
    cmd += ["--bundle", str(bundle), "--osc", f"127.0.0.1:{osc.port}", "--zmq-pub", "tcp://127.0.0.1:*"]
    return [*cmd, *extra]


def test_duration_reached_is_the_last_line(tiny_bundle: Path) -> None:
    osc = OscReceiver()
    try:
        proc = subprocess.run(run_cmd(tiny_bundle, osc, "--duration", "2"), capture_output=True, text=True, timeout=120)
    finally:
        osc.close()
    assert proc.returncode == 0, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"synesthesia: stopped after 2\.\d s \(duration reached\)", last), proc.stderr


def test_sigterm_exits_0_within_2_s_and_says_so_on_stderr_and_in_the_kiosk_log(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    log_file = tmp_path / "kiosk.log"
    config = tmp_path / "venue.toml"
    config.write_text(f"[kiosk]\nenabled = true\nlog_file = '{log_file}'\n")
    osc = OscReceiver()
    proc = subprocess.Popen(run_cmd(tiny_bundle, osc, "--config", str(config)), stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        osc.wait_for("/syn/heartbeat", 2, timeout=90)  # running
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        took = time.monotonic() - sent
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        osc.close()
    print(f"\nSIGTERM to exit: {took:.2f} s")
    assert took < 2.0, f"{took:.2f} s from SIGTERM to exit"
    assert re.fullmatch(r"synesthesia: stopped after \d+\.\d s \(signal SIGTERM\)\n", lines[-1]), lines[-5:]
    assert re.search(r"INFO synesthesia\.run: stopped after \d+\.\d s \(signal SIGTERM\)", log_file.read_text())
