"""The tabular VAE and its loss (torch only: no pandas, no files).

Inputs come in three groups: scaled numbers (Gaussian likelihood with a learned per-feature
variance), 0/1 features (Bernoulli: binary columns, missing indicators and point-mass indicators) and
category indices
(softmax over each column's vocabulary, one-hot encoded on the way in).

The module holds an ensemble of ``members`` independent VAEs computed together with batched
matrix products (weights shaped (members, in, out)). For networks this small the cost of a step
is per-operation overhead, not arithmetic, so K members train in about the time of one, and the
average of their negative ELBOs ranks anomalies better and varies less from seed to seed than
any single member's. Tensors carry the member axis first: (members, n, ...).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

LOGVAR_MIN, LOGVAR_MAX = -8.0, 8.0  # latent log-variance clamp: keeps exp() finite, training NaN-free
DEC_LOGVAR_MIN, DEC_LOGVAR_MAX = -1.2, 4.0  # decoder variance of scaled numbers >= 0.3 (robust to drift)
LOG_2PI = math.log(2 * math.pi)
PASS_ROWS = 8192  # rows per batch of a posterior-mean pass

# the network's inputs for n rows: scaled numbers (n, n_numeric), the observed-mask (n, n_terms) or
# None when nothing was imputed, 0/1 features (n, n_binary), category indices (n, n_categorical)
Tensors = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class ModelConfig:
    """The network's shape. Stored with the weights so loading rebuilds exactly this network."""

    n_numeric: int
    n_binary: int
    cardinalities: tuple[int, ...]
    hidden: tuple[int, ...]
    latent_dim: int
    members: int = 1
    prior_components: int = 0  # 0: the standard normal prior; C > 0: a learned mixture of C Gaussians

    @property
    def n_input(self) -> int:
        return self.n_numeric + self.n_binary + sum(self.cardinalities)

    @property
    def n_terms(self) -> int:
        """Number of per-feature likelihood terms (one per numeric, binary and categorical feature)."""
        return self.n_numeric + self.n_binary + len(self.cardinalities)

    @classmethod
    def default(cls, n_numeric: int, n_binary: int, cardinalities: tuple[int, ...],
                hidden: tuple[int, ...] | None = None, latent_dim: int | None = None,
                members: int = 1, prior_components: int = 0) -> ModelConfig:
        """Sizes derived from the input width: wide enough to model the joint structure, small enough
        to train in seconds on a CPU."""
        d = n_numeric + n_binary + sum(cardinalities)
        if hidden is None:
            width = int(min(256, max(64, 2 ** math.ceil(math.log2(2 * d)))))
            hidden = (width, width // 2)
        if latent_dim is None:
            latent_dim = int(min(16, max(2, math.ceil(d / 4))))
        return cls(n_numeric, n_binary, tuple(cardinalities), tuple(hidden), latent_dim, members, prior_components)

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """From `to_dict`'s output (models saved before the mixture prior have no prior_components: 0)."""
        return cls(**{**d, "cardinalities": tuple(d["cardinalities"]), "hidden": tuple(d["hidden"])})


class EnsembleLinear(nn.Module):
    """One affine layer per ensemble member: (k, n, in) or (n, in) -> (k, n, out)."""

    def __init__(self, members: int, n_in: int, n_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)  # nn.Linear's default initialisation range
        self.weight = nn.Parameter(torch.empty(members, n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, self.weight) + self.bias


def _mlp(members: int, sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [EnsembleLinear(members, a, b), nn.SiLU()]
    return nn.Sequential(*layers)


class VAE(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = _mlp(c.members, [c.n_input, *c.hidden])
        self.to_latent = EnsembleLinear(c.members, c.hidden[-1], 2 * c.latent_dim)  # mean and log-variance
        self.decoder = _mlp(c.members, [c.latent_dim, *reversed(c.hidden)])
        self.to_out = EnsembleLinear(c.members, c.hidden[0], c.n_input)
        self.numeric_logvar = nn.Parameter(torch.zeros(c.members, 1, c.n_numeric))
        if c.prior_components:  # a mixture prior, learned with the rest (weights, means, log-variances)
            self.prior_logit = nn.Parameter(torch.zeros(c.members, c.prior_components))
            self.prior_mean = nn.Parameter(torch.randn(c.members, c.prior_components, c.latent_dim))
            self.prior_logvar = nn.Parameter(torch.zeros(c.members, c.prior_components, c.latent_dim))
        self.register_buffer("cat_offsets", torch.tensor([0, *c.cardinalities[:-1]]).cumsum(0)
                             if c.cardinalities else torch.zeros(0, dtype=torch.long), persistent=False)

    def encode_input(self, numeric: torch.Tensor, binary: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """(n, n_input) network input: numbers, flags, then one-hot categories."""
        parts = [numeric, binary]
        if self.config.cardinalities:
            onehot = torch.zeros(len(categorical), sum(self.config.cardinalities), device=categorical.device,
                                 dtype=numeric.dtype)
            onehot.scatter_(1, categorical + self.cat_offsets, 1.0)  # type: ignore[operator]
            parts.append(onehot)
        return torch.cat(parts, dim=1) if self.config.n_input > self.config.n_numeric else numeric

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(k, n, latent) posterior means and clamped log-variances."""
        mu, logvar = self.to_latent(self.encoder(x)).chunk(2, dim=-1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.to_out(self.decoder(z))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, never: int | None = None) -> tuple[torch.Tensor, ...]:
        """Draw n rows from the generative model: z from the prior, each row from a member picked at random
        (the ensemble is a mixture), then every feature from its likelihood.

        Returns scaled numbers (n, n_numeric), 0/1 flags (n, n_binary) and category indices
        (n, n_categorical); ``never`` is a category index not to draw (a bucket that stands for no
        particular value)."""
        c, dev = self.config, self.numeric_logvar.device
        z = torch.randn(c.members, n, c.latent_dim, generator=generator, device=dev)
        prior = self.prior()
        if prior is not None:  # a component per row and member, then its Gaussian
            log_weight, mean, logvar = prior
            comp = torch.multinomial(log_weight.exp(), n, replacement=True, generator=generator)  # (k, n)
            pick = comp.unsqueeze(-1).expand(-1, -1, c.latent_dim)
            z = mean.gather(1, pick) + torch.exp(0.5 * logvar.gather(1, pick)) * z
        member = torch.randint(c.members, (n,), generator=generator, device=dev)
        rows = torch.arange(n, device=dev)
        out = self.decode(z)[member, rows]  # (n, n_input): each row from its own member
        sd = torch.exp(0.5 * self.numeric_logvar.clamp(DEC_LOGVAR_MIN, DEC_LOGVAR_MAX))[member, 0]
        noise = torch.randn(n, c.n_numeric, generator=generator, device=dev)
        numeric = out[:, : c.n_numeric] + sd * noise
        probs = torch.sigmoid(out[:, c.n_numeric: c.n_numeric + c.n_binary])
        binary = torch.bernoulli(probs, generator=generator)
        cats, start = [], c.n_numeric + c.n_binary
        for k in c.cardinalities:
            logits = out[:, start: start + k].clone()
            if never is not None and k > never + 1:
                logits[:, never] = -torch.inf
            cats.append(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0])
            start += k
        categorical = torch.stack(cats, 1) if cats else torch.zeros(n, 0, dtype=torch.long, device=dev)
        return numeric, binary, categorical

    def forward(self, numeric: torch.Tensor, observed: torch.Tensor | None, binary: torch.Tensor,
                categorical: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-member, per-feature negative log-likelihood (k, n, n_terms) and KL (k, n), in nats.

        With ``sample`` the latent is drawn by reparameterisation (training); without, the
        posterior mean is decoded, so the result is deterministic (scoring). ``observed``
        (n, n_terms) masks the terms of imputed values out (a gap is not evidence); None when no
        value was imputed."""
        mu, logvar = self.encode(self.encode_input(numeric, binary, categorical))
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        out = self.decode(z)
        return reconstruction_nll(self, out, numeric, observed, binary, categorical), self.kl(mu, logvar)

    def prior(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The mixture prior's (log-weights (k, C), means (k, C, latent), log-variances (k, C,
        latent)); None for the standard normal prior."""
        if not self.config.prior_components:
            return None
        return (torch.log_softmax(self.prior_logit, -1), self.prior_mean,
                self.prior_logvar.clamp(LOGVAR_MIN, LOGVAR_MAX))

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """(k, n) the latent term of the negative ELBO under this model's prior."""
        prior = self.prior()
        return kl_divergence(mu, logvar) if prior is None else mixture_kl(mu, logvar, *prior)


@torch.no_grad()
def posterior_mean_passes(model: VAE, tensors: Tensors, rows: int = PASS_ROWS) -> Iterator[tuple[torch.Tensor,
                                                                                                  torch.Tensor]]:
    """The deterministic pass that early stopping and scoring share: for each batch of `rows` rows,
    in order, the per-member, per-feature negative log-likelihood (k, b, n_terms) and KL (k, b) with
    the posterior mean decoded. Numbers and flags are cast to the model's floating type."""
    dtype = model.numeric_logvar.dtype
    numeric, observed, binary, categorical = tensors
    for i in range(0, len(numeric), rows):
        part = slice(i, i + rows)
        yield model(numeric[part].to(dtype), None if observed is None else observed[part],
                    binary[part].to(dtype), categorical[part], sample=False)


@dataclass(frozen=True)
class Predictive:
    """What the decoder expects of rows given their posterior means, the ensemble as an equal mixture
    of its members: every scaled number's mean and standard deviation (n, n_numeric), every 0/1
    feature's probability (n, n_binary), and each categorical feature's probabilities (n, k)."""

    mean: torch.Tensor
    sd: torch.Tensor
    p_binary: torch.Tensor
    p_categories: tuple[torch.Tensor, ...]


@torch.no_grad()
def predictive(model: VAE, tensors: Tensors) -> Predictive:
    """The decoder's expectations for the rows of `tensors` (a few rows: an explanation, not a pass
    over a file), decoded from the posterior mean as scores are."""
    c = model.config
    dtype = model.numeric_logvar.dtype
    numeric, _, binary, categorical = tensors
    x = model.encode_input(numeric.to(dtype), binary.to(dtype), categorical)
    out = model.decode(model.encode(x)[0])  # (k, n, n_input)
    means = out[..., : c.n_numeric]
    variances = model.numeric_logvar.clamp(DEC_LOGVAR_MIN, DEC_LOGVAR_MAX).exp()  # (k, 1, n_numeric)
    mean = means.mean(0)
    var = (variances + means**2).mean(0) - mean**2  # a mixture's variance: within plus between members
    p_categories, start = [], c.n_numeric + c.n_binary
    for k in c.cardinalities:
        p_categories.append(torch.softmax(out[..., start: start + k], -1).mean(0))
        start += k
    return Predictive(mean, var.clamp_min(0).sqrt(),
                      torch.sigmoid(out[..., c.n_numeric: c.n_numeric + c.n_binary]).mean(0), tuple(p_categories))


def reconstruction_nll(model: VAE, out: torch.Tensor, numeric: torch.Tensor, observed: torch.Tensor | None,
                       binary: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
    """(k, n, n_terms) negative log-likelihood of each feature under the decoder output ``out``."""
    c = model.config
    terms = []
    if c.n_numeric:
        mean = out[..., : c.n_numeric]
        logvar = model.numeric_logvar.clamp(DEC_LOGVAR_MIN, DEC_LOGVAR_MAX)
        terms.append(0.5 * (LOG_2PI + logvar + (numeric - mean) ** 2 * torch.exp(-logvar)))
    if c.n_binary:
        logits = out[..., c.n_numeric: c.n_numeric + c.n_binary]
        terms.append(F.binary_cross_entropy_with_logits(logits, binary.expand_as(logits), reduction="none"))
    start = c.n_numeric + c.n_binary
    for j, k in enumerate(c.cardinalities):
        logits = out[..., start: start + k]
        target = categorical[:, j].expand(logits.shape[:-1])
        terms.append(F.cross_entropy(logits.transpose(1, 2), target, reduction="none").unsqueeze(-1))
        start += k
    nll = torch.cat(terms, dim=-1) if len(terms) > 1 else terms[0]
    # an imputed value is not evidence (a missing indicator is); where() rather than a product, so a
    # masked term is exactly 0 whatever the network made of the imputed input
    return nll if observed is None else torch.where(observed > 0, nll, torch.zeros((), dtype=nll.dtype))


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """(k, n) KL(q(z|x) || N(0, I))."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor, mean: torch.Tensor, prior_logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, e^logvar) || N(mean, e^prior_logvar)), diagonal, summed over the last axis."""
    return 0.5 * (prior_logvar - logvar + (logvar.exp() + (mu - mean) ** 2) * torch.exp(-prior_logvar) - 1.0).sum(-1)


def mixture_kl(mu: torch.Tensor, logvar: torch.Tensor, log_weight: torch.Tensor, mean: torch.Tensor,
               prior_logvar: torch.Tensor) -> torch.Tensor:
    """(k, n) latent term of the ELBO of a Gaussian-mixture VAE: a component c ~ weights, then
    z ~ N(mean_c, var_c). With q(z, c | x) = q(z | x) q(c | x) and q(c | x) the best posterior over
    components, the term is -log sum_c w_c exp(-KL(q(z|x) || N(mean_c, var_c))): closed form and
    deterministic; it is never below KL(q(z|x) || mixture) and equals it when the components are
    far apart. mu, logvar (k, n, latent); log_weight (k, C); mean, prior_logvar (k, C, latent)."""
    per = gaussian_kl(mu.unsqueeze(-2), logvar.unsqueeze(-2), mean.unsqueeze(-3), prior_logvar.unsqueeze(-3))
    return -torch.logsumexp(log_weight.unsqueeze(-2) - per, dim=-1)
