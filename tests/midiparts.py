"""Real MIDI for tests: a private JACK server (dummy driver) and rtmidi virtual ports on it.

This machine (and CI's) has no /dev/snd, so the ALSA sequencer is out of reach; rtmidi's JACK API needs
only a running JACK server. `JackServer` runs `jackd --no-realtime -d dummy` under a name of its own
(`-n`), so it never meets another JACK server on the machine; clients find it through `env`
(`JACK_DEFAULT_SERVER`, and `JACK_NO_START_SERVER` so that no client ever starts a server of its own).
Virtual output ports opened by a test show up as input ports that the engine connects to, exactly as a
hardware controller's port would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.realparts import spawn, stop_process

START_TIMEOUT_S = 10


def missing_jack() -> str | None:
    for tool in ("jackd", "jack_wait"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install jackd2)"
    try:
        import mido  # noqa: F401
        import rtmidi
    except ImportError as exc:
        return f"the midi extra is not installed ({exc}): pip install 'synesthesia[midi]'"
    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        return "this python-rtmidi was built without JACK"
    return None


class JackServer:
    def __init__(self) -> None:
        self.name = f"syn_test_{os.getpid()}"
        self.proc: subprocess.Popen | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="syn-jack-")
        self.log_path = Path(self._dir.name) / "jackd.log"

    @property
    def env(self) -> dict[str, str]:
        return {"JACK_DEFAULT_SERVER": self.name, "JACK_NO_START_SERVER": "1"}

    def client_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def start(self) -> JackServer:
        env = {**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"}
        log = self.log_path.open("w")
        cmd = ["jackd", "-n", self.name, "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "256"]
        self.proc = spawn(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait = ["jack_wait", "-s", self.name, "-w", "-t", str(START_TIMEOUT_S)]
        ok = subprocess.run(wait, env=self.client_env(), capture_output=True, timeout=START_TIMEOUT_S + 5)
        if ok.returncode != 0 or self.proc.poll() is not None:
            self.close()
            raise RuntimeError(f"jackd did not start: {self.log_path.read_text()[-2000:]}")
        return self

    def close(self) -> None:
        stop_process(self.proc)
        self.proc = None
        self._dir.cleanup()


def jack_backend():
    """mido's rtmidi backend on JACK (the test's own ports: virtual outputs that play a controller)."""
    import mido

    return mido.Backend("mido.backends.rtmidi", api="UNIX_JACK", load=True)
