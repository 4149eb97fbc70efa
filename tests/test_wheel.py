"""A non-editable install (a built wheel in a fresh venv) has its default bundle and runs `synesthesia
analyze` from outside the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _site_packages(prefix: Path) -> Path:
    return Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_built_wheel_installed_in_a_fresh_venv_runs_analyze(tmp_path: Path) -> None:
    sf = pytest.importorskip("soundfile")
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)]
    subprocess.run([*build, str(ROOT)], check=True, cwd=tmp_path)
    (wheel,) = dist.glob("synesthesia-*.whl")

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # install first, so pip sees no synesthesia at all; then borrow the test venv's dependencies (torch, ...)
    # through a path line: it does not run that directory's .pth files, so the editable install stays off
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, env=env)
    outer = _site_packages(Path(sys.prefix))
    (_site_packages(env_dir) / "zz_test_deps.pth").write_text(f"{outer}\n")

    rng = np.random.default_rng(0)
    t = np.arange(4 * 22050) / 22050
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(6 * np.pi * t)) + 0.01 * rng.standard_normal(t.size)
    wav = tmp_path / "tone.wav"
    sf.write(wav, tone.astype(np.float32), 22050)

    where = subprocess.run(
        [py, "-c", "import engine.models.bundle as b; print(b.__file__); print(b.DEFAULT_BUNDLE)"],
        check=True, cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    module_file, bundle_dir = (Path(line) for line in where.stdout.split())
    assert module_file.is_relative_to(env_dir) and bundle_dir.is_relative_to(env_dir)
    assert (bundle_dir / "manifest.json").is_file()
    page = module_file.parents[1] / "web" / "static" / "index.html"  # the web console's page is package data
    assert page.is_file() and "<html" in page.read_text(encoding="utf-8").lower()

    cli = env_dir / "bin" / "synesthesia"
    out = subprocess.run(
        [cli, "analyze", str(wav), "--json", "--backend", "onnx", "--device", "cpu"],
        cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    windows = [r for r in rows if not r.get("summary")]
    assert windows and all("label" in r for r in windows)
    assert any(r.get("summary") for r in rows)
