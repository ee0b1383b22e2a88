"""Save and load a model directory: data, not code. This module moves JSON and tensors to and from
disk; what they mean is the estimator's (`FraudVAE.save`, `FraudVAE.load`, `fraudvae.fitted`).

Layout: ``weights.safetensors`` (the network), ``model.json`` (schema, preprocessing state,
configs, threshold with validation scores, training metrics, library versions) and
``manifest.json`` (sha256 of both, verified on load; the model version is a digest of those
digests, recomputed on every load). Writes go to a temporary sibling directory that is renamed into
place, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from fraudvae.errors import ModelFileError
from fraudvae.signing import SIGNATURE, check_signature, model_key, write_signature
from fraudvae.writing import OutputDirectory, atomic_directory, file_sha256

FORMAT = "fraudvae-model/1"
WEIGHTS, META, MANIFEST = "weights.safetensors", "model.json", "manifest.json"
HISTORY = "history.json"  # the entities' state at the end of training (models with entity columns only)
MODEL = OutputDirectory("a model directory", MANIFEST, frozenset({WEIGHTS, META, MANIFEST, SIGNATURE, HISTORY}),
                        "model")


def library_versions() -> dict[str, str]:
    import pandas
    import safetensors

    from fraudvae import __version__
    return {"fraudvae": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "pandas": pandas.__version__, "safetensors": safetensors.__version__,
            "python": platform.python_version()}


def model_files(meta: dict, weights: dict[str, torch.Tensor], history: bytes | None = None) -> dict[str, bytes]:
    """The files' bytes (the weights, model.json and, with entity columns, the entities' saved
    history): what `write_model` writes and `content_version` digests."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    return {WEIGHTS: safetensors_bytes(tensors),
            META: json.dumps({"format": FORMAT, **meta}, indent=1, allow_nan=False).encode(),
            **({HISTORY: history} if history is not None else {})}


def content_version(files: dict[str, bytes]) -> str:
    """The model version of these files: the same content, the same version."""
    return _version({name: hashlib.sha256(data).hexdigest() for name, data in files.items()})


def _version(digests: dict[str, str]) -> str:
    """A digest of the files' digests. It is recomputed from the files on every load, so an edited
    file cannot keep an old version."""
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()[:12]


def write_model(path: Path, files: dict[str, bytes]) -> str:
    """Write a model directory atomically (signed when a key is configured). Returns its version."""
    path = path.resolve()
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    with atomic_directory(path, MODEL) as tmp:
        try:
            for name, data in files.items():
                (tmp / name).write_bytes(data)
            (tmp / MANIFEST).write_text(json.dumps({"format": FORMAT, "files": digests,
                                                    "version": _version(digests)}, indent=1))
        except OSError as e:  # an I/O failure (a full disk) surfaces as the library's own error
            raise ModelFileError(f"cannot write the model to {str(path)!r}: {e.strerror or e}") from None
        key = model_key()
        if key is not None:
            write_signature(tmp, digests, key)
    return _version(digests)


def read_model(path: Path) -> tuple[dict, dict[str, torch.Tensor], str]:
    """(model.json's content, the weights, the version) of a model directory whose files pass their
    checksums and signature, with every number finite; else `ModelFileError` naming what is wrong.
    The saved history (`read_history`) is read apart."""
    manifest = read_manifest(path)
    check_signature(path, manifest["files"], model_key())
    try:
        meta = json.loads((path / META).read_text())
        # a model is data a reader checks: a non-finite number (a threshold of NaN, a scale of
        # Infinity) would give NaN scores, so it is refused by name
        bad = _non_finite({k: meta[k] for k in ("preprocessing", "threshold", "baseline_contributions",
                                                 "model_config") if k in meta})
        if bad:
            raise ModelFileError(f"model directory {str(path)!r}: {META} has a number that is not finite at {bad}")
        weights = load_file(str(path / WEIGHTS))
    except (ValueError, SafetensorError) as e:
        raise ModelFileError(f"model directory {str(path)!r} cannot be loaded: {e}") from None
    bad = next((k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad:
        raise ModelFileError(f"model directory {str(path)!r}: weight {bad!r} holds NaN or infinite values")
    return meta, weights, _version(manifest["files"])


def _non_finite(value: object, where: str = "") -> str | None:
    """The path of the first number in a JSON value that is NaN or infinite (None: all finite)."""
    if isinstance(value, float) and not np.isfinite(value):
        return where or "(top)"
    items: object
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return None
    for key, v in items:
        found = _non_finite(v, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def read_manifest(path: Path) -> dict:
    """Check a model directory's files against its manifest; returns the manifest."""
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise ModelFileError(f"model directory {str(path)!r} {what}")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        reason = e.__class__.__name__
        raise ModelFileError(f"model directory {str(path)!r} has no readable {MANIFEST} ({reason})") from None
    if manifest.get("format") != FORMAT or not {WEIGHTS, META} <= set(files) <= {WEIGHTS, META, HISTORY}:
        raise ModelFileError(f"{path / MANIFEST} is not a {FORMAT} manifest")
    for name, digest in files.items():
        f = path / name
        if not f.is_file():
            raise ModelFileError(f"model file {str(f)!r} is missing")
        if file_sha256(f) != digest:
            raise ModelFileError(f"model file {str(f)!r} fails its sha256 check (modified or corrupted)")
    return manifest


def read_history(path: Path) -> bytes:
    """The saved history of a model directory (its checksum was verified with the others)."""
    try:
        return (path / HISTORY).read_bytes()
    except OSError as e:
        raise ModelFileError(f"model directory {str(path)!r}: {HISTORY} cannot be read ({e.strerror or e})") from None


def sign_model(path: Path) -> str:
    """Sign an existing model directory with the configured key (its files checked first). Returns
    the model version."""
    key = model_key()
    if key is None:
        raise ModelFileError("no signing key: set FRAUDVAE_MODEL_KEY or FRAUDVAE_MODEL_KEY_FILE")
    manifest = read_manifest(path)
    write_signature(path, manifest["files"], key)
    return _version(manifest["files"])
