"""`synesthesia-train` command line (docs/design.md §8-9).

Convention for subcommands: each one lives in its own module that exposes

    add_arguments(parser: argparse.ArgumentParser) -> None   # declare its flags
    run(args: argparse.Namespace) -> int                     # do the work, return the exit status

and is imported only when that subcommand is used, so `synesthesia-train --help` stays fast and a
subcommand whose module is not in this build says so in one line. `args.command_line` holds the exact
command, for reports. A SynesthesiaError becomes a one-line message and its exit code.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import shlex
import sys
from collections.abc import Sequence

from engine.errors import MissingDependencyError, SynesthesiaError

# name -> (module, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "audio": ("trainer.audio.train", "train an audio emotion encoder (one of seven families)"),
    "hpo": ("trainer.audio.hpo", "Optuna search over encoder hyper-parameters (shared study database)"),
    "baseline": ("trainer.audio.baseline", "handcrafted-feature SVM under the encoders' fold protocol (reference row)"),
    "compare": ("trainer.audio.compare", "all seven families under one protocol on one split: table and plots"),
    "align": ("trainer.space.align", "align audio and art in the shared space (contrastive)"),
    "gan": ("trainer.gan.train", "train the conditional GAN on the art corpus"),
    "cascade": ("trainer.gan.cascade", "train a cascade generator's refiner (64 px base -> 256 px) and join them"),
    "upsampler": ("trainer.gan.upsampler", "train the small display up-sampler (x2/x4) on the procedural corpus"),
    "export": ("trainer.bundle.export_cli", "checkpoint -> model bundle (ONNX + parity check, TensorRT when present)"),
    "evaluate": ("trainer.bundle.evaluate", "evaluate a bundle on labelled audio: accuracy, macro-F1, VA"),
    "default": ("trainer.bundle.default", "reproduce the default bundle from the shared corpora and procedural data"),
}


# import name -> PyPI name of what the `train` extra (pyproject.toml) adds to the engine's dependencies
TRAIN_EXTRA = {
    "optuna": "optuna",
    "matplotlib": "matplotlib",
    "sklearn": "scikit-learn",
    "tqdm": "tqdm",
    "onnxscript": "onnxscript",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: lists the subcommands (their flags come from their modules)."""
    parser = argparse.ArgumentParser(prog="synesthesia-train", description="Train and export Synesthesia models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, text) in COMMANDS.items():
        sub.add_parser(name, help=text, description=text, add_help=False)
    return parser


def command_parser(name: str):
    """(module, parser) for one subcommand; SynesthesiaError when its module is not in this build."""
    module_name, text = COMMANDS[name]
    if importlib.util.find_spec(module_name) is None:
        raise SynesthesiaError(f"synesthesia-train {name}: not available in this build ({module_name} is missing)")
    module = importlib.import_module(module_name)
    if not (hasattr(module, "add_arguments") and hasattr(module, "run")):
        raise SynesthesiaError(f"synesthesia-train {name}: {module_name} has no add_arguments/run entry point")
    parser = argparse.ArgumentParser(prog=f"synesthesia-train {name}", description=text)
    module.add_arguments(parser)
    return module, parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv)  # prints help or the usage error and exits
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        module, parser = command_parser(argv[0])
        args = parser.parse_args(argv[1:])
        args.command_line = "synesthesia-train " + shlex.join(argv)
        return int(module.run(args) or 0)
    except SynesthesiaError as exc:
        print(f"synesthesia-train: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ImportError as exc:  # a module of the `train` extra (imported where first needed) is missing
        root = (exc.name or "").split(".")[0]
        if root not in TRAIN_EXTRA:
            raise
        print(
            f"synesthesia-train: error: {TRAIN_EXTRA[root]} is not installed; the trainer needs the `train` extra: "
            "pip install -e '.[train]' (from a checkout) or pip install 'synesthesia[train]'",
            file=sys.stderr,
        )
        return MissingDependencyError.exit_code


if __name__ == "__main__":
    sys.exit(main())
