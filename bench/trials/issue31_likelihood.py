"""Issue 31 trial, outside the library: other likelihoods for the numeric columns' decoder terms,
measured through `bench/quality.py` on the same splits and metrics.

The decoder keeps its per-column scale (`numeric_logvar`, the log-variance, refitted on validation
rows after training as today); only the density of a scaled number around the decoded mean changes,
in training and in scoring alike (one patched `reconstruction_nll`), so the score stays the
negative ELBO of the VAE with that decoder:

- gauss: N(mean, var), the library's;
- laplace: Laplace(mean, b) with the same variance (var = 2 b^2);
- student: Student-t(nu) with scale s, var = s^2 nu / (nu - 2).

    python bench/trials/issue31_likelihood.py --numeric laplace -- DATASETS... [quality.py's options]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import quality  # noqa: E402  (bench/ is not a package)

import fraudvae.model as model_module  # noqa: E402

LIBRARY_NLL = model_module.reconstruction_nll


def patch(kind: str, nu: float) -> None:
    if kind == "gauss":
        return

    def reconstruction_nll(model, out, numeric, observed, binary, categorical):
        nll = LIBRARY_NLL(model, out, numeric, observed, binary, categorical)
        c = model.config
        if not c.n_numeric:
            return nll
        mean = out[..., : c.n_numeric]
        logvar = model.numeric_logvar.clamp(model_module.DEC_LOGVAR_MIN, model_module.DEC_LOGVAR_MAX)
        if kind == "laplace":
            log_b = 0.5 * (logvar - math.log(2.0))
            term = math.log(2.0) + log_b + (numeric - mean).abs() * torch.exp(-log_b)
        else:
            log_s2 = logvar + math.log((nu - 2.0) / nu)
            const = math.lgamma(nu / 2) - math.lgamma((nu + 1) / 2) + 0.5 * math.log(nu * math.pi)
            term = const + 0.5 * log_s2 + 0.5 * (nu + 1) * torch.log1p((numeric - mean) ** 2 * torch.exp(-log_s2) / nu)
        if observed is not None:
            term = torch.where(observed[..., : c.n_numeric] > 0, term, torch.zeros((), dtype=term.dtype))
        return torch.cat([term.expand(*nll.shape[:-1], c.n_numeric), nll[..., c.n_numeric:]], dim=-1)

    model_module.reconstruction_nll = reconstruction_nll


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--numeric", choices=("gauss", "laplace", "student"), default="laplace")
    ap.add_argument("--nu", type=float, default=4.0, help="Student-t degrees of freedom (> 2)")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    a = ap.parse_args(argv[:cut])
    patch(a.numeric, a.nu)
    sys.argv = [" ".join([sys.argv[0], *argv[:cut], "--"]), *argv[cut + 1:]]
    quality.main()


if __name__ == "__main__":
    main()
