"""Build hook only (pyproject.toml holds the configuration): ship the repository's top-level
`assets/default/` bundle inside the built package as `engine/_assets/default`, so a non-editable
`pip install .` has its default bundle (engine/assets.py finds it there)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUNDLE = Path(__file__).resolve().parent / "assets" / "default"


class BuildPyWithBundle(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads assets/default in the checkout itself
        if not (BUNDLE / "manifest.json").is_file():
            raise SystemExit(f"{BUNDLE}/manifest.json is missing: build the default bundle before packaging")
        target = Path(self.build_lib) / "engine" / "_assets" / "default"
        shutil.rmtree(target, ignore_errors=True)  # no stale files from an earlier build
        shutil.copytree(BUNDLE, target)


setup(cmdclass={"build_py": BuildPyWithBundle})
