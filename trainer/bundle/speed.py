"""Frame rate of an exported generator through ONNX Runtime on the CPU: `python -m trainer.bundle.speed`.

`generator_speed` times one ONNX file; `measure_generator_speed` exports a generator (and the default-size
one) and times both, for the bundle's `metrics.art.generator_speed`. Writes only temporary files.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.models.generator import Generator, GeneratorConfig
from trainer.bundle.export import export_onnx


def generator_speed(
    onnx_path: str | Path, z_dim: int, cond_dim: int, *, threads: Sequence[int] = (1, 2), frames: int = 200
) -> dict[str, Any]:
    """Frames per second of a generator ONNX file through ONNX Runtime on the CPU, batch 1.

    Per thread count: the median wall time per frame (what a display loop sees, inflated when other work
    shares the cores) and the process CPU time per frame (the work itself; with one thread, the frame rate
    one free core sustains).
    """
    import onnxruntime as ort  # optional at run time: only the speed measurement needs it

    rng = np.random.default_rng(0)
    feeds = {
        "z": rng.standard_normal((1, z_dim), dtype=np.float32),
        "c": (lambda c: c / np.linalg.norm(c))(rng.standard_normal((1, cond_dim), dtype=np.float32)),
    }
    out: dict[str, Any] = {"frames": frames, "backend": f"onnxruntime {ort.__version__} CPUExecutionProvider"}
    for n in threads:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = n
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        for _ in range(20):
            session.run(None, feeds)
        wall = []
        cpu0 = time.process_time()
        for _ in range(frames):
            t = time.perf_counter()
            session.run(None, feeds)
            wall.append(time.perf_counter() - t)
        cpu_ms = (time.process_time() - cpu0) / frames * 1000
        median = float(np.median(wall)) * 1000
        out[f"threads_{n}"] = {
            "wall_ms_median": round(median, 3),
            "wall_fps": round(1000 / median, 1),
            "cpu_ms_per_frame": round(cpu_ms, 3),
        }
        if n == 1:
            out["fps_one_free_core"] = round(1000 / cpu_ms, 1)
    return out


def measure_generator_speed(generator: Generator, frames: int = 300) -> dict[str, Any]:
    """ONNX Runtime frame rate of this generator and of the 128 px default-size one (untrained weights:
    speed does not depend on them), on 1 and 2 threads. Wall times depend on what else runs on the cores;
    CPU time per frame does not (much)."""
    out: dict[str, Any] = {}
    g128 = Generator(GeneratorConfig(resolution=128, base_channels=8)).eval()
    with tempfile.TemporaryDirectory() as tmp:
        for name, G in (("bundle_generator", generator.eval()), ("default_config_128px", g128)):
            cfg = G.config
            path = Path(tmp) / f"{name}.onnx"
            example = [torch.zeros(1, cfg.z_dim), torch.zeros(1, cfg.cond_dim)]
            export_onnx(G, example, path, G.input_names, G.output_names, atol=1e-3)
            out[name] = {
                "resolution": cfg.resolution,
                **generator_speed(path, cfg.z_dim, cfg.cond_dim, frames=frames),
            }
    out["command"] = "python -m trainer.bundle.speed assets/default; python -m trainer.bundle.speed --resolution 128"
    return out


def speed_main(argv: Sequence[str] | None = None) -> int:
    """`python -m trainer.bundle.speed [ONNX | BUNDLE] [--resolution R --base-channels C]`: generator frame rate.

    With a bundle or ONNX file, that generator; without, an untrained generator of the given size (speed
    does not depend on the weights), exported to ONNX first.
    """
    parser = argparse.ArgumentParser(prog="python -m trainer.bundle.speed", description=speed_main.__doc__)
    parser.add_argument("target", nargs="?", type=Path, help="generator.onnx or a bundle directory")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--base-channels", type=int, default=8)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", default="1,2", help="comma-separated ONNX Runtime intra-op thread counts")
    args = parser.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    if args.target is not None:
        path = args.target / "generator.onnx" if args.target.is_dir() else args.target
        import onnx

        model = onnx.load(str(path))
        dims = {i.name: i.type.tensor_type.shape.dim[1].dim_value for i in model.graph.input}
        result = generator_speed(path, dims["z"], dims["c"], threads=threads, frames=args.frames)
        result["generator"] = str(path)
    else:
        cfg = GeneratorConfig(resolution=args.resolution, base_channels=args.base_channels)
        G = Generator(cfg).eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "generator.onnx"
            export_onnx(G, [torch.zeros(1, cfg.z_dim), torch.zeros(1, cfg.cond_dim)], path, G.input_names,
                        G.output_names, atol=1e-3)  # fmt: skip
            result = generator_speed(path, cfg.z_dim, cfg.cond_dim, threads=threads, frames=args.frames)
        result["generator"] = f"untrained {cfg.model_dump()}"
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(speed_main())
