"""A preview bundle: a finished bundle with the EMA generator of a GAN run at whatever step it has reached.

    python -m trainer.bundle.preview runs/gan256/gan_last.pt --from assets/default --out runs/preview
    python -m trainer.bundle.preview runs/cascade/generator_ema.pt --from assets/default --out runs/preview

For looking at a run in the real engine (`synesthesia run --bundle runs/preview`, screenshots) before it is
finished: the audio model, art index and art encoder are the source bundle's (the run must have been trained
in its art space), the generator is exported to ONNX with the usual parity check (no up-sampler: the
source's fits its own generator size), and `metrics.art` says that
the art metrics are the source bundle's, not this generator's (`metrics.art.preview`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from engine.models.bundle import MANIFEST, load_bundle
from engine.models.checkpoint import load_checkpoint, load_generator
from trainer.bundle.export import write_bundle
from trainer.gan.train import ema_generator_from_checkpoint, load_gan_checkpoint
from trainer.space.data import load_audio_bundle


def write_preview(checkpoint: Path, source: Path, out: Path) -> Path:
    """Write `out` (replaced if present) and return it. `checkpoint`: a GAN run's gan_last.pt, or a generator
    checkpoint such as a cascade's generator_ema.pt (`synesthesia-train cascade`)."""
    if load_checkpoint(checkpoint).get("kind") == "generator":
        G = load_generator(checkpoint).eval()
        step = int(load_checkpoint(checkpoint, "generator").get("cascade", {}).get("step", 0))
    else:
        ckpt = load_gan_checkpoint(checkpoint)
        step = int(ckpt["step"])
        G = ema_generator_from_checkpoint(ckpt)
    bundle = load_bundle(source)
    if bundle.manifest.shared_dim != G.config.cond_dim:
        raise SystemExit(
            f"{checkpoint}: the generator takes {G.config.cond_dim}-d conditions, {source} has a "
            f"{bundle.manifest.shared_dim}-d shared space"
        )
    raw = json.loads((bundle.path / MANIFEST).read_text(encoding="utf-8"))
    ab = load_audio_bundle(source)
    art = dict(raw.get("metrics", {}).get("art", {}))
    art["preview"] = {
        "generator_from": str(checkpoint),
        "step": step,
        "note": "the art metrics above are the source bundle's generator's; this one's are not measured here "
        "(python -m trainer.gan.quality --checkpoint CHECKPOINT SOURCE)",
    }
    with tempfile.TemporaryDirectory() as tmp:
        extra = {}
        for name in ("art_encoder.pt",):
            if (bundle.path / name).is_file():
                extra[name] = Path(tmp) / name
                shutil.copyfile(bundle.path / name, extra[name])
        write_bundle(
            out,
            name=f"{raw['name']}-preview-step{step}",
            audio_model=ab.audio_model,
            classes=raw["classes"],
            frontend=ab.frontend,
            mel_mean=ab.mel_mean,
            mel_std=ab.mel_std,
            generator=G,
            upsampler=None,  # one trained for the source's generator size would not fit: smoothscale
            art_index=bundle.art_index(),
            metrics={**raw.get("metrics", {}), "art": art},
            data=raw.get("data", {}),
            license=raw.get("license", "unspecified"),
            extra_files=extra,
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.bundle.preview", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a GAN run's gan_last.pt, or a generator (generator_ema.pt)")
    parser.add_argument("--from", dest="source", type=Path, default=Path("assets/default"), help="source bundle")
    parser.add_argument("--out", type=Path, default=Path("runs/preview"))
    args = parser.parse_args(argv)
    out = write_preview(args.checkpoint, args.source, args.out)
    print(f"wrote {out}: {load_bundle(out).manifest.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
