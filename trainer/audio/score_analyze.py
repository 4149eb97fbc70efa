"""Score `synesthesia analyze --json` output against labels in the corpora's own file names.

    synesthesia analyze --json FILES... | python -m trainer.audio.score_analyze [--taxonomy default]

Reads the per-file summary lines, recovers each file's emotion from its name (RAVDESS, CREMA-D, TESS,
SAVEE, EmoDB naming), maps it through the taxonomy and prints file-level accuracy and macro-F1 as JSON.
Files whose emotion the taxonomy drops are skipped and counted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from trainer.audio.corpora import identify_clip
from trainer.audio.taxonomy import get_taxonomy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.audio.score_analyze", description=__doc__.splitlines()[0])
    parser.add_argument("--taxonomy", default="default")
    args = parser.parse_args(argv)
    taxonomy = get_taxonomy(args.taxonomy)
    truth: list[str] = []
    pred: list[str] = []
    skipped = 0
    for line in sys.stdin:
        rec = json.loads(line)
        if not rec.get("summary"):
            continue
        clip = identify_clip(Path(rec["file"]).stem)
        label = taxonomy.class_of(clip[2]) if clip else None
        if label is None:
            skipped += 1
            continue
        truth.append(label)
        pred.append(rec["label"] or "silent")
    if not truth:
        print("no scorable files on stdin", file=sys.stderr)
        return 2
    f1s = []
    for c in taxonomy.classes:
        tp = sum(t == c and p == c for t, p in zip(truth, pred, strict=True))
        fp = sum(t != c and p == c for t, p in zip(truth, pred, strict=True))
        fn = sum(t == c and p != c for t, p in zip(truth, pred, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    accuracy = sum(t == p for t, p in zip(truth, pred, strict=True)) / len(truth)
    print(
        json.dumps(
            {
                "files": len(truth),
                "skipped": skipped,
                "accuracy": round(accuracy, 4),
                "macro_f1": round(sum(f1s) / len(f1s), 4),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
