"""``implicit-vae describe``: the model's information flow with tensor shapes."""

from __future__ import annotations

import argparse

from ..config import load_config
from .common import add_config_options, resolve_config


def add_parser(sub) -> None:
    """The ``describe`` sub-command and its options."""
    describe = sub.add_parser("describe", help="print the model's information flow with shapes")
    add_config_options(describe)


def run(args: argparse.Namespace) -> None:
    cfg = load_config(resolve_config(args.config), args.set)  # checked before torch is imported
    from ..config.factory import build_model
    from ..data import load_dataset
    from .model_picture import describe

    data = load_dataset(cfg.data, cfg.train.seed, likelihood=cfg.model.likelihood)
    model = build_model(cfg, data.event_shape)
    print(
        describe(
            model,
            data.data_dim,
            batch=cfg.train.batch_size,
            n_samples=cfg.train.n_samples,
            dataset=f"{cfg.data.name} ({data.data_dim} dims)",
        )
    )
