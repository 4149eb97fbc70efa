"""Lazy imports of optional or heavy dependencies, with one-line install hints."""

from __future__ import annotations

import importlib
from types import ModuleType

from engine.errors import MissingDependencyError

# module -> what to install when it is missing
_HINTS: dict[str, str] = {
    "sounddevice": "PortAudio: `apt-get install libportaudio2` (and `pip install sounddevice`)",
    "pygame": "`pip install pygame`",
    "torch_tensorrt": "the TensorRT extra: `pip install 'synesthesia[tensorrt]'`",
    "optuna": "the training extra: `pip install 'synesthesia[train]'`",
    "matplotlib": "the training extra: `pip install 'synesthesia[train]'`",
    "sklearn": "the training extra: `pip install 'synesthesia[train]'`",
    "tqdm": "the training extra: `pip install 'synesthesia[train]'`",
    "onnxruntime": "`pip install onnxruntime` (or onnxruntime-gpu)",
    "zmq": "`pip install pyzmq`",
    "pythonosc": "`pip install python-osc`",
    "mido": "the MIDI extra: `pip install 'synesthesia[midi]'`",
    "rtmidi": "the MIDI extra: `pip install 'synesthesia[midi]'`",
    "cyndilib": "the NDI extra: `pip install 'synesthesia[ndi]'` (its wheel carries the NDI runtime)",
    "SpoutGL": "the Spout extra (Windows only): `pip install 'synesthesia[spout]'` (SpoutGL)",
    "syphon": "the Syphon extra (macOS only): `pip install 'synesthesia[syphon]'` (syphon-python)",
    "av": "the video extra: `pip install 'synesthesia[video]'`",
}


def require(module: str, purpose: str = "") -> ModuleType:
    """Import `module` or raise MissingDependencyError naming what to install.

    sounddevice raises OSError (not ImportError) when the PortAudio library is absent; both count as
    missing.
    """
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:
        hint = _HINTS.get(module.split(".")[0], f"`pip install {module}`")
        what = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(
            f"{module} is needed{what} but cannot be imported ({exc}); install {hint}"
        ) from exc
