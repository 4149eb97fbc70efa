"""Measure start-up as a visitor sees it: command -> first drawn frame -> first heard emotion on screen.

    .venv/bin/python -m tests.measure_startup [SOURCE] [RUNS]   (default synth:happy 3; needs Xvfb)

Starts `synesthesia run --source SOURCE` in a 1280x720 window on a private Xvfb, reads the framebuffer
every 50 ms and an OSC receiver, and prints per run: the first non-black frame, the first
/syn/emotion/label, and the moment the screen first changes by more than a threshold after that label
(the heard emotion reaching the picture), in seconds after the command.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

from tests.netparts import OscReceiver
from tests.realparts import XvfbServer


def one_run(source: str, duration_s: float = 8.0) -> dict[str, float | None]:
    with XvfbServer(1280, 720) as x:
        rx = OscReceiver()
        env = {**os.environ, **x.env}
        env.pop("SDL_VIDEODRIVER", None)
        cmd = [sys.executable, "-m", "engine", "run", "--source", source, "--duration", str(duration_s)]
        cmd += ["--osc", f"127.0.0.1:{rx.port}", "--osc-in", "0", "--zmq-pub", "tcp://127.0.0.1:*"]
        cmd += ["--zmq-ctl", "tcp://127.0.0.1:*"]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first_frame = None
        shots: list[tuple[float, np.ndarray]] = []
        while proc.poll() is None:
            img = x.screenshot()
            t = time.monotonic() - t0
            if first_frame is None and img.max() > 0:
                first_frame = t
            if first_frame is not None:
                shots.append((t, img[::8, ::8].astype(np.int16)))
            time.sleep(0.05)
        labels = rx.received("/syn/emotion/label")
        rx.close()
    first_label = labels[0][0] - t0 if labels else None
    on_screen = None
    if first_label is not None and shots:
        before = [img for t, img in shots if t <= first_label]
        ref = before[-1] if before else shots[0][1]
        on_screen = next((t for t, img in shots if t > first_label and np.abs(img - ref).mean() > 8.0), None)
    return {"first_frame_s": first_frame, "first_label_s": first_label, "emotion_on_screen_s": on_screen}


def main() -> int:
    source = sys.argv[1] if len(sys.argv) > 1 else "synth:happy"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    for i in range(runs):
        r = one_run(source)
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} -" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
