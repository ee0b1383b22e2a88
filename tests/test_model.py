import math

import torch

from fraudvae.model import VAE, ModelConfig, kl_divergence
from fraudvae.train import Adam


def _batch(n=8, members=3):
    cfg = ModelConfig(3, 2, (4, 5), (16, 8), 2, members)
    g = torch.Generator().manual_seed(0)
    return cfg, (torch.randn(n, cfg.n_numeric, generator=g), torch.ones(n, cfg.n_terms),
                 torch.randint(0, 2, (n, cfg.n_binary), generator=g).float(),
                 torch.stack([torch.randint(0, k, (n,), generator=g) for k in cfg.cardinalities], 1))


def test_shapes_and_determinism_at_the_mean():
    cfg, batch = _batch()
    torch.manual_seed(0)
    model = VAE(cfg).eval()
    nll, kl = model(*batch, sample=False)
    assert nll.shape == (3, 8, cfg.n_terms) and kl.shape == (3, 8)
    nll2, kl2 = model(*batch, sample=False)
    assert torch.equal(nll, nll2) and torch.equal(kl, kl2)


def test_members_are_independent():
    """Changing one member's weights changes only that member's output."""
    cfg, batch = _batch()
    torch.manual_seed(0)
    model = VAE(cfg).eval()
    before, _ = model(*batch, sample=False)
    with torch.no_grad():
        model.to_out.weight[1] += 1.0
    after, _ = model(*batch, sample=False)
    assert torch.equal(before[0], after[0]) and torch.equal(before[2], after[2])
    assert not torch.equal(before[1], after[1])


def test_no_mask_equals_all_observed():
    cfg, (num, obs, b, c) = _batch()
    model = VAE(cfg).eval()
    a, _ = model(num, obs, b, c, sample=False)
    n, _ = model(num, None, b, c, sample=False)
    assert torch.equal(a, n)


def test_masked_terms_are_exactly_zero_and_others_unchanged():
    """A gap is not evidence: every kind of term (numeric, Bernoulli, softmax) can be masked."""
    cfg, (num, obs, b, c) = _batch()
    model = VAE(cfg).eval()
    full, _ = model(num, obs, b, c, sample=False)
    mask = obs.clone()
    mask[0, 0] = mask[1, cfg.n_numeric] = mask[2, cfg.n_terms - 1] = 0.0  # a number, a flag, a category
    part, _ = model(num, mask, b, c, sample=False)
    assert part[:, 0, 0].eq(0).all() and part[:, 1, cfg.n_numeric].eq(0).all() and part[:, 2, -1].eq(0).all()
    keep = mask.bool().expand_as(full)
    assert torch.equal(part[keep], full[keep])


def test_extreme_inputs_stay_finite():
    cfg, (num, obs, b, c) = _batch()
    model = VAE(cfg)
    nll, kl = model(num * 1e3, obs, b, c, sample=True)
    assert torch.isfinite(nll).all() and torch.isfinite(kl).all()


def test_kl_is_zero_at_the_prior():
    assert torch.allclose(kl_divergence(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4)), torch.zeros(2, 3))


def test_default_sizes_grow_with_inputs():
    small, big = ModelConfig.default(3, 0, ()), ModelConfig.default(100, 10, (20, 30))
    assert small.latent_dim <= big.latent_dim and small.hidden[0] <= big.hidden[0]


def test_decoder_variance_is_shrunk_toward_the_marginal():
    from fraudvae.train import fit_decoder_variance

    torch.manual_seed(0)
    model = VAE(ModelConfig(2, 0, (), (8, 4), 2)).eval()
    n = 400
    numeric = torch.randn(n, 2)
    observed = torch.ones(n, 2)
    observed[100:, 1] = 0.0  # the second feature observed on 100 rows only
    tensors = (numeric, observed, torch.zeros(n, 0), torch.zeros(n, 0, dtype=torch.long))
    with torch.no_grad():
        mean = model.decode(model.encode(model.encode_input(*tensors[0:1], tensors[2], tensors[3]))[0])[0]
    sq = ((numeric - mean) ** 2 * observed).sum(0)
    fit_decoder_variance(model, tensors, prior_rows=0.0)
    torch.testing.assert_close(model.numeric_logvar.exp()[0, 0], sq / observed.sum(0))
    fit_decoder_variance(model, tensors, prior_rows=300.0)
    expected = (sq + 300.0) / (observed.sum(0) + 300.0)
    torch.testing.assert_close(model.numeric_logvar.exp()[0, 0], expected)
    # the feature seen on fewer rows moves further toward 1
    raw = sq / observed.sum(0)
    assert (expected[1] - 1).abs() / (raw[1] - 1).abs() < (expected[0] - 1).abs() / (raw[0] - 1).abs()


def test_mixture_prior_with_one_standard_component_is_the_standard_kl():
    from fraudvae.model import mixture_kl

    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(2, 5, 3, generator=g), torch.randn(2, 5, 3, generator=g).clamp(-2, 2)
    got = mixture_kl(mu, logvar, torch.zeros(2, 1), torch.zeros(2, 1, 3), torch.zeros(2, 1, 3))
    assert torch.allclose(got, kl_divergence(mu, logvar), atol=1e-6)


def test_mixture_kl_bounds_the_true_kl_and_tightens_as_components_part():
    """-log sum_c w_c exp(-KL_c) is at least KL(q || mixture) (a Monte Carlo estimate with many
    draws) and at most min_c (KL_c - log w_c); with far-apart components it equals the true KL."""
    from fraudvae.model import gaussian_kl, mixture_kl

    g = torch.Generator().manual_seed(2)
    mu, logvar = torch.tensor([[[0.3, -0.2]]], dtype=torch.float64), torch.tensor([[[-1.0, -0.5]]], dtype=torch.float64)
    log_w = torch.log(torch.tensor([[0.3, 0.7]], dtype=torch.float64))
    for spread, tight in ((0.5, False), (40.0, True)):
        means = torch.tensor([[[0.0, 0.0], [spread, spread]]], dtype=torch.float64)
        lvs = torch.zeros(1, 2, 2, dtype=torch.float64)
        bound = mixture_kl(mu, logvar, log_w, means, lvs)[0, 0]
        z = mu[0, 0] + torch.exp(0.5 * logvar[0, 0]) * torch.randn(200_000, 2, generator=g, dtype=torch.float64)
        log_q = (-0.5 * (((z - mu[0, 0]) ** 2) / logvar[0, 0].exp() + logvar[0, 0] + math.log(2 * math.pi))).sum(1)
        log_pc = (-0.5 * ((z.unsqueeze(1) - means[0]) ** 2 + math.log(2 * math.pi))).sum(-1)  # (draws, C)
        true_kl = (log_q - torch.logsumexp(log_w[0] + log_pc, -1)).mean()
        per = gaussian_kl(mu.unsqueeze(-2), logvar.unsqueeze(-2), means.unsqueeze(-3), lvs.unsqueeze(-3))[0, 0]
        assert bound >= true_kl - 0.01
        assert bound <= (per - log_w[0]).min() + 1e-9
        assert (abs(bound - true_kl) < 0.01) == tight


def test_mixture_prior_is_learned_saved_and_sampled():
    cfg, batch = _batch()
    cfg = ModelConfig(cfg.n_numeric, cfg.n_binary, cfg.cardinalities, cfg.hidden, cfg.latent_dim, 3, prior_components=4)
    torch.manual_seed(0)
    model = VAE(cfg)
    assert {"prior_logit", "prior_mean", "prior_logvar"} <= set(model.state_dict())
    nll, kl = model(*batch, sample=True)
    (nll.sum() + kl.sum()).backward()
    assert model.prior_mean.grad is not None and model.prior_mean.grad.abs().sum() > 0
    numeric, binary, categorical = model.sample(50, torch.Generator().manual_seed(0))
    assert numeric.shape == (50, cfg.n_numeric) and torch.isfinite(numeric).all()


def test_the_optimizers_gradient_clipping_is_torchs():
    """`Adam.clip_grad_norm_` gives exactly `torch.nn.utils.clip_grad_norm_`'s gradients, scaled or
    not (a mixture prior's parameters included)."""
    cfg, batch = _batch()
    torch.manual_seed(0)
    model = VAE(ModelConfig(cfg.n_numeric, cfg.n_binary, cfg.cardinalities, cfg.hidden, cfg.latent_dim,
                            cfg.members, prior_components=3))
    nll, kl = model(*batch)
    (nll.sum() + kl.sum()).backward()
    params = list(model.parameters())
    raw = [p.grad.clone() for p in params]
    for max_norm in (1e-3, 1e6):
        for p, g in zip(params, raw, strict=True):
            p.grad = g.clone()
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        expected = [p.grad.clone() for p in params]
        for p, g in zip(params, raw, strict=True):
            p.grad = g.clone()
        Adam(params, lr=1e-3, weight_decay=0.0).clip_grad_norm_(max_norm)
        assert all(torch.equal(p.grad, g) for p, g in zip(params, expected, strict=True))
        assert all(torch.equal(g, r) for g, r in zip(expected, raw, strict=True)) == (max_norm == 1e6)
