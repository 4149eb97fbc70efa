"""One checkpoint format, written atomically: a crash mid-write leaves the previous file loadable."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from engine.atomicfile import atomic_path, atomic_write_bytes
from engine.errors import BundleError
from engine.models.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip_checks_kind_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "run" / "state.pt"
    save_checkpoint({"kind": "demo", "step": 3, "w": torch.ones(2)}, path)
    ckpt = load_checkpoint(path, "demo", required=("step",))
    assert ckpt["step"] == 3 and torch.equal(ckpt["w"], torch.ones(2))
    with pytest.raises(BundleError, match="expected 'gan'"):
        load_checkpoint(path, "gan")
    with pytest.raises(BundleError, match="lacks 'history'"):
        load_checkpoint(path, required=("history",))
    with pytest.raises(ValueError, match="kind"):
        save_checkpoint({"step": 1}, path)


def test_damaged_file_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    path.write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(BundleError, match=r"state\.pt: cannot read checkpoint"):
        load_checkpoint(path)


def test_exception_mid_write_keeps_previous(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    save_checkpoint({"kind": "demo", "step": 1}, path)
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_bytes(b"half a file")
        raise RuntimeError("disk full")
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]  # the temporary is gone


def test_process_killed_mid_write_keeps_previous(tmp_path: Path) -> None:
    """A real crash: the writing process dies (os._exit) after half the bytes are on disk."""
    path = tmp_path / "state.pt"
    save_checkpoint({"kind": "demo", "step": 1, "w": torch.zeros(1000)}, path)
    script = textwrap.dedent(
        f"""
        import os, torch
        from engine.models import checkpoint

        def dying_save(obj, f, *a, **k):
            with open(f, "wb") as fh:
                fh.write(b"PK" * 5000)
                fh.flush()
            os._exit(9)

        checkpoint.torch.save = dying_save
        checkpoint.save_checkpoint({{"kind": "demo", "step": 2}}, {str(path)!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[1], check=False)
    assert proc.returncode == 9
    assert load_checkpoint(path)["step"] == 1


def test_atomic_bytes_are_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "cache.bin"
    atomic_write_bytes(path, b"abc")
    assert path.read_bytes() == b"abc"
    assert path.stat().st_mode & 0o044 == 0o044
