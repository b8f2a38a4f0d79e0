"""Overrides shared by the tests that train through the CLI: networks small enough that a run takes
seconds while every code path (posterior, decoder, critic, two optimizers) is exercised."""

TINY_NETWORKS = [
    "train.progress_bar=false",
    "model.hidden=[32]",
    "divergence.critic_width=32",
    "divergence.critic_blocks=1",
    "model.n_basis=2",
    "train.batch_size=32",
]
