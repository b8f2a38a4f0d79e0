"""How accurate is the gradient a learnable implicit prior gets, as the per-example KL grows?

The prior is affine, h_ψ(η) = Wη + b, so p_ψ = N(b, WWᵀ) and the KL term's gradient has a closed
form. The posteriors are Gaussians with x-dependent means, q(z|x) = N(a·x, σ²I) with x ~ N(0, I)
and a² + σ² = 1: the aggregate q(z) = E_x q(z|x) is N(0, I) whatever σ, so shrinking σ raises the
per-example KL E_x KL(q(z|x) ‖ p_ψ) = I(x; z) + KL(q(z) ‖ p_ψ) through the mutual information
(D/2)·log(1/σ²) alone, while the aggregate KL, and the gradient (which depends on ψ through the
aggregate only), stay fixed. For each σ it measures the cosine between the closed-form gradient and

- ``avb_exact_T``: the ratio surrogate through an x-conditional critic, here the *exact*
  log q(z|x) − log p_ψ(z) (``AVB`` called on its own: the route before the aggregate critic),
  against the closed form of the batch's own examples; ``avb_exact_T_1024`` the same with 8
  posterior samples per x, so with as many prior samples (1024) as the aggregate routes draw;
- ``dv_exact_T``, ``nwj_exact_T``: the pathwise gradient of the DV and NWJ bounds with the exact
  critic (log-ratio, and 1 + log-ratio), likewise;
- ``aggregate_exact_D``: the aggregate route (:class:`AggregateRatioCritic`'s surrogate) with the
  exact D = log N(z; 0, I) − log p_ψ(z), against the population closed form;
- ``aggregate_trained_D``: the same with D *trained* by its own logistic loss on fresh batches of
  the fixed q and p (``--critic-steps`` Adam steps, a small residual MLP): what a model uses.

One gradient per batch of B = 128 examples with one posterior sample each: the x-conditional routes
draw m·B = 128 prior samples, paired with the batch's x; the aggregate routes draw the
critic's default 1024 (their samples need no x). ``--batches`` batches for each of ``--seeds``
seeds; the median and quartiles of the cosine are reported.

    python benchmarks/prior_gradient.py          # ~2 min on one core
    python benchmarks/prior_gradient.py --quick  # smoke run

Writes ``benchmarks/results/prior_gradient.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from implicit_vae.divergences import AVB, NWJ, DonskerVaradhan
from implicit_vae.divergences.aggregate_ratio import AggregateRatioCritic
from implicit_vae.posteriors import PosteriorSample
from implicit_vae.priors import ImplicitPrior

RESULTS = Path(__file__).resolve().parent / "results"
D, BATCH = 8, 128
# σ² for per-example KLs of about 3, 10 and 16 nats (the aggregate KL is 0.94 nats for each).
SIGMA2 = (0.6, 0.1, 0.022)
# x-conditional routes: the estimator, the exact critic's offset, posterior samples per x
CONDITIONAL = {
    "avb_exact_T": (AVB, 0.0, 1),
    "avb_exact_T_1024": (AVB, 0.0, 8),
    "dv_exact_T": (DonskerVaradhan, 0.0, 1),
    "nwj_exact_T": (NWJ, 1.0, 1),
}
ROUTES = (*CONDITIONAL, "aggregate_exact_D", "aggregate_trained_D")


class Case:
    """q(z|x) = N(a·x, σ²I), x ~ N(0, I_D), a² + σ² = 1; p_ψ = N(b, WWᵀ) at (W0, B0)."""

    # a plain class: tests load this script without registering it, which a dataclass needs
    def __init__(self, sigma2: float, w0: torch.Tensor, b0: torch.Tensor):
        self.sigma2, self.w0, self.b0 = sigma2, w0, b0

    @property
    def a(self) -> float:
        return math.sqrt(1.0 - self.sigma2)

    def prior(self) -> ImplicitPrior:
        prior = ImplicitPrior(D, noise_dim=D, hidden=())
        with torch.no_grad():
            prior.generator[0].weight.copy_(self.w0)
            prior.generator[0].bias.copy_(self.b0)
        return prior

    def sample_x(self, b: int) -> torch.Tensor:
        return torch.randn(b, D)

    def sample_q(self, x: torch.Tensor, n: int = 1) -> torch.Tensor:
        """(n, B, D) samples of q(z|x_b)."""
        return self.a * x + math.sqrt(self.sigma2) * torch.randn(n, *x.shape)

    def kl_and_gradient(self, means: torch.Tensor | None) -> tuple[float, torch.Tensor]:
        """E KL(q(z|x) ‖ p_ψ) and its gradient w.r.t. (W, b) flattened, in closed form: over the
        examples whose posterior means are ``means`` (B, D), or over the population (None)."""
        w, b = self.w0.clone().requires_grad_(), self.b0.clone().requires_grad_()
        p = torch.distributions.MultivariateNormal(b, scale_tril=torch.linalg.cholesky(w @ w.T))
        if means is None:  # E_x KL = I(x; z) + KL(N(0, I) ‖ p)
            mi = 0.5 * D * math.log(1.0 / self.sigma2)
            agg = torch.distributions.MultivariateNormal(torch.zeros(D), torch.eye(D))
            kl = mi + torch.distributions.kl_divergence(agg, p)
        else:
            q = torch.distributions.MultivariateNormal(means, self.sigma2 * torch.eye(D))
            kl = torch.distributions.kl_divergence(q, p).mean()
        kl.backward()
        return kl.item(), torch.cat([w.grad.flatten(), b.grad])


def make_case(sigma2: float) -> Case:
    """The prior is N(0, I) moved and sheared a little (fixed, seed 0): aggregate KL 0.94 nats."""
    g = torch.Generator().manual_seed(0)
    w0 = 1.25 * torch.eye(D) + 0.15 * torch.randn(D, D, generator=g)
    b0 = 0.3 * torch.randn(D, generator=g)
    return Case(sigma2, w0, b0)


class ExactConditionalLogRatio(nn.Module):
    """T(x, z) = log q(z|x) − log p_ψ(z) + offset at ψ = (W0, B0), ψ copied into buffers."""

    def __init__(self, case: Case, offset: float = 0.0):
        super().__init__()
        self.case, self.offset = case, offset
        self.p = torch.distributions.MultivariateNormal(
            case.b0, scale_tril=torch.linalg.cholesky(case.w0 @ case.w0.T)
        )

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        q = torch.distributions.Normal(self.case.a * x, math.sqrt(self.case.sigma2))
        return q.log_prob(z).sum(-1) - self.p.log_prob(z) + self.offset


class ExactAggregateLogRatio(nn.Module):
    """D(z) = log N(z; 0, I) − log p_ψ(z) at ψ = (W0, B0); x ignored."""

    def __init__(self, case: Case):
        super().__init__()
        self.p = torch.distributions.MultivariateNormal(
            case.b0, scale_tril=torch.linalg.cholesky(case.w0 @ case.w0.T)
        )
        self.q = torch.distributions.MultivariateNormal(torch.zeros(D), torch.eye(D))

    def forward(self, x: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        return self.q.log_prob(z) - self.p.log_prob(z)


def _prior_gradient(prior: ImplicitPrior, value: torch.Tensor) -> torch.Tensor:
    value.backward()
    lin = prior.generator[0]
    return torch.cat([lin.weight.grad.flatten(), lin.bias.grad])


def conditional_route_gradient(case: Case, route: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch's gradient to ψ through an estimator on its own with the exact critic, and the
    batch's closed-form gradient."""
    prior = case.prior()
    cls, offset, n = CONDITIONAL[route]
    estimator = cls(D, D, width=8, blocks=1)
    estimator.critic = ExactConditionalLogRatio(case, offset)
    x = case.sample_x(BATCH)
    value = estimator.estimate(x, PosteriorSample(z=case.sample_q(x, n)), prior).mean()
    return _prior_gradient(prior, value), case.kl_and_gradient(case.a * x)[1]


def train_aggregate_critic(
    case: Case, steps: int, batch: int = 256, lr: float = 3e-3
) -> AggregateRatioCritic:
    """D (the model's default size) trained by its own loss on fresh batches of the fixed q
    (pooled over x) and p."""
    critic = AggregateRatioCritic(D)
    prior = case.prior().requires_grad_(False)
    opt = torch.optim.Adam(critic.parameters(), lr=lr)
    for step in range(steps):
        for group in opt.param_groups:  # a cosine decay settles the critic at the end
            group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / steps))
        opt.zero_grad()
        z_q = case.sample_q(case.sample_x(batch))
        critic.loss(z_q, prior).loss.backward()
        opt.step()
    return critic


def aggregate_route_gradient(case: Case, critic: AggregateRatioCritic) -> torch.Tensor:
    """One batch's gradient to ψ through the aggregate critic's surrogate (n = 1, B = 128)."""
    prior = case.prior()
    z_q = case.sample_q(case.sample_x(BATCH))
    return _prior_gradient(prior, critic.surrogate(z_q, prior).mean())


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def measure(sigma2: float, seeds: int, batches: int, critic_steps: int) -> dict:
    """Cosines to the closed form of every route at one σ², and the case's KLs."""
    case = make_case(sigma2)
    kl, population = case.kl_and_gradient(None)
    cosines: dict[str, list[float]] = {r: [] for r in ROUTES}
    for seed in range(seeds):
        torch.manual_seed(seed)
        trained = train_aggregate_critic(case, critic_steps)
        exact = AggregateRatioCritic(D)
        exact.critic = ExactAggregateLogRatio(case)
        for _ in range(batches):
            for route in CONDITIONAL:
                grad, reference = conditional_route_gradient(case, route)
                cosines[route].append(cosine(grad, reference))
            cosines["aggregate_exact_D"].append(
                cosine(aggregate_route_gradient(case, exact), population)
            )
            cosines["aggregate_trained_D"].append(
                cosine(aggregate_route_gradient(case, trained), population)
            )
    aggregate_kl = kl - 0.5 * D * math.log(1.0 / sigma2)
    return {
        "sigma2": sigma2,
        "per_example_kl": round(kl, 3),
        "aggregate_kl": round(aggregate_kl, 3),
        "cosine": {
            route: {
                "median": round(statistics.median(c), 3),
                "quartiles": [round(q, 3) for q in statistics.quantiles(c, n=4)[::2]],
                "n": len(c),
            }
            for route, c in cosines.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--critic-steps", type=int, default=600)
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 batches, 50 critic steps")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.batches, args.critic_steps = 1, 2, 50
    torch.set_num_threads(1)
    start = time.perf_counter()
    cells = [measure(s, args.seeds, args.batches, args.critic_steps) for s in SIGMA2]
    report = {
        "setup": {
            "latent_dim": D,
            "batch_size": BATCH,
            "posterior_samples_per_x": "1 (8 for avb_exact_T_1024)",
            "prior_samples": {
                "x_conditional": "B per posterior sample per x",
                "aggregate": AggregateRatioCritic(D).prior_samples,
            },
            "seeds": args.seeds,
            "batches_per_seed": args.batches,
            "critic_steps": args.critic_steps,
            "critic": "AggregateRatioCritic(D) defaults (width 128, 2 blocks), Adam lr 3e-3 "
            "cosine-decayed, 256 samples per side per step",
            "reference": "closed form: the batch's for the x-conditional routes, the population's "
            "for the aggregate routes",
        },
        "cells": cells,
        "seconds": round(time.perf_counter() - start, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "prior_gradient.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    for cell in cells:
        row = "  ".join(f"{r} {cell['cosine'][r]['median']:+.2f}" for r in ROUTES)
        print(f"KL {cell['per_example_kl']:5.1f} (aggregate {cell['aggregate_kl']:.2f}): {row}")
    print(f"wrote {path} ({report['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
