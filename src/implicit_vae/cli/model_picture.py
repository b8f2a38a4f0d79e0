"""A printed picture of a model's information flow, with tensor shapes and parameter counts."""

from __future__ import annotations

import torch
from torch import nn

from ..model import ImplicitVAE


def _count(module: nn.Module) -> str:
    return f"{sum(p.numel() for p in module.parameters() if p.requires_grad):,} params"


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


@torch.no_grad()
def describe(
    model: ImplicitVAE, data_dim: int, batch: int = 32, n_samples: int = 1, dataset: str = ""
) -> str:
    """Run one dummy batch through ``model`` and return a multi-line description of the data flow."""
    x = torch.rand(batch, data_dim).round()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        terms = model(x, n_samples)
        critic = model.critic_loss(x, n_samples)
        logits = model.likelihood.decoder(terms.q.z)
        z_p = model.prior.sample(batch)
    post, prior, lik, est = model.posterior, model.prior, model.likelihood, model.estimator
    noise = getattr(post, "noise_dim", None)
    sampler = (
        (
            f"g(ε, x), ε ~ N(0, I_{noise})"
            + (f" × {post.n_basis} bases" if hasattr(post, "n_basis") else "")
        )
        if noise
        else "reparameterised N(μ(x), L(x) L(x)ᵀ)"
        if terms.q.cov is not None
        else "reparameterised N(μ(x), σ²(x))"
    )
    kind = "KL" if est.is_kl else est.divergence_name
    estimate = (
        "exact"
        if not est.has_critic and type(est).__name__.startswith(("Analytic", "MonteCarlo"))
        else "estimate"
    )
    lines = [
        f"ImplicitVAE on {dataset or 'data'}: x {_shape(x)} (B = {batch}, n = {n_samples} z per x)",
        "",
        f"  sampler   x {_shape(x)} ─► {type(post).__name__}: {sampler}  ({_count(post)})",
        f"            ─► z {_shape(terms.q.z)}"
        + ("   + moments μ, σ² " + _shape(terms.q.mean) if terms.q.mean is not None else "")
        + (", Σ " + _shape(terms.q.cov) if terms.q.cov is not None else ""),
        f"  decoder   z {_shape(terms.q.z)} ─► {type(lik).__name__} ─► parameters {_shape(logits)}"
        f"  ({_count(lik)})",
        f"            ─► reconstruction E_q log p(x|z) {_shape(terms.reconstruction)}",
        f"  prior     {type(prior).__name__} ─► z_p {_shape(z_p)}"
        + (f"  ({_count(prior)})" if any(True for _ in prior.parameters()) else ""),
        f"  {kind:<9} (x, z) and prior side ─► {type(est).__name__}"
        + (f" critic ({_count(est)}) ─► adversarial loss (scalar)" if est.has_critic else "")
        + f" ─► {kind} {estimate} {_shape(terms.kl)}",
        "",
        f"  model loss  = mean(−reconstruction + {model.beta:g}·{kind})   = {float(terms.loss):.3f}"
        " at initialisation",
    ]
    if est.has_critic:
        lines.append(
            f"  critic loss = {float(critic.loss):.3f} at initialisation "
            f"(accuracy {critic.accuracy:.2f})"
        )
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lines.append(
        f"  total: {total:,} trainable parameters "
        f"({sum(p.numel() for p in model.model_parameters()):,} model, "
        f"{sum(p.numel() for p in model.critic_parameters()):,} critic)"
    )
    return "\n".join(lines)
