"""Soak run (not collected by pytest): the engine listens to a private PulseAudio null sink for a while.

    python -m tests.soak [SECONDS]      # default 600

Plays procedural speech and music (15 s per emotion, looped) into the sink, runs
`synesthesia run --headless --source mic` on its monitor for SECONDS, and prints the last `status`
message's source, analysis and sender counters (overflows, dropped samples, skipped hops, queue drops).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import zmq

from engine.audio.synth import synthesize
from tests.realparts import PulseServer

ROOT = Path(__file__).resolve().parents[1]


def main(seconds: float) -> int:
    srv = PulseServer().start()
    try:
        parts = [("happy", "speech"), ("sad", "music"), ("angry", "speech"), ("neutral", "music")]
        clip = np.concatenate([synthesize(c, kind=k, duration_s=15.0, seed=i) for i, (c, k) in enumerate(parts)])
        playback = srv.play(np.tile(clip, int(seconds // 60) + 2), 22050)
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.connect("tcp://127.0.0.1:15656")
        sub.subscribe(b"status")
        cmd = [
            sys.executable,
            "-m",
            "engine",
            "run",
            "--headless",
            "--source",
            "mic",
            "--duration",
            str(seconds),
            "--osc-in",
            "0",
            "--zmq-pub",
            "tcp://127.0.0.1:15656",
            "--zmq-ctl",
            "tcp://127.0.0.1:15657",
        ]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=srv.client_env(), stdout=subprocess.DEVNULL)
        last: dict = {}
        while proc.poll() is None:
            if sub.poll(1000):
                last = json.loads(sub.recv_multipart()[1])
        playback.stop()
        sub.close(linger=0)
        ctx.term()
        keep = {
            "uptime_s": last.get("uptime_s"),
            "source": last.get("source"),
            "analysis": last.get("analysis"),
            "sender_queue": last.get("sender", {}).get("queue"),
            "exit": proc.returncode,
        }
        print(json.dumps(keep, indent=1, default=str))
        return proc.returncode
    finally:
        srv.close()


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 600.0))
