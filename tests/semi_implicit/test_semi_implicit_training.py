"""A semi-implicit posterior built from the config trains a few steps with ``sivi`` and with
``avb_ac`` (finite losses, moving weights); the new typed keys reach their classes and are refused
where they do not apply."""

from __future__ import annotations

import pytest
import torch

from implicit_vae.config import ConfigError, load_config
from implicit_vae.config.factory import build_model
from implicit_vae.divergences import SIVI
from implicit_vae.posteriors import SemiImplicitPosterior

DATA_DIM = 12
SMALL = ["model.hidden=[16]", "model.noise_dim=3", "model.latent_dim=2",
         "divergence.critic_width=16", "divergence.critic_blocks=1"]  # fmt: skip


def _train(overrides: list[str], steps: int = 5) -> tuple[list[float], float]:
    model = build_model(load_config(overrides=[*SMALL, *overrides]), DATA_DIM)
    x = torch.randint(0, 2, (16, DATA_DIM)).float()
    opt = torch.optim.Adam(model.model_parameters(), lr=1e-2)
    critic = model.critic_parameters()
    critic_opt = torch.optim.Adam(critic, lr=1e-2) if critic else None
    before = [p.detach().clone() for p in model.posterior.parameters()]
    losses = []
    for _ in range(steps):
        if critic_opt is not None:
            critic_opt.zero_grad()
            model.critic_loss(x).loss.backward()
            critic_opt.step()
        opt.zero_grad()
        loss = model(x).loss
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    moved = sum(float((p.detach() - b).abs().sum()) for p, b in zip(model.posterior.parameters(),
                                                                  before))  # fmt: skip
    return losses, moved


@pytest.mark.parametrize("estimator", ["sivi", "avb_ac"])
@pytest.mark.parametrize("sigma", ["global", "x_eps"])
def test_semi_implicit_trains_from_the_config(estimator, sigma):
    losses, moved = _train([
        "model.posterior=semi_implicit", f"divergence.name={estimator}",
        f"model.posterior_sigma={sigma}", "divergence.mixing_samples=4" if estimator == "sivi"
        else "model.moment_samples=8",
    ])  # fmt: skip
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert moved > 0


def test_typed_keys_reach_the_classes():
    model = build_model(load_config(overrides=[
        *SMALL, "model.posterior=semi_implicit", "divergence.name=sivi",
        "model.posterior_sigma=x", "divergence.mixing_samples=7",
    ]), DATA_DIM)  # fmt: skip
    assert isinstance(model.posterior, SemiImplicitPosterior) and model.posterior.sigma == "x"
    assert isinstance(model.estimator, SIVI) and model.estimator.mixing_samples == 7
    assert SIVI(DATA_DIM, 2).mixing_samples == load_config().divergence.mixing_samples == 100


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.posterior=implicit", "divergence.name=sivi"],
     "'sivi' cannot be used here: SIVI needs the mixing noise"),
    (["model.posterior=semi_implicit", "divergence.name=avb", "divergence.mixing_samples=5"],
     "divergence.mixing_samples: 5 does not apply"),
    (["model.posterior=implicit", "divergence.name=avb", "model.posterior_sigma=x"],
     "model.posterior_sigma: 'x' does not apply"),
])  # fmt: skip
def test_misplaced_options_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_model(load_config(overrides=[*SMALL, *overrides]), DATA_DIM)
