"""The model bundle (docs/design.md §5): a directory with `manifest.json` and the files it lists.

The trainer writes bundles with `write_manifest`; the engine opens them with `load_bundle`, which checks
the format version, the required keys and the sha256 of every listed file. Every problem is a
BundleError naming the file or key.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.assets import DEFAULT_BUNDLE
from engine.audio.frontend_config import FrontEndConfig
from engine.errors import BundleError
from engine.models.configs import EncoderConfig, GeneratorConfig, UpsamplerConfig

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class AudioSection(FrontEndConfig):
    """Front-end settings plus the z-score statistics the encoder was trained with."""

    mel_mean: list[float] = Field(min_length=1)
    mel_std: list[float] = Field(min_length=1)


class EncoderSection(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    arch: str
    embedding_dim: int = Field(gt=0)
    parameters: int = Field(ge=0)
    onnx: str = Field(description="ONNX file: features -> logits, va, embedding, shared")
    torch: str | None = Field(None, description="checkpoint with config and state_dict of the AudioModel")
    config: EncoderConfig


class GeneratorSection(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    resolution: int
    z_dim: int
    onnx: str
    torch: str | None = None
    config: GeneratorConfig


class UpsamplerSection(BaseModel):
    """Optional learned display up-sampler: generator frames [B, 3, R, R] -> [B, 3, factor*R, factor*R]."""

    model_config = ConfigDict(extra="allow", frozen=True)

    factor: int
    onnx: str
    torch: str | None = None
    config: UpsamplerConfig


class ArtIndexSection(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    file: str = Field(description="npz with vectors [N, S], labels [N], ids [N], thumbnails [N, h, w, 3]")
    count: int = Field(ge=0)


class Manifest(BaseModel):
    """Validated manifest. Unknown top-level keys are kept (forward-compatible extras)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    format: int
    name: str
    created: str
    classes: list[str] = Field(min_length=2)
    audio: AudioSection
    encoder: EncoderSection
    shared_dim: int = Field(gt=0)
    generator: GeneratorSection | None = None
    art_index: ArtIndexSection | None = None
    upsampler: UpsamplerSection | None = None
    tensorrt: dict[str, str] = Field(default_factory=dict, description="cache key -> engine file")
    files: dict[str, str]
    metrics: dict[str, Any]
    data: dict[str, Any]
    license: str


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks (never the whole file in memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# (resolved path, size, mtime_ns, ctime_ns, inode) -> sha256, so a process that opens the same bundle twice
# (check, bench, an in-process restart) hashes its ~23 MB once; a write or a replacement changes the key.
_verified: dict[tuple[str, int, int, int, int], str] = {}
_verified_lock = threading.Lock()


def cached_sha256(path: Path) -> str:
    """sha256_file, remembered per (path, size, mtime, ctime, inode) for the life of the process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    with _verified_lock:
        known = _verified.get(key)
    if known is not None:
        return known
    digest = sha256_file(path)
    with _verified_lock:
        _verified[key] = digest
    return digest


def _key_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(root)"


class Bundle:
    """An opened, verified bundle."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.classes)

    def file(self, name: str) -> Path:
        if name not in self.manifest.files:
            raise BundleError(f"{self.path / MANIFEST}: file {name!r} is not listed under 'files'")
        return self.path / name

    def frontend_config(self) -> FrontEndConfig:
        return FrontEndConfig(**self.manifest.audio.model_dump(exclude={"mel_mean", "mel_std"}))

    def art_index(self) -> dict[str, np.ndarray] | None:
        section = self.manifest.art_index
        if section is None:
            return None
        path = self.file(section.file)
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise BundleError(f"{path}: cannot read the art index ({exc})") from exc

    @property
    def digest(self) -> str:
        """Short content id of the bundle (from the manifest's file hashes), for cache keys."""
        joined = "".join(f"{k}:{v}" for k, v in sorted(self.manifest.files.items()))
        return hashlib.sha256(joined.encode()).hexdigest()[:16]


def read_manifest(path: Path) -> Manifest:
    """Parse and validate manifest.json; BundleError names the key on any problem."""
    mpath = path / MANIFEST
    if not path.is_dir():
        raise BundleError(f"{path}: bundle directory not found")
    if not mpath.is_file():
        raise BundleError(f"{mpath}: manifest missing")
    try:
        raw = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{mpath}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise BundleError(f"{mpath}: the manifest must be a JSON object")
    if "format" not in raw:
        raise BundleError(f"{mpath}: key 'format' missing")
    if raw["format"] != FORMAT_VERSION:
        raise BundleError(f"{mpath}: key 'format' is {raw['format']!r}; this engine reads format {FORMAT_VERSION}")
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        what = "missing" if err["type"] == "missing" else f"invalid ({err['msg']})"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise BundleError(f"{mpath}: key '{_key_path(err['loc'])}' {what}{more}") from exc


def verify_files(path: Path, manifest: Manifest) -> None:
    """Every listed file exists and matches its sha256; every referenced file is listed."""
    referenced = [manifest.encoder.onnx, manifest.encoder.torch]
    if manifest.generator is not None:
        referenced += [manifest.generator.onnx, manifest.generator.torch]
    if manifest.art_index is not None:
        referenced.append(manifest.art_index.file)
    if manifest.upsampler is not None:
        referenced += [manifest.upsampler.onnx, manifest.upsampler.torch]
    referenced += list(manifest.tensorrt.values())
    for name in filter(None, referenced):
        if name not in manifest.files:
            raise BundleError(f"{path / MANIFEST}: '{name}' is referenced but not listed under 'files'")
    for name, expected in manifest.files.items():
        fpath = path / name
        if not fpath.is_file():
            raise BundleError(f"{fpath}: file listed in the manifest is missing")
        if cached_sha256(fpath) != expected:
            raise BundleError(f"{fpath}: sha256 does not match the manifest (file changed or damaged)")


def load_bundle(path: str | Path | None = None) -> Bundle:
    """Open and verify a bundle (the default bundle in assets/ when `path` is None)."""
    bpath = Path(path) if path is not None else DEFAULT_BUNDLE
    manifest = read_manifest(bpath)
    verify_files(bpath, manifest)
    return Bundle(bpath, manifest)


def write_manifest(path: str | Path, manifest: dict[str, Any]) -> Manifest:
    """Hash every file named in manifest['files'] (or all non-manifest files when it is empty), validate,
    and write manifest.json atomically. Returns the validated manifest."""
    bpath = Path(path)
    data = dict(manifest)
    data.setdefault("format", FORMAT_VERSION)
    data.setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
    names = list(data.get("files") or [])
    if not names:
        names = sorted(str(p.relative_to(bpath)) for p in bpath.rglob("*") if p.is_file() and p.name != MANIFEST)
    data["files"] = {name: sha256_file(bpath / name) for name in names}
    try:
        validated = Manifest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise BundleError(f"manifest key '{_key_path(err['loc'])}': {err['msg']}") from exc
    tmp = bpath / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(validated.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, bpath / MANIFEST)
    return validated
