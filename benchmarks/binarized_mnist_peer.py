"""Setting (b)'s peer: pythae's ``VAE`` trained on the same static-MNIST data with copies of our
z40 networks, batch, Adam settings and epochs (best on the valid split, as pythae's scripts keep),
then evaluated by *our* IS-5000 and AIS on the same test tensor; and one epoch of each library
timed, interleaved. Built on ``speed_peers.py``'s pythae wrappers. Without pythae (the ``peers``
extra) the record says why it was skipped.

Writes ``<out>/binarized_mnist/z40_pythae_vae_seed0.json``.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import torch

from implicit_vae.config import load_config
from implicit_vae.config.factory import build_model
from implicit_vae.cpu import flush_denormals
from implicit_vae.data import load_binarized_mnist_dir
from implicit_vae.evaluation.run import evaluate_model
from implicit_vae.training.runs import write_json
from speed_peers import BATCH, _our_epoch, _pythae_model

NAME = "z40_pythae_vae_seed0"
CONFIG = (
    Path(__file__).resolve().parents[1] / "src/implicit_vae/configs/binarized_mnist_z40_vae.yaml"
)
TIMED_PAIRS = 3



def pythae_schedule(train_cfg, steps_per_epoch: int) -> dict | None:
    """Our ``train.lr_schedule`` as pythae's trainer settings (None: constant). pythae steps its
    scheduler after each epoch, so only milestones on epoch boundaries carry over exactly."""
    if train_cfg.lr_schedule == "constant":
        return None
    if train_cfg.lr_schedule != "multistep":
        raise ValueError(f"the pythae peer mirrors constant and multistep schedules, not "
                         f"{train_cfg.lr_schedule!r}")
    epochs = []
    for step in train_cfg.lr_milestones:
        if step % steps_per_epoch:
            raise ValueError(f"train.lr_milestones: {step} is not a whole number of epochs of "
                             f"{steps_per_epoch} steps, which pythae's per-epoch scheduler needs")
        epochs.append(step // steps_per_epoch)
    return {"scheduler_cls": "MultiStepLR",
            "scheduler_params": {"milestones": epochs, "gamma": train_cfg.lr_gamma}}


def time_epochs(train: torch.Tensor, threads: int, device: torch.device, tmp: Path,
                pairs: int = TIMED_PAIRS) -> tuple[list[float], list[float]]:
    """Seconds of one epoch of our ``fit`` and of pythae's trainer on setting (b)'s networks,
    alternated ``pairs`` times so that both see the same machine load."""
    cfg = load_config(CONFIG)
    t = cfg.train
    timer = _pythae_model("vae", build_model(cfg, (train.shape[1],)), cfg.model.latent_dim,
                          t.lr, (t.beta1, t.beta2), str(tmp / "time"), train,
                          no_cuda=device.type != "cuda")  # fmt: skip
    ours, theirs = [], []
    for i in range(pairs):
        ours.append(_our_epoch("vae", train, threads, tmp / f"ours{i}", CONFIG))
        start = time.perf_counter()
        timer.train_step(i + 1)
        theirs.append(time.perf_counter() - start)
    return ours, theirs


def main(argv: list[str] | None = None) -> int:
    """``python benchmarks/binarized_mnist_peer.py [--data DIR] [--pairs N] [--threads T]``: the
    interleaved epoch timing alone (no training to convergence), written to
    ``benchmarks/results/binarized_mnist/epoch_ours_vs_pythae.json``."""
    import argparse

    from benchmark_runs import write_result

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--data", type=Path, default=CONFIG.parents[3] / "../shared/data/binarized_mnist")
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=CONFIG.parents[3] / "benchmarks/results")
    args = p.parse_args(argv)
    try:
        import pythae  # noqa: F401
    except ImportError:
        print("pythae is not installed (pip install -e '.[peers]')", file=sys.stderr)
        return 2
    flush_denormals()  # subnormal logits cost 2x on the CPU (implicit_vae.cpu)
    torch.set_num_threads(args.threads)
    train = torch.from_numpy(load_binarized_mnist_dir(args.data)[0]).float()
    with tempfile.TemporaryDirectory(prefix="pythae_") as tmp:
        ours, theirs = time_epochs(train, args.threads, torch.device("cpu"), Path(tmp), args.pairs)
    ratios = [o / t for o, t in zip(ours, theirs)]
    record = {
        "what": "one epoch (500 steps of batch 100) of setting (b)'s z40 VAE: our fit (a) vs "
        "pythae's trainer (b), interleaved, same networks, CPU", "threads": args.threads,
        "pythae_version": metadata.version("pythae"), "ours_s": ours, "pythae_s": theirs,
        "ratios": ratios, "median_ratio": statistics.median(ratios),
        "command": "python benchmarks/binarized_mnist_peer.py " + " ".join(argv or sys.argv[1:]),
    }  # fmt: skip
    (args.out / "binarized_mnist").mkdir(parents=True, exist_ok=True)
    write_result(args.out / "binarized_mnist" / "epoch_ours_vs_pythae.json", record)
    print(f"epoch: ours / pythae = {record['median_ratio']:.2f} (median of {args.pairs} pairs)")
    return 0


def run_peer(args, data, device, eval_fp: str) -> dict:
    """Train, evaluate and time pythae's VAE (or record why not); returns the record."""
    path = args.out / "binarized_mnist" / f"{NAME}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import pythae  # noqa: F401
    except ImportError:
        record = {"skipped": "pythae is not installed (pip install -e '.[peers]')"}
        write_json(path, record)
        print(f"{NAME}: skipped ({record['skipped']})", flush=True)
        return record
    # The benchmark's --set overrides apply to the peer too (e.g. a schedule under test).
    steps = [f"train.max_steps={args.steps}"] if args.steps else []
    cfg = load_config(CONFIG, [*args.set, *steps])
    train, valid, _ = (torch.from_numpy(a).float() for a in load_binarized_mnist_dir(args.data))
    epochs = math.ceil(cfg.train.max_steps * BATCH / len(train))
    schedule = pythae_schedule(cfg.train, math.ceil(len(train) / BATCH))
    if args.reuse_runs and path.is_file():
        old = json.loads(path.read_text())
        # A record from before schedules were mirrored has none: it was trained at a constant rate.
        same = old.get("eval_fingerprint") == eval_fp and old.get("schedule") == schedule
        if same and old.get("epochs") == epochs and "skipped" not in old:
            return old
    torch.manual_seed(0)
    ours = build_model(cfg, (train.shape[1],))
    t = cfg.train
    with tempfile.TemporaryDirectory(prefix="pythae_") as tmp:
        start = time.perf_counter()
        trainer = _pythae_model("vae", ours, cfg.model.latent_dim, t.lr, (t.beta1, t.beta2),
                                str(Path(tmp) / "train"), train, num_epochs=epochs,
                                eval_data=valid, no_cuda=device.type != "cuda",
                                scheduler=schedule)  # fmt: skip
        trainer.train()
        train_time = time.perf_counter() - start
        best = getattr(trainer, "_best_model", None) or trainer.model
        ours.posterior.net.load_state_dict(best.encoder.net.state_dict())
        ours.likelihood.decoder.load_state_dict(best.decoder.net.state_dict())
        ours.to(device).eval()
        x_test = data[0]
        start = time.perf_counter()
        numbers = evaluate_model(ours, x_test, divergence="analytic", ais_chains=args.ais_chains,
                                 ais_steps=args.ais_steps, ais_leapfrog_steps=args.ais_leapfrog,
                                 ais_batch_size=args.ais_batch_size, is_samples=args.is_samples,
                                 seed=0, progress=False)  # fmt: skip
        eval_time = time.perf_counter() - start
        ours_s, theirs_s = time_epochs(train, args.threads, device, Path(tmp))
    record = {
        "run": NAME, "what": "pythae VAE, our z40 networks copied, same data/batch/Adam/epochs; "
        "evaluated by our IS and AIS", "pythae_version": metadata.version("pythae"), "epochs": epochs,
        "schedule": schedule,
        "eval_fingerprint": eval_fp, "log_px_is": numbers["log_px_is"],
        "log_px_is_stderr": numbers["log_px_is_stderr"], "log_px_ais": numbers["log_px_ais"],
        "elbo": numbers["elbo"], "train_wall_time_s": round(train_time, 1),
        "eval_wall_time_s": round(eval_time, 1), "epoch_s": statistics.median(theirs_s),
        "our_epoch_s": statistics.median(ours_s), "epoch_pairs": TIMED_PAIRS,
    }  # fmt: skip
    write_json(path, record)
    return record


if __name__ == "__main__":
    sys.exit(main())
