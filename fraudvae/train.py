"""The training loop: seeding, device choice, KL warm-up and early stopping on validation loss."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable

import numpy as np
import torch

from fraudvae.config import TrainConfig
from fraudvae.distributed import all_sum, broadcast_state, rank_and_world
from fraudvae.encoded import Encoded
from fraudvae.model import VAE, Tensors, posterior_mean_passes

log = logging.getLogger(__name__)
MIN_IMPROVEMENT = 1e-3  # relative gain in validation loss that resets the early-stopping patience


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
    def clip_grad_norm_(self, max_norm: float) -> None:
        """`torch.nn.utils.clip_grad_norm_(params, max_norm)`'s arithmetic (2-norm over all gradients,
        scaled by min(1, max_norm / (norm + 1e-6))), on this optimizer's parameters, which share one
        device and dtype: the same numbers, without walking the module tree and regrouping the
        tensors at every step (that costs a tenth of a small fit, bench/RESULTS.md)."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if grads:
            total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
            torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))

    @torch.no_grad()
    def step(self) -> None:
        from torch.optim.adam import adam

        grads = [p.grad for p in self.params]  # every one set by the backward pass
        adam(list(self.params), grads, self.exp_avgs, self.exp_avg_sqs, [], self.steps,  # type: ignore[arg-type]
             fused=True, amsgrad=False, beta1=self.betas[0], beta2=self.betas[1], lr=self.lr,
             weight_decay=self.weight_decay, eps=self.eps, maximize=False)


def derived_sizes(n_rows: int, config: TrainConfig) -> tuple[int, int, float]:
    """(batch size, maximum epochs, learning rate): batches grow with the data and epochs shrink,
    so that small and large training sets get a similar number of optimizer steps; the learning
    rate follows the square-root scaling rule for Adam."""
    batch = config.batch_size or int(min(512, max(32, 2 ** round(math.log2(max(n_rows, 1) / 40)))))
    steps_per_epoch = math.ceil(n_rows / batch)
    epochs = config.epochs or int(min(300, max(30, math.ceil(config.target_steps / steps_per_epoch))))
    lr = config.lr or float(min(4e-3, max(2e-3, 2e-3 * math.sqrt(batch / 128))))
    return batch, epochs, lr


def take(tensors: Tensors, idx: torch.Tensor | slice) -> Tensors:
    return tuple(None if t is None else t[idx] for t in tensors)  # type: ignore[return-value]


@torch.no_grad()
def fit_decoder_variance(model: VAE, tensors: Tensors, *, prior_rows: float) -> None:
    """Re-estimate each numeric feature's decoder variance on held-out rows.

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
    sq = ((((numeric - mean) ** 2 * observed).sum(1, keepdim=True) + prior_rows)
          / (observed.sum(0) + prior_rows).clamp_min(1.0))
    model.numeric_logvar.copy_(torch.log(sq.clamp_min(1e-6)))


def validation_loss(model: VAE, tensors: Tensors) -> torch.Tensor:
    """(n,) negative ELBO at the posterior mean, averaged over ensemble members (the scoring pass)."""
    was_training = model.training
    model.eval()
    out = [(nll.sum(-1) + kl).mean(0) for nll, kl in posterior_mean_passes(model, tensors)]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, device=tensors[0].device)


def train(model: VAE, train_data: Encoded, val_data: Encoded, config: TrainConfig,
          progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """Fit `model` in place; returns the history (loss per epoch, best epoch, stop reason).

    The weights of the epoch with the lowest validation negative ELBO are kept.

    In a joined process group (torchrun) every process is given the same rows and trains with
    DistributedDataParallel: each epoch's shuffle is the same everywhere and each process takes its
    own share of it, with batches of `batch / world` rows so that a step sees as many rows as one
    process would; validation loss is summed over the processes' shares of the validation rows, so
    early stopping decides the same everywhere; the processes end with rank 0's exact weights."""
    device = next(model.parameters()).device
    rank, world = rank_and_world()
    torch.manual_seed(config.seed + rank)  # latent noise differs by process; the shuffle below does not
    gen = torch.Generator().manual_seed(config.seed)
    batch, epochs, lr = derived_sizes(len(train_data), config)
    tr = train_data.to_tensors(device)
    va_all = val_data.to_tensors(device)
    va = take(va_all, slice(rank, None, world))  # this process's share of the validation loss
    opt = Adam(list(model.parameters()), lr=lr, weight_decay=config.weight_decay)
    history: dict = {"train_loss": [], "val_loss": [], "batch_size": batch, "max_epochs": epochs, "lr": lr}
    best, best_state, best_epoch, stale = math.inf, copy.deepcopy(model.state_dict()), 0, 0
    n = len(train_data) - len(train_data) % world  # equal shares: every process takes as many steps
    step = max(1, math.ceil(batch / world))
    net: torch.nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # copies rank 0's initial weights; (the buffer sync option's name changed across torch
        # releases, and the only buffer, a few category offsets, costs nothing to sync)
        net = DistributedDataParallel(model)
    model.train()
    for epoch in range(1, epochs + 1):
        beta = config.beta * min(1.0, epoch / config.warmup_epochs) if config.warmup_epochs else config.beta
        perm = torch.randperm(len(train_data), generator=gen)[:n][rank::world].to(device)
        total = 0.0
        for i in range(0, len(perm), step):
            idx = perm[i: i + step]
            nll, kl = net(*take(tr, idx), sample=True)
            loss = (nll.sum(-1) + beta * kl).mean(1).sum()  # members are independent: sum their losses
            opt.zero_grad()
            loss.backward()
            opt.clip_grad_norm_(10.0)
            opt.step()
            total += loss.item() * len(idx)
        val = validation_loss(model, va)
        total, val_sum, val_count = all_sum([total, float(val.sum()), len(val)], device)
        train_loss, val_loss = total / n, val_sum / val_count
        history["train_loss"].append(train_loss)
        history["val_loss"].append(val_loss)
        if not np.isfinite(train_loss):
            history["stop"] = f"non-finite training loss at epoch {epoch}"
            log.warning(history["stop"])
            break
        if val_loss < best:
            if val_loss < best - MIN_IMPROVEMENT * abs(best):
                stale = 0
            best, best_epoch = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
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
    fit_decoder_variance(model, va_all, prior_rows=config.variance_prior_rows)
    broadcast_state(model)
    history.update(best_epoch=best_epoch, best_val_loss=best, epochs_run=len(history["val_loss"]))
    return history
