"""Where the default model bundle is: inside the installed package, or in the source checkout.

The repository keeps the bundle at top-level `assets/default/`; a (non-editable) build copies it into the
package as `engine/_assets/default` (setup.py), because an installed package cannot reach the checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PACKAGED_DIR = ("_assets", "default")


def default_bundle() -> Path:
    """The packaged bundle when this is an installed build, else the checkout's `assets/default`."""
    packaged = resources.files("engine").joinpath(*PACKAGED_DIR)
    if packaged.is_dir():
        return Path(str(packaged))  # a regular (unzipped) package: the resource is a real directory
    return Path(__file__).resolve().parents[1] / "assets" / "default"


DEFAULT_BUNDLE = default_bundle()
