"""The installation kit: venue presets validate against the config schema; launcher, unit and TouchDesigner kit."""

from __future__ import annotations

import ast
import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.config import load_config
from engine.controls import Controls

INSTALL = Path(__file__).resolve().parents[1] / "installation"
PRESETS = sorted((INSTALL / "configs").glob("*.toml"))


def test_the_three_presets_exist() -> None:
    assert {p.stem for p in PRESETS} >= {"gallery", "kiosk", "performance"}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_validates(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.render.fullscreen
    assert cfg.osc.enabled and cfg.osc.in_port


def test_presets_say_what_they_are_for() -> None:
    gallery = load_config(INSTALL / "configs" / "gallery.toml")
    kiosk = load_config(INSTALL / "configs" / "kiosk.toml")
    perf = load_config(INSTALL / "configs" / "performance.toml")
    assert gallery.osc.targets and not gallery.render.hud
    assert kiosk.kiosk.enabled and not kiosk.render.hud and kiosk.kiosk.log_file.endswith(".log")
    assert perf.render.hud and perf.render.display == 1
    assert perf.audio.hop_s < gallery.audio.hop_s and perf.render.condition_tau_s < gallery.render.condition_tau_s


def test_kiosk_launcher_is_valid_bash_and_runs_the_kiosk_preset() -> None:
    script = INSTALL / "kiosk.sh"
    assert os.access(script, os.X_OK)
    bash = shutil.which("bash")
    if bash:
        subprocess.run([bash, "-n", str(script)], check=True)
    text = script.read_text()
    assert "--kiosk" in text and "configs/kiosk.toml" in text and "SDL_VIDEO_MINIMIZE_ON_FOCUS_LOSS" in text


def test_systemd_unit_restarts_always_and_starts_the_launcher() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(INSTALL / "systemd" / "synesthesia.service")
    service = unit["Service"]
    assert service["Restart"] == "always"
    assert service["ExecStart"].endswith("installation/kiosk.sh")
    assert "WantedBy" in unit["Install"]


def test_touchdesigner_script_has_the_callbacks_and_the_readme_every_control() -> None:
    tree = ast.parse((INSTALL / "touchdesigner" / "synesthesia_td.py").read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert {"onValueChange", "onReceiveOSC", "override", "override_va", "release", "query"} <= functions
    readme = (INSTALL / "touchdesigner" / "README.md").read_text()
    for name in Controls.NAMES:
        assert f"/syn/ctl/{name}" in readme or f"syn/ctl/{name}" in readme, name
    assert "Address Scope" in readme and "/syn/*" in readme
