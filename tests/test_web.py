"""The web console: a real engine, a real headless Chromium (Selenium + Debian's chromium-driver), a real OSC
`/syn/ctl/query` to see the engine obey, and the token refused off localhost."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from engine.config import build_config
from engine.errors import ConfigError
from tests.test_engine import no_audio_env

ROOT = Path(__file__).resolve().parents[1]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(bundle: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "engine", "run", "--headless", "--zmq-frames", "--bundle", str(bundle)]
    cmd += ["--source", "synth:happy", "--duration", "120", "--osc", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"]
    cmd += ["--zmq-pub", "tcp://127.0.0.1:*", "--zmq-ctl", "tcp://127.0.0.1:*", *args]
    env = {**no_audio_env(), "SDL_VIDEODRIVER": "dummy"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60.0, headers: dict | None = None) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"the engine ended: {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def osc_query(port: int) -> dict[str, list]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(10)
        s.sendto(OscMessageBuilder(address="/syn/ctl/query").build().dgram, ("127.0.0.1", port))
        data = s.recv(65536)
    return {m.message.address: list(m.message.params) for m in OscPacket(data).messages}


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


@pytest.fixture
def browser() -> Iterator[object]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("no chromium/chromedriver (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1100"):
        opts.add_argument(arg)
    b = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        yield b
    finally:
        b.quit()


@pytest.mark.slow
def test_console_in_chromium_shows_status_switches_preset_and_the_engine_obeys(
    full_bundle: Path, browser, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    web, osc_in = free_port(), free_port(socket.SOCK_DGRAM)
    proc = launch(full_bundle, "--web", str(web), "--osc-in", str(osc_in))
    try:
        assert wait_http(f"http://127.0.0.1:{web}/", proc) == 200
        browser.get(f"http://127.0.0.1:{web}/")
        wait = WebDriverWait(browser, 40, poll_frequency=0.2)
        wait.until(lambda b: b.find_element(By.ID, "conn").text == "live")
        # the status updates: a label is heard and the uptime moves on
        wait.until(lambda b: b.find_element(By.ID, "label").text not in ("–", "listening", ""))
        first = browser.find_element(By.ID, "uptime").text
        wait.until(lambda b: b.find_element(By.ID, "uptime").text != first)
        assert browser.find_element(By.ID, "fps").text.endswith("fps")
        # a preset, applied live: gallery.toml sets render.speed = 0.8 (a control, visible to /syn/ctl/query)
        Select(browser.find_element(By.ID, "preset")).select_by_visible_text("gallery")
        browser.find_element(By.ID, "preset_go").click()
        wait.until(lambda b: "gallery" in b.find_element(By.ID, "preset_now").text)
        assert abs(osc_query(osc_in)["/syn/ctl/speed"][0] - 0.8) < 1e-6
        # freeze and blackout from the page; the engine says so over OSC
        browser.find_element(By.ID, "freeze").click()
        browser.find_element(By.ID, "blackout").click()
        end = time.monotonic() + 10
        while time.monotonic() < end:
            state = osc_query(osc_in)
            if state["/syn/ctl/freeze"][0] and state["/syn/ctl/blackout"][0]:
                break
            time.sleep(0.2)
        assert state["/syn/ctl/freeze"][0] and state["/syn/ctl/blackout"][0], state
        wait.until(lambda b: "on" in b.find_element(By.ID, "freeze").get_attribute("class"))
        # the live preview shows frames (it was taken before the blackout, or shows it)
        wait.until(lambda b: b.execute_script("return document.getElementById('preview').naturalWidth") > 0)
        shot = tmp_path / "console.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        # without a token the console answers to loopback names only: a DNS-rebound name is refused
        rebound = {"Host": f"evil.example:{web}"}
        assert wait_http(f"http://127.0.0.1:{web}/api/status", proc, headers=rebound) == 403
        assert wait_http(f"http://localhost:{web}/api/status", proc) == 200
    finally:
        err = stop(proc)
    assert "web console on http://127.0.0.1:" in err and "Traceback" not in err


def test_off_localhost_the_console_needs_its_token(full_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="token"):
        build_config({"web": {"enabled": True, "host": "0.0.0.0", "port": 8080}})
    web, token = free_port(), "s3cret-token-123"
    toml = tmp_path / "venue.toml"
    toml.write_text(f'[web]\ntoken = "{token}"\n')
    proc = launch(full_bundle, "--web", f"0.0.0.0:{web}", "--osc-in", "0", "--config", str(toml))
    try:
        url = f"http://127.0.0.1:{web}"
        assert wait_http(f"{url}/api/status", proc) == 401  # no token: refused
        body = json.dumps({"name": "freeze", "args": [1]}).encode()
        req = urllib.request.Request(f"{url}/api/control", data=body, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=5)
        assert refused.value.code == 401
        with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as r:
            status = json.loads(r.read())
        assert status["controls"]["freeze"] is False  # the refused request applied nothing
        headers = {"X-Synesthesia-Token": token}
        assert wait_http(f"{url}/api/status", proc, headers=headers) == 200
        assert wait_http(f"{url}/api/status", proc, headers={"X-Synesthesia-Token": token + "x"}) == 401
        # a page elsewhere making the operator's browser (which holds the token cookie) post a control
        cross = {"X-Synesthesia-Token": token, "Origin": "http://evil.example", "Content-Type": "text/plain"}
        req = urllib.request.Request(f"{url}/api/control", data=body, method="POST", headers=cross)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=5)
        assert refused.value.code == 403 and b"cross-origin" in refused.value.read()
        same = {**cross, "Origin": url}
        req = urllib.request.Request(f"{url}/api/control", data=body, method="POST", headers=same)
        with urllib.request.urlopen(req, timeout=5) as r:
            assert json.loads(r.read())["ok"] is True  # the console's own page is served from `url`
    finally:
        err = stop(proc)
    assert "token required" in err
