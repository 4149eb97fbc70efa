"""`synesthesia-train` command line (DESIGN.md §8-9).

Each implemented command is a module with `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from engine.errors import SynesthesiaError

COMMANDS = {
    "audio": "train an audio emotion encoder (one of seven families)",
    "hpo": "Optuna search over encoder hyper-parameters (shared study database)",
    "compare": "all seven families under one protocol on one split: table and plots",
    "align": "align audio and art in the shared space (contrastive)",
    "gan": "train the conditional GAN on the art corpus",
    "export": "export trained networks into a model bundle (ONNX + parity check, TensorRT when present)",
    "evaluate": "evaluate a bundle: accuracy, macro-F1, VA, retrieval, GAN metrics",
    "default": "reproduce the whole default bundle from ../shared/data and the procedural corpora",
}

MODULES = {
    "align": "trainer.align",
    "gan": "trainer.gan",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synesthesia-train", description="Train and export Synesthesia models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in COMMANDS.items():
        sp = sub.add_parser(name, help=text, description=text)
        if name in MODULES:
            importlib.import_module(MODULES[name]).add_arguments(sp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command not in MODULES:
            raise SynesthesiaError(f"synesthesia-train {args.command}: not available in this build yet")
        return int(importlib.import_module(MODULES[args.command]).run(args))
    except SynesthesiaError as exc:
        print(f"synesthesia-train: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
