"""Issue 12 trial, outside the library: a VampPrior (Tomczak & Welling, 2018) and a lower decoder
log-variance floor, measured through `bench/quality.py` on the same splits and metrics.

The prior is a uniform mixture of the encoder's posteriors at K pseudo-inputs: K seeded training
rows, fixed; the encoder is trained through them, so the prior follows it. After training the
posteriors are written into the model's mixture-prior parameters (`prior_components` = K), so the
fitted detector is an ordinary mixture-prior model and scores through the library's own code (the
latent term is the library's closed-form mixture KL). The patches are applied to this process
before `quality.py` starts its pool, whose processes fork from it and so share them.

Usage:
    python bench/vamp_trial.py [--pseudo-inputs 512] [--logvar-floor -6] [--variance-prior-rows 100] \\
        -- DATASETS... [quality.py's options]

Not a default and not an option of the library: bench/RESULTS.md ("Issue 12 trials, fifth session")
says what it gains and what it costs (the fit is 10-20x slower and the threshold loses its
out-of-time calibration with random validation).
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402  (bench/ is not a package)

import fraudvae.fitting as fitting  # noqa: E402
import fraudvae.model as model_module  # noqa: E402
import fraudvae.train as train_module  # noqa: E402
from fraudvae.config import TrainConfig  # noqa: E402


def patch(pseudo_inputs: int, logvar_floor: float | None, variance_prior_rows: float | None) -> None:
    if logvar_floor is not None:
        model_module.DEC_LOGVAR_MIN = logvar_floor
    if variance_prior_rows is not None:  # TrainConfig's own field, which FraudVAE does not take
        fitting.TrainConfig = functools.partial(TrainConfig, variance_prior_rows=variance_prior_rows)
    if not pseudo_inputs:
        return
    default = model_module.ModelConfig.default.__func__

    def with_components(cls, *args, **kwargs):
        from dataclasses import replace

        return replace(default(cls, *args, **kwargs), prior_components=pseudo_inputs)

    model_module.ModelConfig.default = classmethod(with_components)
    library_prior = model_module.VAE.prior

    def prior(self):
        pseudo = getattr(self, "_pseudo", None)
        if pseudo is None:
            return library_prior(self)
        mu, logvar = self.encode(pseudo)
        log_weight = torch.full(mu.shape[:-1], -math.log(mu.shape[-2]), device=mu.device, dtype=mu.dtype)
        return log_weight, mu, logvar

    model_module.VAE.prior = prior
    library_train = train_module.train

    def train(model, train_data, val_data, config, progress=None):
        k = model.config.prior_components
        numeric, _, binary, categorical = train_data.to_tensors(next(model.parameters()).device)
        idx = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(config.seed))[:k]
        idx = idx[torch.arange(k) % len(idx)]  # fewer rows than pseudo-inputs: some repeat
        dtype = model.numeric_logvar.dtype
        model._pseudo = model.encode_input(numeric[idx].to(dtype), binary[idx].to(dtype), categorical[idx])
        for p in (model.prior_mean, model.prior_logvar, model.prior_logit):
            p.requires_grad_(False)
        history = library_train(model, train_data, val_data, config, progress)
        with torch.no_grad():
            mu, logvar = model.encode(model._pseudo)
            model.prior_mean.copy_(mu)
            model.prior_logvar.copy_(logvar)
            model.prior_logit.zero_()
        del model._pseudo
        return history

    fitting.train = train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pseudo-inputs", type=int, default=512, help="0: the library's prior")
    ap.add_argument("--logvar-floor", type=float, default=None, help="decoder log-variance floor (library: -1.2)")
    ap.add_argument("--variance-prior-rows", type=float, default=None, help="library: 1000")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    a = ap.parse_args(argv[:cut])
    patch(a.pseudo_inputs, a.logvar_floor, a.variance_prior_rows)
    # quality.py prints its command line as the way to reproduce the run: this one, trial options included
    sys.argv = [" ".join([sys.argv[0], *argv[:cut], "--"]), *argv[cut + 1:]]
    quality.main()


if __name__ == "__main__":
    main()
