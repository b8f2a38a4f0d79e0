"""Gaussian VAE vs AVB vs AVB with adaptive contrast on scikit-learn digits, same budget.

Each model is trained through the library's trainer from its shipped config (8-D latent, same decoder,
3,000 steps), then evaluated on the test split with every number labelled: the validation loss the
trainer reports (an ELBO *estimate* for critic-based models), and AIS log p(x) — the same yardstick for
all three — plus importance sampling for the explicit VAE as a cross-check.

    python benchmarks/digits.py                       # full run
    python benchmarks/digits.py --steps 200 --ais-steps 50   # smoke run

Writes benchmarks/results/digits.json.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from implicit_vae.config import load_config
from implicit_vae.cpu import flush_denormals
from implicit_vae.evaluation.run import evaluate_model
from implicit_vae.training.fit import fit
from implicit_vae.training.runs import load_run, write_json

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "implicit_vae" / "configs"
MODELS = {"vae": "digits_vae.yaml", "avb": "digits_avb.yaml", "avb_ac": "default.yaml"}


def run(name: str, args: argparse.Namespace, workdir: Path) -> dict:
    overrides = [
        f"train.seed={args.seed}",
        "train.progress_bar=false",
        f"train.run_dir={workdir / name}",
    ]
    if args.steps:
        overrides.append(f"train.max_steps={args.steps}")
    cfg = load_config(CONFIGS / MODELS[name], overrides)
    start = time.perf_counter()
    run_dir, summary = fit(cfg)
    train_time = time.perf_counter() - start
    _, model, data = load_run(run_dir)
    x = data.test[: args.max_examples] if args.max_examples else data.test
    numbers = evaluate_model(
        model,
        x,
        divergence=cfg.divergence.name,
        ais_chains=args.ais_chains,
        ais_steps=args.ais_steps,
        is_samples=1000,
        seed=args.seed,
        progress=False,
    )
    return {
        "validation": summary["val"],
        "best_validation_loss": summary["best_val_loss"],
        "test": numbers,
        "steps": cfg.train.max_steps,
        "train_wall_time_s": round(train_time, 1),
        "config": MODELS[name],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="override train.max_steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: reproducible)")
    parser.add_argument("--ais-chains", type=int, default=8)
    parser.add_argument("--ais-steps", type=int, default=500)
    parser.add_argument("--max-examples", type=int, default=None)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    flush_denormals()  # as the CLI does: subnormal logits cost 2x on the CPU (implicit_vae.cpu)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="digits_"))
    results = {}
    try:
        for name in args.models:
            results[name] = r = run(name, args, workdir)
            t = r["test"]
            print(
                f"{name:7s} val loss {r['validation']['loss']:.3f}  AIS {t['log_px_ais']:.3f} "
                f"± {t['log_px_ais_stderr']:.3f}  train {r['train_wall_time_s']} s",
                flush=True,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    command = "python benchmarks/digits.py" + "".join(
        f" --{k.replace('_', '-')} {v}"
        for k, v in vars(args).items()
        if k in ("steps", "seed", "threads", "ais_chains", "ais_steps", "max_examples")
        and v is not None
    )
    report = {
        "benchmark": "digits",
        "command": command,
        "torch_threads": torch.get_num_threads(),
        "models": results,
    }
    path = args.out / "digits.json"
    write_json(path, report)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
