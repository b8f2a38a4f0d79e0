"""The semi-implicit posterior q(z|x) = ∫ N(z; μ(x, ε), diag σ²) q(ε) dε (SIVI, UIVI).

The mixing layer ε -> μ(x, ε) is implicit (a network on [x, ε]); the conditional layer is an
explicit, reparameterisable Gaussian. The marginal has no closed form, but the conditional density of z given
its generating ε is exact, which the ``sivi`` estimator and the IW bound of
:mod:`implicit_vae.evaluation.semi_implicit` use through a mixture over ε.

References:
    > M. Yin, M. Zhou. Semi-Implicit Variational Inference, ICML 2018.
    > M. K. Titsias, F. J. R. Ruiz. Unbiased Implicit Variational Inference, AISTATS 2019.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..networks import MLP, NoiseInjectedMLP
from ..networks.noise import noise_net_draws
from .base import Posterior, PosteriorSample
from .implicit import moment_draws

SIGMA_KINDS = ("global", "x", "x_eps")
_LOG_2PI = math.log(2.0 * math.pi)

Components = Callable[[int], tuple[torch.Tensor, torch.Tensor]]
"""``k -> (loc, scale)``, each (k, B, D): k fresh mixing components for the batch a sample is of."""
Conditional = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``eps (m, B, E) -> (loc, scale)``, each (m, B, D): the conditional N(z; μ(x, ε), σ²) at given ε."""


@dataclass
class SemiImplicitSample(PosteriorSample):
    """A :class:`PosteriorSample` that also carries how each z was generated.

    Attributes (beyond the base class's):
        eps: the generating mixing noise ε, shape (n, B, noise_dim).
        loc, scale: μ(x, ε) and σ of the conditional N(z; loc, diag scale²) each z was drawn from,
            shape (n, B, D); differentiable like ``z``.
        components: ``k -> (loc, scale)`` (k, B, D) of k fresh, independent mixing draws for the
            same x (differentiable); what a mixture estimate of log q(z|x) needs.
        conditional: ``eps (m, B, E) -> (loc, scale)`` (m, B, D), μ(x, ε) and σ at given mixing
            noise for the same x (differentiable); what sampling the reverse conditional
            q(ε|z, x) needs (the ``uivi`` estimator).
    """

    eps: torch.Tensor | None = None
    loc: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    components: Components | None = None
    conditional: Conditional | None = None

    def detach(self) -> SemiImplicitSample:
        tensors = [None if t is None else t.detach() for t in self._fields()]
        base, extra = tensors[:6], tensors[6:]
        return SemiImplicitSample(*base, self.moment_draws, *extra, components=self.components,
                                  conditional=self.conditional)  # fmt: skip

    def _fields(self) -> tuple:
        return (*super()._fields(), self.eps, self.loc, self.scale)


def gaussian_log_prob(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log N(z; loc, diag scale²), summed over the last dimension (shapes broadcast)."""
    r = (z - loc) / scale
    return -0.5 * (r.pow(2) + _LOG_2PI).sum(-1) - scale.log().sum(-1)


def log_mixture_density(
    z: torch.Tensor,
    loc0: torch.Tensor | None,
    scale0: torch.Tensor | None,
    loc: torch.Tensor,
    scale: torch.Tensor,
) -> torch.Tensor:
    """log q̂(z) = log [(1/(K+1)) Σ_{k=0..K} N(z; loc_k, scale_k²)], by logsumexp; shape (n, B).

    Args:
        z: samples, (n, B, D).
        loc0, scale0: the component each z was generated from, (n, B, D) (the k = 0 term), or
            None to leave it out (then the mean runs over the K fresh components only: biased low
            as an estimate of log q, so no bound; see SIVI Sec. 3).
        loc, scale: K fresh components, (K, B, D) shared by the n samples of each x, or
            (n, K, B, D), one set per sample.
    """
    fresh = gaussian_log_prob(z.unsqueeze(1), loc, scale)  # (n, K, B)
    if loc0 is not None:
        fresh = torch.cat([gaussian_log_prob(z, loc0, scale0).unsqueeze(1), fresh], dim=1)
    return torch.logsumexp(fresh, dim=1) - math.log(fresh.shape[1])


class SemiImplicitPosterior(Posterior):
    """Semi-implicit q(z|x) = ∫ N(z; μ(x, ε), diag σ²) N(ε; 0, I) dε, sampled as
    z = μ(x, ε) + σ ⊙ η, η ~ N(0, I) (reparameterised through ε and η).

    μ is a network on [x, ε] (by default :class:`NoiseInjectedMLP`, with the noise also added at the
    hidden layers under ``inject_hidden``). σ is one of:

    - ``"global"``: one learned vector (UIVI's setting);
    - ``"x"``: log σ(x) from a separate network of x (SIVI's ``logv(x)``), ``sigma_net``;
    - ``"x_eps"``: log σ(x, ε), the second half of the mixing network's output (``net`` returns 2D).

    In every case log σ starts near log ``sigma_init`` (a constant offset). The marginal density has
    no closed form (``has_density`` False); the conditional one is exact
    (:meth:`conditional_log_prob`). Moments for adaptive contrast come from ``moment_samples``
    independent mixing draws per x, Rao-Blackwellised over η: E[z|x] = E_ε[μ], Cov[z|x] =
    Cov_ε[μ] + E_ε[diag σ²] (lower variance than moments of sampled z; see
    :class:`~implicit_vae.posteriors.ImplicitPosterior` for why they are independent of z).

    Args:
        event_shape, latent_dim: as for :class:`Posterior`.
        noise_dim: dimension of the mixing noise ε.
        hidden, act, inject_hidden: the default mixing network (and σ(x) network).
        moment_samples: m >= 2 mixing draws per x for the moments; None: 10·D.
        sigma: ``"global"``, ``"x"`` or ``"x_eps"`` (above).
        sigma_init: the initial σ.
        net: the mixing network instead of the default, ``net(x, eps)`` with x (N, *event_shape),
            eps (N, noise_dim) -> (N, D) (or (N, 2D): μ and log σ, for ``sigma="x_eps"``).
        sigma_net: for ``sigma="x"``, the network x (N, *event_shape) -> log σ (N, D) instead of
            the default MLP.

    References:
        > M. Yin, M. Zhou. Semi-Implicit Variational Inference, ICML 2018.
        > M. K. Titsias, F. J. R. Ruiz. Unbiased Implicit Variational Inference, AISTATS 2019.
    """

    has_moments = True

    def __init__(
        self,
        event_shape: int | Sequence[int],
        latent_dim: int,
        noise_dim: int = 16,
        hidden: Sequence[int] = (256, 256),
        act: str = "elu",
        inject_hidden: bool = False,
        moment_samples: int | None = None,
        sigma: str = "global",
        sigma_init: float = 0.5,
        *,
        net: nn.Module | None = None,
        sigma_net: nn.Module | None = None,
    ):
        super().__init__(event_shape, latent_dim)
        if noise_dim < 1:
            raise ValueError(f"noise_dim must be >= 1, got {noise_dim}")
        if sigma not in SIGMA_KINDS:
            raise ValueError(f"sigma must be one of {', '.join(SIGMA_KINDS)}, got {sigma!r}")
        if not (isinstance(sigma_init, (int, float)) and sigma_init > 0):
            raise ValueError(f"sigma_init must be a number > 0, got {sigma_init!r}")
        moment_samples = moment_draws(moment_samples, latent_dim)
        if sigma_net is not None and sigma != "x":
            raise ValueError(f"sigma_net is read only with sigma='x', not sigma={sigma!r}")
        self.noise_dim, self.moment_samples, self.sigma = noise_dim, moment_samples, sigma
        self.log_sigma_init = math.log(sigma_init)
        out = 2 * latent_dim if sigma == "x_eps" else latent_dim
        self.net = (
            net
            if net is not None
            else NoiseInjectedMLP(self.event_shape, noise_dim, hidden, out, act, inject_hidden)
        )
        self.log_sigma = nn.Parameter(torch.zeros(latent_dim)) if sigma == "global" else None
        if sigma == "x":
            default = sigma_net is None
            self.sigma_net = MLP(self.event_shape, hidden, latent_dim, act) if default else sigma_net
        else:
            self.sigma_net = None

    # -- public: validate, then compute -------------------------------------------------------

    def sample_with_mixing(self, x: torch.Tensor, n: int = 1, moments: bool = False
                           ) -> SemiImplicitSample:
        """As :meth:`sample` (z (n, B, D)), typed: the sample carries the generating ε (n, B, E),
        the conditional's loc and scale (n, B, D) and a draw of fresh mixing components."""
        return self.sample(x, n, moments)

    def mixing_components(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
        """``k`` fresh mixing draws per example: (eps (k, B, E), loc (k, B, D), scale (k, B, D))."""
        x = self._check_x(x)
        if k < 1:
            raise ValueError(f"number of mixing draws must be >= 1, got {k}")
        return self._mix(x, k)

    def conditional_log_prob(self, z: torch.Tensor, x: torch.Tensor, eps: torch.Tensor
                             ) -> torch.Tensor:
        """log N(z; μ(x, ε), diag σ(x, ε)²) for z (n, B, D) and eps (n, B, E); returns (n, B)."""
        x = self._check_x(x)
        b = x.shape[0]
        if z.dim() != 3 or z.shape[1:] != (b, self.latent_dim):
            raise ValueError(f"z must have shape (n, {b}, {self.latent_dim}), got {tuple(z.shape)}")
        if eps.shape != (z.shape[0], b, self.noise_dim):
            raise ValueError(
                f"eps must have shape ({z.shape[0]}, {b}, {self.noise_dim}), got {tuple(eps.shape)}"
            )
        loc, scale = self._conditional(x, eps)
        return gaussian_log_prob(z, loc, scale)

    def mixture_log_prob(self, z: torch.Tensor, x: torch.Tensor, mixing_samples: int,
                         eps: torch.Tensor | None = None) -> torch.Tensor:
        """The mixture estimate log q̂(z|x) of SIVI, shape (n, B), for z (n, B, D).

        With ``eps`` (n, B, E), the noise that generated each z, it is the k = 0 term of
        (1/(K+1)) Σ_k N(z; μ(x, ε_k), σ²) and E[log q̂] >= log q (the SIVI bound); without it the
        average runs over the K = ``mixing_samples`` fresh draws only (UIVI's evaluation), which is
        biased low. The fresh draws are shared by the n samples of each x.
        """
        x = self._check_x(x)
        if z.dim() != 3 or z.shape[1:] != (x.shape[0], self.latent_dim):
            raise ValueError(
                f"z must have shape (n, {x.shape[0]}, {self.latent_dim}), got {tuple(z.shape)}"
            )
        if mixing_samples < 1:
            raise ValueError(f"mixing_samples must be >= 1, got {mixing_samples}")
        _, loc, scale = self._mix(x, mixing_samples)
        if eps is None:
            return log_mixture_density(z, None, None, loc, scale)
        if eps.shape != (*z.shape[:2], self.noise_dim):
            raise ValueError(
                f"eps must have shape {(*z.shape[:2], self.noise_dim)}, got {tuple(eps.shape)}"
            )
        loc0, scale0 = self._conditional(x, eps)
        return log_mixture_density(z, loc0, scale0, loc, scale)

    # -- private ----------------------------------------------------------------------------

    def _conditional(self, x: torch.Tensor, eps: torch.Tensor, x_part: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """loc, scale (n, B, D) of N(z | x, ε) for x (B, *event_shape) and eps (n, B, E);
        ``x_part`` is the default network's first-layer x-part, if computed before."""
        width = 2 * self.latent_dim if self.sigma == "x_eps" else self.latent_dim
        out = noise_net_draws(self.net, x, eps, width, x_part)
        if self.sigma == "x_eps":
            loc, log_scale = out.chunk(2, dim=-1)
        else:
            loc = out
            if self.sigma == "global":
                log_scale = self.log_sigma.expand_as(loc)
            else:
                log_scale = self._sigma_x(x).unsqueeze(0).expand_as(loc)
        return loc, (log_scale + self.log_sigma_init).exp()

    def _sigma_x(self, x: torch.Tensor) -> torch.Tensor:
        out = self.sigma_net(x)
        if out.shape != (x.shape[0], self.latent_dim):
            raise ValueError(
                f"{type(self.sigma_net).__name__} returned shape {tuple(out.shape)}; expected "
                f"({x.shape[0]}, {self.latent_dim})"
            )
        return out

    def _mix(self, x: torch.Tensor, k: int, x_part: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        eps = torch.randn(k, x.shape[0], self.noise_dim, device=x.device, dtype=x.dtype)
        return (eps, *self._conditional(x, eps, x_part))

    def _sample_without_moments(self, x: torch.Tensor, n: int) -> SemiImplicitSample:
        # The sample, its fresh components and UIVI's 50 HMC evaluations all share one x-part.
        x_part = self.net.x_part(x) if isinstance(self.net, NoiseInjectedMLP) else None
        eps, loc, scale = self._mix(x, n, x_part)
        z = loc + scale * torch.randn_like(loc)
        return SemiImplicitSample(
            z=z, eps=eps, loc=loc, scale=scale, components=lambda k: self._mix(x, k, x_part)[1:],
            conditional=lambda e: self._conditional(x, e, x_part),
        )

    def _sample(self, x: torch.Tensor, n: int) -> SemiImplicitSample:
        q = self._sample_without_moments(x, n)
        with torch.no_grad():  # constants to the estimators, as for ImplicitPosterior
            _, loc, scale = self._mix(x, self.moment_samples)  # (m, B, D)
            q.mean = loc.mean(0)
            centred = loc - q.mean
            cov = torch.einsum("mbi,mbj->bij", centred, centred) / (loc.shape[0] - 1)
            q.cov = cov + torch.diag_embed(scale.pow(2).mean(0))
            q.var = torch.diagonal(q.cov, dim1=1, dim2=2).clone()
            q.moment_draws = self.moment_samples
        return q
