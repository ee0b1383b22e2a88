"""The training loop: seeding, device choice, KL warm-up and early stopping on validation loss."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from fraudvae.distributed import all_sum, broadcast_state, rank_and_world
from fraudvae.errors import ConfigError
from fraudvae.model import VAE
from fraudvae.preprocess import Encoded

log = logging.getLogger(__name__)
MIN_IMPROVEMENT = 1e-3  # relative gain in validation loss that resets the early-stopping patience


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``None`` sizes are derived from the number of training rows."""

    epochs: int | None = None  # at most this many; early stopping usually ends sooner
    batch_size: int | None = None
    lr: float | None = None  # None: 2e-3 up to batch 128, then scaled by sqrt(batch / 128), at most 4e-3
    weight_decay: float = 1e-5
    beta: float = 1.0  # weight of the KL term
    warmup_epochs: int = 10  # the KL weight rises linearly from 0 to beta over these epochs
    patience: int = 10  # epochs without a better validation loss before stopping
    target_steps: int = 3000  # optimizer steps the derived epoch count aims at
    variance_prior_rows: float = 1000.0  # weight of the marginal variance in the decoder-variance fit
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        checks = [("epochs", self.epochs, lambda v: v is None or v >= 1, ">= 1"),
                  ("batch_size", self.batch_size, lambda v: v is None or v >= 1, ">= 1"),
                  ("lr", self.lr, lambda v: v is None or 0 < v < 1, "in (0, 1)"),
                  ("beta", self.beta, lambda v: 0 < v <= 100, "in (0, 100]"),
                  ("warmup_epochs", self.warmup_epochs, lambda v: v >= 0, ">= 0"),
                  ("patience", self.patience, lambda v: v >= 1, ">= 1"),
                  ("variance_prior_rows", self.variance_prior_rows, lambda v: v >= 0, ">= 0"),
                  ("device", self.device, lambda v: v in ("auto", "cpu", "cuda") or v.startswith("cuda:"),
                   "auto, cpu or cuda")]
        for name, value, ok, allowed in checks:
            if not ok(value):
                raise ConfigError(f"{name}={value!r} is not allowed (must be {allowed})")


class Adam:
    """torch's Adam, driven through its functional form (`torch.optim.adam.adam`, fused kernel).

    Constructing a `torch.optim.Optimizer` imports `torch._dynamo`, which costs 1.5-3 s on this
    class of machine: a third of a typical fit. The update itself is torch's own."""

    def __init__(self, params: list[torch.nn.Parameter], lr: float, weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        # a parameter with no elements (the numeric decoder variance of a file with no numbers) gets
        # no gradient: the fused kernel refuses None
        self.params = [p for p in params if p.requires_grad and p.numel()]
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.exp_avgs = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        from torch.optim.adam import adam

        adam(self.params, [p.grad for p in self.params], self.exp_avgs, self.exp_avg_sqs, [], self.steps,
             fused=True, amsgrad=False, beta1=self.betas[0], beta2=self.betas[1], lr=self.lr,
             weight_decay=self.weight_decay, eps=self.eps, maximize=False)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} was asked for but CUDA is not available (use auto or cpu)")
    return torch.device(device)


def derived_sizes(n_rows: int, config: TrainConfig) -> tuple[int, int, float]:
    """(batch size, maximum epochs, learning rate): batches grow with the data and epochs shrink,
    so that small and large training sets get a similar number of optimizer steps; the learning
    rate follows the square-root scaling rule for Adam."""
    batch = config.batch_size or int(min(512, max(32, 2 ** round(math.log2(max(n_rows, 1) / 40)))))
    steps_per_epoch = math.ceil(n_rows / batch)
    epochs = config.epochs or int(min(300, max(30, math.ceil(config.target_steps / steps_per_epoch))))
    lr = config.lr or float(min(4e-3, max(2e-3, 2e-3 * math.sqrt(batch / 128))))
    return batch, epochs, lr


Tensors = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]


def to_tensors(data: Encoded, device: torch.device) -> Tensors:
    """Model inputs on `device`; the observed-mask is None when no value was imputed (saves work)."""
    observed = None if data.observed.all() else torch.from_numpy(data.observed).to(device)
    return (torch.from_numpy(data.numeric).to(device), observed,
            torch.from_numpy(data.binary).to(device), torch.from_numpy(data.categorical).to(device))


def take(tensors: Tensors, idx: torch.Tensor | slice | int | tuple) -> Tensors:
    return tuple(None if t is None else t[idx] for t in tensors)  # type: ignore[return-value]


@torch.no_grad()
def member_scores(model: VAE, tensors: Tensors, batch: int = 8192) -> torch.Tensor:
    """(members, n) negative ELBO at the posterior mean: of every row under every member for (n, ...)
    inputs, of each member's own rows for (members, n, ...) inputs."""
    was_training = model.training
    model.eval()
    out = []
    own = tensors[0].dim() == 3
    for i in range(0, tensors[0].shape[-2], batch):
        rows = (slice(None), slice(i, i + batch)) if own else slice(i, i + batch)
        nll, kl = model(*take(tensors, rows), sample=False)
        out.append(nll.sum(-1) + kl)
    model.train(was_training)
    return torch.cat(out, dim=1) if out else torch.zeros(model.config.members, 0, device=tensors[0].device)


def negative_elbo(model: VAE, tensors: Tensors, batch: int = 8192) -> torch.Tensor:
    """(n,) negative ELBO at the posterior mean, averaged over ensemble members: deterministic."""
    return member_scores(model, tensors, batch).mean(0)


@torch.no_grad()
def fit_decoder_variance(model: VAE, tensors: Tensors, *, prior_rows: float,
                         holdout: torch.Tensor | None = None) -> None:
    """Re-estimate each numeric feature's decoder variance on held-out rows (``holdout``, (members,
    n) bool: the rows each member did not train on; None: all of ``tensors``).

    Trained by gradient descent, the variances shrink to the training residuals, which are too
    small for rows the model has not memorised: scores then blow up on unseen normal rows and a
    few over-confident features dominate. The variance of held-out residuals (at the posterior
    mean, as scoring uses) is the honest one, and it is shrunk toward the feature's marginal
    variance (1 in scaled units: "the model explains nothing"), weighted as `prior_rows` rows
    (`TrainConfig.variance_prior_rows`): (sum of squared residuals + prior_rows) / (observed rows +
    prior_rows), the shrinkage a conjugate prior on the variance gives. With few held-out values
    (small data, a feature mostly at its point mass) a variance stays near the marginal's, so no
    feature is trusted to be predicted tighter than a handful of rows can show; with many rows the
    residuals decide."""
    c = model.config
    if not c.n_numeric:
        return
    numeric, observed, binary, categorical = tensors
    mu, _ = model.encode(model.encode_input(numeric, binary, categorical))
    mean = model.decode(mu)[..., : c.n_numeric]  # (k, n, n_numeric)
    observed = torch.ones_like(numeric) if observed is None else observed[:, : c.n_numeric]
    if holdout is not None:
        observed = observed * holdout.unsqueeze(-1).to(observed.dtype)  # (k, n, n_numeric)
    sq = ((((numeric - mean) ** 2 * observed).sum(-2, keepdim=True) + prior_rows)
          / (observed.sum(-2, keepdim=True) + prior_rows).clamp_min(1.0))
    model.numeric_logvar.copy_(torch.log(sq.clamp_min(1e-6)).expand_as(model.numeric_logvar))


def holdout_masks(n: int, members: int, held: np.ndarray) -> np.ndarray:
    """(members, n) bool: the rows each member is validated on (and does not train on); here the
    same ``held`` rows for every member (a held-out validation set)."""
    mask = np.zeros((members, n), dtype=bool)
    mask[:, held] = True
    return mask


def train(model: VAE, data: Encoded, holdout: np.ndarray, config: TrainConfig,
          progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """Fit `model` in place; returns the history (loss per epoch, best epoch, stop reason).

    ``holdout`` (members, n) says which rows of ``data`` each ensemble member is validated on
    (`holdout_masks`); a member trains on the others, in batches of its own. Training stops when
    the members' mean validation negative ELBO has not improved for ``patience`` epochs; each member
    keeps the weights of its own best epoch on its own held-out rows, then its decoder variances are
    fitted on them.

    In a joined process group (torchrun) every process is given the same rows and trains with
    DistributedDataParallel: each epoch's shuffle is the same everywhere and each process takes its
    own share of it, with batches of `batch / world` rows so that a step sees as many rows as one
    process would; validation loss is summed over the processes' shares of the validation rows, so
    early stopping decides the same everywhere; the processes end with rank 0's exact weights."""
    device = next(model.parameters()).device
    members = model.config.members
    rank, world = rank_and_world()
    torch.manual_seed(config.seed + rank)  # latent noise differs by process; the shuffle below does not
    gen = torch.Generator().manual_seed(config.seed)
    own = [torch.from_numpy(np.flatnonzero(~h)) for h in holdout]  # each member's training rows
    n = min(len(r) for r in own)
    n -= n % world  # equal shares: every process takes as many steps
    batch, epochs, lr = derived_sizes(n, config)
    all_rows = to_tensors(data, device)
    # each member's held-out rows, padded to one length (``va_w`` 0 on the padding), this process's share
    held_rows = [np.flatnonzero(h)[rank::world] for h in holdout]
    width = max(len(r) for r in held_rows)
    va_idx = np.zeros((members, width), dtype=np.int64)
    va_w = np.zeros((members, width))
    for k, r in enumerate(held_rows):
        va_idx[k, : len(r)], va_w[k, : len(r)] = r, 1.0
    va = take(all_rows, torch.from_numpy(va_idx).to(device))
    va_w = torch.from_numpy(va_w).to(device)
    opt = Adam(list(model.parameters()), lr=lr, weight_decay=config.weight_decay)
    history: dict = {"train_loss": [], "val_loss": [], "batch_size": batch, "max_epochs": epochs, "lr": lr}
    best, best_mean, best_epoch, stale = np.full(members, math.inf), math.inf, 0, 0
    best_state = copy.deepcopy(model.state_dict())
    step = max(1, math.ceil(batch / world))
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # copies rank 0's initial weights; (the buffer sync option's name changed across torch
        # releases, and the only buffer, a few category offsets, costs nothing to sync)
        net = DistributedDataParallel(model)
    model.train()
    for epoch in range(1, epochs + 1):
        beta = config.beta * min(1.0, epoch / config.warmup_epochs) if config.warmup_epochs else config.beta
        perm = torch.stack([r[torch.randperm(len(r), generator=gen)[:n][rank::world]] for r in own]).to(device)
        total = 0.0
        for i in range(0, perm.shape[1], step):
            idx = perm[:, i: i + step]  # (members, batch): each member's own rows
            nll, kl = net(*take(all_rows, idx if members > 1 else idx[0]), sample=True)
            loss = (nll.sum(-1) + beta * kl).mean(1).sum()  # members are independent: sum their losses
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            total += loss.item() * idx.shape[1]
        scores = member_scores(model, va if members > 1 else take(va, 0))
        sums = all_sum([total, *(scores * va_w).sum(1).tolist(), *va_w.sum(1).tolist()], device)
        train_loss = sums[0] / n / members
        member_val = np.asarray(sums[1: 1 + members]) / np.maximum(np.asarray(sums[1 + members:]), 1)
        val_loss = float(member_val.mean())
        history["train_loss"].append(train_loss)
        history["val_loss"].append(val_loss)
        if not np.isfinite(train_loss):
            history["stop"] = f"non-finite training loss at epoch {epoch}"
            log.warning(history["stop"])
            break
        better = member_val < best  # each member keeps its own best epoch
        best[better] = member_val[better]
        if better.any():
            _keep(best_state, model.state_dict(), torch.from_numpy(better).to(device))
        if val_loss < best_mean:  # the ensemble's loss decides when to stop
            if val_loss < best_mean - MIN_IMPROVEMENT * abs(best_mean):
                stale = 0
            best_mean, best_epoch = val_loss, epoch
        if epoch > config.warmup_epochs and best_epoch != epoch:
            stale += 1
        if progress:
            progress(epoch, epochs, {"train": train_loss, "val": val_loss})
        if stale >= config.patience:
            history["stop"] = f"early stopping: no better validation loss for {config.patience} epochs"
            break
    else:
        history["stop"] = f"reached max epochs ({epochs})"
    model.load_state_dict(best_state)
    model.eval()
    fit_decoder_variance(model, all_rows, prior_rows=config.variance_prior_rows,
                         holdout=torch.from_numpy(holdout).to(device))
    broadcast_state(model)
    history.update(best_epoch=best_epoch, best_val_loss=best_mean, epochs_run=len(history["val_loss"]))
    return history


@torch.no_grad()
def _keep(best: dict[str, torch.Tensor], current: dict[str, torch.Tensor], members: torch.Tensor) -> None:
    """Copy the improved ``members`` (bool, (members,)) of every tensor of ``current`` into ``best``
    (every parameter carries the member axis first; buffers without it are the same throughout)."""
    for name, t in current.items():
        if t.dim() and t.shape[0] == len(members) and t.is_floating_point():
            best[name][members] = t[members]
        else:
            best[name].copy_(t)
