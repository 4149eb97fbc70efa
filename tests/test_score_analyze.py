"""Scoring analyze output against labels parsed from corpus file names."""

from __future__ import annotations

import json
import subprocess
import sys


def test_scores_summaries_by_file_name_labels() -> None:
    lines = [
        {"file": "a/03-01-05-01-01-01-12.wav", "t": 0.0, "label": "happy"},  # a window line: ignored
        {"file": "a/03-01-05-01-01-01-12.wav", "summary": True, "label": "angry"},  # angry, right
        {"file": "a/03-01-04-01-01-01-12.wav", "summary": True, "label": "neutral"},  # sad, wrong
        {"file": "b/16a01Fa.wav", "summary": True, "label": "happy"},  # EmoDB happy, right
        {"file": "b/16a01Ab.wav", "summary": True, "label": "happy"},  # EmoDB fear: dropped by default
    ]
    stdin = "".join(json.dumps(r) + "\n" for r in lines)
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.audio.score_analyze"], input=stdin, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["files"] == 3 and out["skipped"] == 1
    assert abs(out["accuracy"] - 2 / 3) < 1e-3
