"""Memory soak with frame publishing (not collected by pytest): is RSS flat while frames go out on ZeroMQ?

    python -m tests.soak_frames [SECONDS]      # default 3600

Runs `synesthesia run --headless --source synth:happy --zmq-frames` on loopback ports with a real SUB
socket taking every frame, samples the engine's resident memory (VmRSS of /proc/PID/status) every 10 s,
and prints one JSON line: RSS after a 60 s warm-up, at the end, growth in percent, frames received, exit
code. Exits 1 when growth passes 5 % or the engine died.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import zmq

from tests.netparts import free_tcp_port, free_udp_port

ROOT = Path(__file__).resolve().parents[1]
WARMUP_S = 60.0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def main(seconds: float) -> int:
    pub = free_tcp_port()
    cmd = [
        sys.executable, "-m", "engine", "run", "--headless", "--source", "synth:happy", "--zmq-frames",
        "--zmq-pub", f"tcp://127.0.0.1:{pub}", "--zmq-ctl", f"tcp://127.0.0.1:{free_tcp_port()}",
        "--osc-in", "0", "--osc", f"127.0.0.1:{free_udp_port()}",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.connect(f"tcp://127.0.0.1:{pub}")
    sub.subscribe(b"frame")
    frames = 0
    samples: list[tuple[float, int]] = []
    start = time.monotonic()
    next_sample = start
    try:
        while time.monotonic() - start < seconds and proc.poll() is None:
            if sub.poll(100):
                while True:
                    try:
                        sub.recv_multipart(zmq.NOBLOCK)
                        frames += 1
                    except zmq.Again:
                        break
            if time.monotonic() >= next_sample:
                samples.append((time.monotonic() - start, rss_kib(proc.pid)))
                next_sample += 10.0
                if len(samples) % 30 == 0:  # a progress line every 5 min, so a cut-short run still tells
                    t, kib = samples[-1]
                    print(json.dumps({"t_s": round(t), "rss_mib": round(kib / 1024, 1), "frames": frames}), flush=True)
    finally:
        alive = proc.poll() is None
        if alive:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        sub.close(linger=0)
        ctx.term()
    after_warmup = next((kib for t, kib in samples if t >= WARMUP_S), samples[0][1] if samples else 0)
    end = samples[-1][1] if samples else 0
    growth = 100.0 * (end - after_warmup) / after_warmup if after_warmup else float("nan")
    report = {
        "seconds": round(time.monotonic() - start, 1),
        "frames_received": frames,
        "rss_after_warmup_mib": round(after_warmup / 1024, 1),
        "rss_end_mib": round(end / 1024, 1),
        "rss_max_mib": round(max((k for _, k in samples), default=0) / 1024, 1),
        "growth_percent": round(growth, 2),
        "alive_until_end": alive,
        "exit_code": proc.returncode,
        "last_line": err.strip().splitlines()[-1] if err.strip() else "",
    }
    print(json.dumps(report))
    return 0 if alive and proc.returncode == 0 and growth <= 5.0 else 1


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 3600.0))
