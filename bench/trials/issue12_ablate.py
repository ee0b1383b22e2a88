"""Issue 12, sixth session: the ablations of the aggregate-prior trial (not kept; bench/RESULTS.md).

Runs `bench/quality.py` with one default of the patched library changed in-process. Needs the
library patched first (from the project root):

    git apply bench/trials/issue12_aggregate_prior.patch
    TRIAL=floor=-1.2,latent=quarter python bench/trials/issue12_ablate.py \
        ../shared/datasets/adbench/*.npz --seeds 0,1,2,3,4 --methods fraudvae --jobs 2
    git apply -R bench/trials/issue12_aggregate_prior.patch

TRIAL is a comma list of: floor=X (the decoder log-variance floor at scoring; the patch's default is
-6), vprior=ROWS (the decoder-variance prior, default 1000), latent=quarter (the latent size of
today's main, ceil(d / 4) within 2-16, instead of the patch's d up to 16). The aggregate prior itself
is a parameter: --fraudvae-params '{"aggregate_prior": 0}'.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import quality  # noqa: E402

import fraudvae.fitting as fitting  # noqa: E402
import fraudvae.model as model  # noqa: E402

OPTIONS = dict(kv.split("=") for kv in os.environ.get("TRIAL", "").split(",") if kv)
if not hasattr(model.ModelConfig, "decoder_logvar_min"):
    sys.exit("apply bench/trials/issue12_aggregate_prior.patch first (see this file's docstring)")
if "vprior" in OPTIONS:
    fitting.TrainConfig = functools.partial(fitting.TrainConfig, variance_prior_rows=float(OPTIONS["vprior"]))
_default = model.ModelConfig.default.__func__


def default(cls, n_numeric, n_binary, cardinalities, hidden=None, latent_dim=None, members=1, prior_components=0):
    c = _default(cls, n_numeric, n_binary, cardinalities, hidden, latent_dim, members, prior_components)
    if OPTIONS.get("latent") == "quarter" and latent_dim is None:
        c = replace(c, latent_dim=int(min(16, max(2, math.ceil(c.n_input / 4)))))
    if "floor" in OPTIONS:
        c = replace(c, decoder_logvar_min=float(OPTIONS["floor"]))
    return c


model.ModelConfig.default = classmethod(default)

if __name__ == "__main__":
    quality.main()
