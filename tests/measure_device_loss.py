"""Measure a device loss under the real CLI: stderr lines while unplugged, time to `lost`, time to recovery.

    .venv/bin/python -m tests.measure_device_loss [UNPLUG_S]   (default 20; needs pulseaudio, pactl, paplay)

Runs `synesthesia run --headless --source mic` (default config: reconnect every 2 s) against a private
PulseAudio null sink, unloads the sink for UNPLUG_S seconds, loads it again and prints the figures.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from tests import realparts
from tests.netparts import OscReceiver


def first_after(osc: OscReceiver, address: str, value: tuple, since: float, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := [t for t, args in osc.received(address, since) if args == value]:
            return got[0]
        time.sleep(0.02)
    return float("nan")


def main(unplug_s: float) -> None:
    server = realparts.PulseServer().start()
    osc = OscReceiver()
    lines: list[tuple[float, str]] = []
    cmd = [sys.executable, "-m", "engine", "run", "--headless", "--source", "mic", "--backend", "onnx"]
    cmd += ["--osc", f"127.0.0.1:{osc.port}", "--zmq-pub", "tcp://127.0.0.1:*"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=server.client_env())
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), s) for s in proc.stderr), daemon=True)
    reader.start()
    try:
        osc.wait_for("/syn/heartbeat", timeout=120)
        time.sleep(4.0)
        unplugged = time.monotonic()
        server.unload_sink()
        lost = first_after(osc, "/syn/state", ("lost",), unplugged)
        time.sleep(max(0.0, unplugged + unplug_s - time.monotonic()))
        replugged = time.monotonic()
        server.load_sink()
        back = first_after(osc, "/syn/status/source", ("running",), replugged)
        time.sleep(2.0)
    finally:
        proc.terminate()
        proc.wait(30)
        reader.join(10)
        osc.close()
        server.close()
    noisy = [s.rstrip() for t, s in lines if unplugged <= t < replugged]
    print(f"stderr lines in {replugged - unplugged:.1f} s unplugged: {len(noisy)}")
    print(f"/syn/state lost {lost - unplugged:.2f} s after the unplug; source running {back - replugged:.2f} s after")
    print("\n".join(f"  {s}" for s in noisy))
    print(f"last line: {lines[-1][1].rstrip() if lines else ''}")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0)
