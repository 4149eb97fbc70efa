"""Every command is described by --help, through the installed entry points' modules."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMANDS = ["run", "devices", "analyze", "bench", "check"]
TRAIN_COMMANDS = ["audio", "hpo", "compare", "align", "gan", "export", "evaluate", "default"]


def helptext(module: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", module, *args, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_top_level_help_lists_every_command() -> None:
    text = helptext("engine")
    for cmd in COMMANDS:
        assert cmd in text


@pytest.mark.parametrize("cmd", COMMANDS)
def test_command_help(cmd: str) -> None:
    assert "usage: synesthesia " + cmd in helptext("engine", cmd)


def test_run_help_has_every_design_flag() -> None:
    text = helptext("engine", "run")
    for flag in [
        "--config",
        "--source",
        "--headless",
        "--fullscreen",
        "--display",
        "--bundle",
        "--backend",
        "--device",
        "--osc",
        "--osc-in",
        "--zmq-pub",
        "--zmq-ctl",
        "--kiosk",
        "--duration",
    ]:
        assert flag in text


def test_train_help_lists_every_command() -> None:
    text = helptext("trainer.cli")
    for cmd in TRAIN_COMMANDS:
        assert cmd in text


def test_import_engine_is_light() -> None:
    """`import engine` pulls in no torch, PortAudio, pygame or TensorRT."""
    heavy = "('torch', 'sounddevice', 'pygame', 'torch_tensorrt')"
    code = f"import sys, engine, engine.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    assert out == "[]"


def test_training_without_the_train_extra_names_the_extra(tmp_path) -> None:
    # scikit-learn made unimportable, as in an install without `[train]`
    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "from trainer.cli import main\n"
        f"sys.exit(main(['audio', '--data', 'synthetic:3', '--epochs', '1', '--out', {str(tmp_path)!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr[-1500:]
    assert "scikit-learn is not installed" in proc.stderr and "synesthesia[train]" in proc.stderr
    assert "Traceback" not in proc.stderr
