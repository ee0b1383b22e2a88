"""Save and load a model directory: data, not code.

Layout: ``weights.safetensors`` (the network), ``model.json`` (schema, preprocessing state,
configs, threshold with validation scores, training metrics, library versions) and
``manifest.json`` (sha256 of both, verified on load). Writes go to a temporary sibling directory
that is renamed into place, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fraudvae.errors import ModelFileError
from fraudvae.io import atomic_directory
from fraudvae.model import VAE, ModelConfig
from fraudvae.preprocess import Preprocessor
from fraudvae.schema import Schema
from fraudvae.signing import check_signature, model_key, write_signature
from fraudvae.threshold import Threshold
from fraudvae.train import TrainConfig, resolve_device

if TYPE_CHECKING:
    from fraudvae.detector import FraudVAE

FORMAT = "fraudvae-model/1"
WEIGHTS, META, MANIFEST = "weights.safetensors", "model.json", "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import pandas
    import safetensors

    from fraudvae import __version__
    return {"fraudvae": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "pandas": pandas.__version__, "safetensors": safetensors.__version__,
            "python": platform.python_version()}


def save_model(det: FraudVAE, path: Path) -> Path:
    path = path.resolve()
    with atomic_directory(path) as tmp:
        weights = {k: v.detach().cpu().contiguous() for k, v in det.model_.state_dict().items()}
        try:
            save_file(weights, str(tmp / WEIGHTS))
        except SafetensorError as e:  # an I/O failure (a full disk) surfaces as the library's own error
            raise ModelFileError(f"cannot write the model to {str(path)!r}: {str(e).split(': ', 1)[-1]}") from None
        meta = {
            "format": FORMAT,
            "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in det.get_params().items()},
            "schema": det.schema_.to_dict(),
            "preprocessing": det.preprocessor_.to_dict(),
            "model_config": asdict(det.model_config_),
            "train_config": asdict(det.train_config_),
            "threshold": det.threshold_.to_dict(),
            "validation_quantiles": det.threshold_.quantiles(),
            "baseline_contributions": [float(x) for x in det.baseline_],
            "metrics": det.metrics_,
            "versions": _versions(),
        }
        (tmp / META).write_text(json.dumps(meta, indent=1, allow_nan=False))
        manifest = {"format": FORMAT, "files": {name: _sha256(tmp / name) for name in (WEIGHTS, META)}}
        version = content_version(manifest["files"])
        manifest["version"] = version
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        key = model_key()
        if key is not None:
            write_signature(tmp, manifest["files"], key)
    det.version_ = version
    return path


def content_version(digests: dict[str, str]) -> str:
    """The model version: a digest of the files' digests. The same content, the same version; it is
    recomputed from the files on every load, so an edited file cannot keep an old version."""
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()[:12]


def _non_finite(value: object, where: str = "") -> str | None:
    """The path of the first number in a JSON value that is NaN or infinite (None: all finite)."""
    if isinstance(value, float) and not np.isfinite(value):
        return where or "(top)"
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
    if manifest.get("format") != FORMAT or set(files) != {WEIGHTS, META}:
        raise ModelFileError(f"{path / MANIFEST} is not a {FORMAT} manifest")
    for name, digest in files.items():
        f = path / name
        if not f.is_file():
            raise ModelFileError(f"model file {str(f)!r} is missing")
        if _sha256(f) != digest:
            raise ModelFileError(f"model file {str(f)!r} fails its sha256 check (modified or corrupted)")
    return manifest


def load_model(cls: type[FraudVAE], path: Path, device: str = "auto") -> FraudVAE:
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
        params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["params"].items()}
        # a model saved before an option existed was fitted as the option's old behaviour: say so,
        # rather than report today's default
        params.setdefault("prior_components", meta["model_config"].get("prior_components", 0))
        det = cls(**params)
        det.schema_ = Schema.from_dict(meta["schema"])
        det.preprocessor_ = Preprocessor.from_dict(det.schema_, meta["preprocessing"])
        mc = meta["model_config"]
        det.model_config_ = ModelConfig(**{**mc, "cardinalities": tuple(mc["cardinalities"]),
                                           "hidden": tuple(mc["hidden"])})
        det.train_config_ = TrainConfig(**meta["train_config"])
        det.threshold_ = Threshold.from_dict(meta["threshold"])
        det.baseline_ = np.asarray(meta["baseline_contributions"], dtype=float)
        det.metrics_ = meta["metrics"]
        det.versions_ = meta["versions"]
        pre, mc = det.preprocessor_, det.model_config_
        if (pre.n_numeric, len(pre.binary_owners), tuple(pre.cardinalities)) != (mc.n_numeric, mc.n_binary,
                                                                                   mc.cardinalities):
            raise ModelFileError(f"model directory {str(path)!r}: the preprocessing state does not fit the network "
                                 f"({pre.n_numeric} numbers, {len(pre.binary_owners)} flags, categories "
                                 f"{pre.cardinalities} against model_config {mc})")
        model = VAE(det.model_config_)
        weights = load_file(str(path / WEIGHTS))
        bad = next((k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
        if bad:
            raise ModelFileError(f"model directory {str(path)!r}: weight {bad!r} holds NaN or infinite values")
        model.load_state_dict(weights)
    except (ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        raise ModelFileError(f"model directory {str(path)!r} cannot be loaded: {e}") from None
    det.version_ = content_version(manifest["files"])
    det.device_ = resolve_device(device)
    det.model_ = model.to(det.device_).eval()
    return det


def sign_model(path: Path) -> str:
    """Sign an existing model directory with the configured key (its files checked first). Returns
    the model version."""
    key = model_key()
    if key is None:
        raise ModelFileError("no signing key: set FRAUDVAE_MODEL_KEY or FRAUDVAE_MODEL_KEY_FILE")
    manifest = read_manifest(path)
    write_signature(path, manifest["files"], key)
    return content_version(manifest["files"])
