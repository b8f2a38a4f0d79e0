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


def assert_same_training_state(a_dir, b_dir, step: int) -> None:
    """The last checkpoints of two runs hold the same step, bit-identical weights, optimiser state
    and torch RNG state (what exact resume and RNG-neutral validation promise)."""
    import torch

    from implicit_vae.training.checkpoint import load_checkpoint

    a = load_checkpoint(a_dir / "checkpoints" / "last.ckpt")
    b = load_checkpoint(b_dir / "checkpoints" / "last.ckpt")
    assert a["model_step"] == b["model_step"] == step
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for opt_a, opt_b in zip(a["optimizers"], b["optimizers"]):
        for pid, state in opt_a["state"].items():
            assert all(torch.equal(state[k], opt_b["state"][pid][k]) for k in state)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
