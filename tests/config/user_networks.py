"""A user's own network builders, named by import path in tests (``tests.config.user_networks:...``)."""

import math

from torch import nn


def conv_encoder(event_shape, latent_dim):
    """Images (B, 1, 8, 8) -> 32 features: a user's own small conv net."""
    channels = event_shape[0]
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * math.ceil(event_shape[1] / 2) * math.ceil(event_shape[2] / 2), 32),
        nn.ReLU(),
    )  # fmt: skip


def decoder(event_shape, latent_dim):
    return nn.Sequential(nn.Linear(latent_dim, math.prod(event_shape)), nn.Unflatten(1, event_shape))


def critic_features(event_shape, latent_dim):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(event_shape), 16), nn.ReLU())


def wrong_encoder(event_shape, latent_dim):
    """Keeps the image shape: not (B, F) features."""
    return nn.Conv2d(event_shape[0], 2, 3, padding=1)


def not_a_module(event_shape, latent_dim):
    return "encoder"


def wrong_decoder(event_shape, latent_dim):
    """Ten values per code where an 8x8 image needs 64."""
    return nn.Linear(latent_dim, 10)
