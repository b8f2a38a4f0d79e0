"""Figure (f) of ``benchmarks/speed.py``: a whole epoch of our Gaussian VAE and of our AAE against
pythae's ``VAE`` and ``Adversarial_AE`` on identical data, networks and batch size.

pythae (the ``peers`` extra, ``pip install -e '.[peers]'``) gets *copies of our own networks*: the
encoder that outputs (μ, log σ), the decoder (with a sigmoid, since pythae's BCE takes means), and for
the AAE our latent critic (with a sigmoid) as its discriminator; the same Adam rates and β's; the
same binary data (the digits' training split, binarised once, tiled to ``examples`` rows); the same
batch size. An epoch is timed on both sides without start-up: pythae's ``trainer.train_step(epoch)``
and the steps of our training loop between its first and last batch start. Pairs interleave epoch
by epoch. Without pythae the figure is skipped with the reason.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from implicit_vae.config import load_config
from implicit_vae.config.factory import build_model
from implicit_vae.data import load_dataset

BATCH = 100
SETTINGS = {  # ours: config overrides; pythae: which model and trainer
    "vae": ("model.posterior=gaussian", "divergence.name=analytic"),
    "aae": ("model.posterior=gaussian", "divergence.name=aae"),
}


def _pythae_model(kind: str, ours, latent_dim: int, lr: float, betas, out_dir: str, data,
                  num_epochs: int = 1, eval_data=None, no_cuda: bool = True,
                  scheduler: dict | None = None):
    """pythae's model and trainer around copies of our networks (``eval_data``: pythae keeps the
    model best on it, as its benchmark scripts do; ``scheduler``: the trainer config's
    ``scheduler_cls`` and ``scheduler_params``, stepped by pythae once per epoch)."""
    import copy

    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, Adversarial_AE, Adversarial_AE_Config, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseDiscriminator, BaseEncoder
    from pythae.trainers import (
        AdversarialTrainer,
        AdversarialTrainerConfig,
        BaseTrainer,
        BaseTrainerConfig,
    )

    class Encoder(BaseEncoder):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            mean, log_std = self.net(x.flatten(1)).chunk(2, dim=-1)
            return ModelOutput(embedding=mean, log_covariance=2 * log_std)

    class Decoder(BaseDecoder):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    class Discriminator(BaseDiscriminator):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, z):
            return ModelOutput(embedding=torch.sigmoid(self.net(None, z)))

    encoder = Encoder(copy.deepcopy(ours.posterior.net))
    decoder = Decoder(copy.deepcopy(ours.likelihood.decoder))
    dim = (data.shape[1],)
    common = dict(output_dir=out_dir, num_epochs=num_epochs, per_device_train_batch_size=BATCH,
                  per_device_eval_batch_size=BATCH, no_cuda=no_cuda)  # fmt: skip
    dataset = BaseDataset(data, torch.zeros(len(data)))
    evaluation = None if eval_data is None else BaseDataset(eval_data, torch.zeros(len(eval_data)))
    if kind == "vae":
        model = VAE(VAEConfig(input_dim=dim, latent_dim=latent_dim, reconstruction_loss="bce"),
                    encoder=encoder, decoder=decoder)  # fmt: skip
        config = BaseTrainerConfig(learning_rate=lr, optimizer_params={"betas": betas},
                                   **(scheduler or {}), **common)
        trainer = BaseTrainer(model, train_dataset=dataset, eval_dataset=evaluation,
                              training_config=config)
    else:
        cfg = Adversarial_AE_Config(input_dim=dim, latent_dim=latent_dim, reconstruction_loss="bce")
        model = Adversarial_AE(cfg, encoder=encoder, decoder=decoder,
                               discriminator=Discriminator(copy.deepcopy(ours.estimator.critic)))  # fmt: skip
        config = AdversarialTrainerConfig(
            autoencoder_learning_rate=lr, discriminator_learning_rate=lr,
            autoencoder_optimizer_params={"betas": betas},
            discriminator_optimizer_params={"betas": betas}, **common,
        )  # fmt: skip
        trainer = AdversarialTrainer(model, train_dataset=dataset, training_config=config)
    if hasattr(trainer, "prepare_training"):
        trainer.prepare_training()
    return trainer


def _our_epoch(kind: str, data: torch.Tensor, threads: int, run_dir: Path,
               config: Path | None = None) -> float:
    """Seconds of one epoch (ceil(N / batch) steps) of our training loop, start-up excluded: from
    the first batch start to the batch start after the last step."""
    from implicit_vae.training import fit as train_module
    from implicit_vae.training.module import TwoPlayerLoop

    steps = math.ceil(len(data) / BATCH)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "data.npy"
    import numpy as np

    np.save(path, data.numpy())
    sets = [f"train.max_steps={steps + 1}", f"train.threads={threads}", "train.progress_bar=false",
            f"train.run_dir={run_dir / 'run'}", f"train.batch_size={BATCH}", "data.name=file",
            f"data.path={path}", "data.val_fraction=0.01", "data.test_fraction=0.01",
            f"train.val_every={steps + 1}", f"train.checkpoint_every={steps + 1}",
            f"train.log_every={steps + 1}"]  # fmt: skip
    cfg = load_config(config, [*SETTINGS[kind], *sets])
    marks: list[float] = []
    own = TwoPlayerLoop.training_step

    def timed(self, x):
        marks.append(time.perf_counter())
        return own(self, x)

    TwoPlayerLoop.training_step = timed
    try:
        train_module.fit(cfg)
    finally:
        TwoPlayerLoop.training_step = own
    return marks[steps] - marks[0]


def peer_figures(examples: int, pairs: int, threads: int, goal: float, figure) -> dict:
    """(f): per kind, our epoch (a) against pythae's (b), interleaved; skipped without pythae.
    ``figure`` is benchmarks/speed.py's one figure format."""
    try:
        import pythae  # noqa: F401
    except ImportError:
        return {"skipped": "pythae is not installed (pip install -e '.[peers]')"}
    torch.set_num_threads(threads)
    cfg = load_config()
    digits = load_dataset(cfg.data, 0).train
    binary = torch.bernoulli(digits, generator=torch.Generator().manual_seed(0))
    data = binary.repeat(math.ceil(examples / len(binary)), 1)[:examples]
    out = {}
    with tempfile.TemporaryDirectory(prefix="speed_peers_") as tmp:
        for kind in SETTINGS:
            ours_cfg = load_config(overrides=list(SETTINGS[kind]))
            torch.manual_seed(0)
            reference = build_model(ours_cfg, data.shape[1])
            t = ours_cfg.train
            trainer = _pythae_model(kind, reference, ours_cfg.model.latent_dim, t.lr,
                                    (t.beta1, t.beta2), str(Path(tmp) / kind), data)  # fmt: skip
            a, b = [], []
            for i in range(pairs):
                a.append(_our_epoch(kind, data, threads, Path(tmp) / f"{kind}{i}"))
                start = time.perf_counter()
                trainer.train_step(i + 1)
                b.append(time.perf_counter() - start)
            what = (
                f"seconds per epoch ({examples} binary digits, batch {BATCH}, identical networks "
                f"and Adam settings): our {kind} (a) vs pythae's "
                f"{'VAE' if kind == 'vae' else 'Adversarial_AE'} (b)"
            )
            out[kind] = figure(a, b, goal, what, examples=examples, batch=BATCH,
                               pythae_median_epoch_s=statistics.median(b))  # fmt: skip
    return out
