"""The critics that density-ratio estimators train: T(x, z) on pairs and D(z) on latents alone,
their one default size (:data:`CRITIC_WIDTH`, :data:`CRITIC_BLOCKS`) and the one rule for their
½‖z‖² skip (:func:`resolve_gaussian_skip`).

References:
    > L. Mescheder, S. Nowozin, A. Geiger. Adversarial Variational Bayes: Unifying Variational
    > Autoencoders and Generative Adversarial Networks, ICML 2017 (arXiv:1701.04722).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..networks import ResidualCritic
from ..networks.shapes import as_event_batch, event_shape_of, flatten_event
from ..priors import Prior

# The residual critic of every critic-based estimator (avb, avb_ac, aae, kl_nwj, kl_dv, reverse_kl,
# js): 256 wide, 3 residual blocks (AVB's MNIST critic). The config's divergence.critic_width /
# critic_blocks default to the same numbers (tests/config/test_defaults.py checks that they agree).
# The aggregate prior critic (:mod:`.aggregate_ratio`) is a different, smaller one (128, 2 blocks).
CRITIC_WIDTH = 256
CRITIC_BLOCKS = 3


def resolve_gaussian_skip(
    setting: bool | None, prior: Prior, *, auto: bool, contrast_is_prior: bool, owner: str
) -> bool:
    """Whether a critic adds ½‖z‖² to its logit: the one rule, for the library and the CLI alike.

    ½‖z‖² = −log N(z; 0, I) + const is the known part of the optimal logit log q/r when the
    critic's contrast r (the distribution of its label-0 samples) is a standard normal; the network
    then learns only the rest (AVB's toy code). ``setting``:

    - ``None`` (*auto*, the default of every estimator and of the config): on iff the contrast is a
      standard normal *and* the estimator gains from the skip (``auto``): AVB (``avb``) and AAE
      (``aae``) with a prior whose ``is_standard_normal`` is True, i.e. p = N(0, I). Off for every
      other prior (½‖z‖² is then no part of log q/p), for ``avb_ac`` (its normalised q is already
      near its N(0, I) contrast, so the optimal T is near 0 and the skip is a term to undo) and for
      the f-divergence bounds ``kl_nwj``, ``kl_dv``, ``reverse_kl``, ``js`` (under NWJ/DV an
      untrained T with the skip makes E_p[e^{T−1}] infinite).
    - ``True``: on, where it means what it says: the contrast must be a standard normal, i.e. the
      prior is N(0, I), or the contrast is N(0, I) by construction (``avb_ac``'s normalised
      coordinates, ``contrast_is_prior`` False); otherwise a ValueError.
    - ``False``: off, always.

    With telescoping waymarks (``waymarks`` > 1) no critic has the fixed skip (each waymark pair's
    moment-matched Gaussian log-ratio takes its place): auto is off there and True is refused by
    the estimator.

    Args:
        setting: None (auto), True or False.
        prior: the prior p(z) the estimator compares q with.
        auto: whether the estimator's class turns the skip on under auto where it applies.
        contrast_is_prior: True when the critic's label-0 samples are the prior's.
        owner: the estimator's name, for the error message.
    """
    if setting is False:
        return False
    meaningful = prior.is_standard_normal or not contrast_is_prior
    if setting is None:
        return auto and meaningful
    if not meaningful:
        raise ValueError(
            f"gaussian_skip=True adds ½‖z‖² = −log N(z; 0, I) to {owner}'s critic, which is part "
            f"of log q/p only for a standard normal prior, not {type(prior).__name__}; use "
            "gaussian_skip=None (auto) or False"
        )
    return True


def check_gaussian_skip(setting: object, waymarks: int = 1) -> bool | None:
    """``setting`` if it is None, True or False (and True only for a single critic), else a
    ValueError saying what is allowed."""
    if setting is not None and not isinstance(setting, bool):
        raise ValueError(f"gaussian_skip must be None (auto), True or False, got {setting!r}")
    if setting is True and waymarks > 1:
        raise ValueError(
            "gaussian_skip=True has no effect with waymarks > 1 (each waymark pair's Gaussian "
            "log-ratio replaces the ½‖z‖² skip); use gaussian_skip=None (auto) or False"
        )
    return setting


class GaussianSkipEstimator:
    """Mixin of the estimators whose critic may add ½‖z‖²: keeps the setting (None/True/False) and
    resolves it for the prior it is used with (:func:`resolve_gaussian_skip`).

    Resolved in :meth:`use_prior`, which :class:`~implicit_vae.model.ImplicitVAE` calls when it is
    built (so a bad setting fails there) and ``estimate`` / ``critic_loss`` call with the prior they
    are given (so an estimator used on its own follows the same rule); the critic's own
    ``gaussian_skip`` flag holds the resolved value. Subclasses set the class attributes
    ``gaussian_skip_auto`` and ``contrast_is_prior`` and list their single critics in
    ``_skip_critics``.
    """

    gaussian_skip_auto: bool = False
    contrast_is_prior: bool = True

    def skip_for(self, prior: Prior) -> bool:
        """Whether the critic adds ½‖z‖² with ``prior``; a ValueError for True where it cannot."""
        return resolve_gaussian_skip(
            self.gaussian_skip,
            prior,
            auto=self.gaussian_skip_auto,
            contrast_is_prior=self.contrast_is_prior,
            owner=type(self).__name__,
        )

    def use_prior(self, prior: Prior) -> None:
        on = self.skip_for(prior)
        for critic in self._skip_critics():
            critic.gaussian_skip = on

    def _skip_critics(self) -> list[nn.Module]:
        raise NotImplementedError


class ConditionalCritic(torch.nn.Module):
    """T(x, z) = f([h(x), z]) + ½‖z‖²·``gaussian_skip``: a residual MLP on the concatenation.

    h is the x-branch: the flattened x by default, or a feature network such as
    :class:`~implicit_vae.networks.ConvCriticFeatures` for images. The skip term is −log N(z; 0, I)
    up to a constant, the part of the optimal T that is known when the contrast distribution is a
    standard normal; the network then only learns the rest (AVB toy code).

    Args:
        event_shape: the shape of one x, e.g. ``(64,)`` or ``(1, 28, 28)`` (an int means ``(d,)``).
        latent_dim, width, blocks, gaussian_skip: z's dimension and the residual MLP f.
        x_features: the x-branch h, any module x (N, *event_shape) -> (N, feature_dim).
        feature_dim: h's output width; read from ``x_features.out_features`` when not given.
    Shapes: x (N, *event_shape) or (N, prod(event_shape)), z (N, D) -> (N,).
    """

    def __init__(
        self,
        event_shape: int | Sequence[int],
        latent_dim: int,
        width: int,
        blocks: int,
        gaussian_skip: bool,
        x_features: nn.Module | None = None,
        feature_dim: int | None = None,
    ):
        super().__init__()
        self.event_shape = event_shape_of(event_shape)
        self.x_features = x_features
        if x_features is None:
            feature_dim = math.prod(self.event_shape)
        elif feature_dim is None:
            feature_dim = getattr(x_features, "out_features", None)
        if not isinstance(feature_dim, int) or feature_dim < 1:
            raise ValueError(
                f"the critic's x-branch {type(x_features).__name__} has no out_features; pass "
                "feature_dim, the width of its output (N, feature_dim)"
            )
        self.f = ResidualCritic(feature_dim + latent_dim, width, blocks)
        self.gaussian_skip = gaussian_skip

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = (
            flatten_event(x, self.event_shape)
            if self.x_features is None
            else self.x_features(as_event_batch(x, self.event_shape))
        )
        t = self.f(torch.cat([h, z], dim=-1))
        return t + 0.5 * z.pow(2).sum(-1) if self.gaussian_skip else t


def pair_with_x(x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten z (n, B, D) and repeat x (B, ...) to match: (n*B, ...), (n*B, D)."""
    n, b, d = z.shape
    return x.unsqueeze(0).expand(n, *x.shape).reshape(n * b, *x.shape[1:]), z.reshape(n * b, d)


def critic_maker(
    event_shape: int | Sequence[int],
    latent_dim: int,
    width: int,
    blocks: int,
    x_features: nn.Module | None,
) -> Callable[[bool], ConditionalCritic]:
    """``make(gaussian_skip) -> ConditionalCritic``; the first critic gets ``x_features`` itself and
    every further one (telescoping waymarks) a fresh copy of it with its own parameters."""
    made = 0

    def make(gaussian_skip: bool) -> ConditionalCritic:
        nonlocal made
        features = x_features if made == 0 or x_features is None else copy.deepcopy(x_features)
        made += 1
        return ConditionalCritic(event_shape, latent_dim, width, blocks, gaussian_skip, features)

    return make


class LatentCritic(nn.Module):
    """D(z) = f(z) + ½‖z‖²·``gaussian_skip``: a residual MLP on z alone; x is accepted and
    ignored so that it can stand in for :class:`~implicit_vae.divergences.avb.ConditionalCritic`.

    Shapes: x (N, ...) or None, z (N, D) -> (N,).
    """

    def __init__(self, latent_dim: int, width: int, blocks: int, gaussian_skip: bool):
        super().__init__()
        self.f = ResidualCritic(latent_dim, width, blocks)
        self.gaussian_skip = gaussian_skip

    def forward(self, x: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        t = self.f(z)
        return t + 0.5 * z.pow(2).sum(-1) if self.gaussian_skip else t
