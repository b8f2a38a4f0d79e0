"""What flushing subnormal floats to zero buys on the CPU, on a trained run (see ``implicit_vae.cpu``).

A trained Bernoulli decoder drives the logits of always-black pixels far below zero, and
exp(-|logit|) and sigmoid(logit) then land in float32's subnormal range, which x86 arithmetic
handles many times more slowly. This times, interleaved in one process and one thread, with the
mode off and on:

* ``log_px_z``: log p(x|z) and its gradient in z for z of shape (8, 128, D), one AIS transition;
* ``train_step``: the run's training loss on a batch of ``train.batch_size`` test images with
  ``train.n_samples`` z each, and its backward pass through every parameter;

and reports the median seconds of each, their ratio (off / on), and the largest difference of the
values between the two modes (flushing may only move them by float32 rounding).

    python benchmarks/denormals.py --run ../runs/bm/z10_sivi_iw_seed0
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_runs import portable, write_result  # noqa: E402
from implicit_vae.config import ConfigError  # noqa: E402
from implicit_vae.evaluation.run import split_data  # noqa: E402
from implicit_vae.training.runs import load_run  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "denormals.json"


def _timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    fn()  # warm-up: allocator and kernels
    start = time.perf_counter()
    for _ in range(repeats):
        value = fn()
    return (time.perf_counter() - start) / repeats, value


def workloads(model, cfg, x: torch.Tensor) -> tuple[dict, float]:
    """name -> a function returning a tensor of values (each also runs its backward pass), and the
    fraction of the decoder's logits at the AIS-shaped z that make subnormals."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(8, min(128, len(x)), model.latent_dim, generator=gen)
    x_ais, x_train = x[: z.shape[1]], x[: cfg.train.batch_size]
    params = model.model_parameters()

    def log_px_z() -> torch.Tensor:
        zz = z.clone().requires_grad_(True)
        ll = model.log_likelihood(x_ais, zz)
        (grad,) = torch.autograd.grad(ll.sum(), zz)
        return torch.cat([ll.detach().flatten(), grad.flatten()])

    def train_step() -> torch.Tensor:
        torch.manual_seed(1)  # the same posterior draws in both modes
        loss = model(x_train, cfg.train.n_samples).loss
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return torch.cat([loss.detach().reshape(1)]
                         + [g.flatten() for g in grads if g is not None])  # fmt: skip

    with torch.no_grad():
        logits = model.likelihood._decode(z)
    # exp(-|l|) and sigmoid(l) are subnormal in float32 for l in (-103.9, -87.3)
    band = float(((logits < -87.3) & (logits > -103.9)).float().mean())
    return {"log_px_z": log_px_z, "train_step": train_step}, band


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="a trained run directory")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--pairs", type=int, default=5, help="interleaved off/on pairs (default 5)")
    p.add_argument("--repeats", type=int, default=10, help="calls per timing (default 10)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        cfg, model, data = load_run(args.run, args.checkpoint)
    except ConfigError as err:
        print(f"benchmarks/denormals.py: error: {err}", file=sys.stderr)
        return 2
    model.eval()
    x = split_data(data, "test", cfg.train.seed)[: max(128, cfg.train.batch_size)]
    jobs, band = workloads(model, cfg, x)
    seconds = {name: {"off": [], "on": []} for name in jobs}
    values = {}
    for _ in range(args.pairs):
        for mode in ("off", "on"):
            if not torch.set_flush_denormal(mode == "on") and mode == "on":
                print("benchmarks/denormals.py: error: this CPU cannot flush subnormals",
                      file=sys.stderr)  # fmt: skip
                return 2
            for name, fn in jobs.items():
                s, v = _timed(fn, args.repeats)
                seconds[name][mode].append(s)
                values[name, mode] = v
    torch.set_flush_denormal(False)
    result = {
        "what": "seconds per call with subnormal floats kept (off) and flushed to zero (on), "
        "interleaved, one thread; ratio = off / on",
        "run": portable(str(args.run)),
        "checkpoint": args.checkpoint,
        "model": {"posterior": cfg.model.posterior, "likelihood": cfg.model.likelihood,
                  "latent_dim": cfg.model.latent_dim, "n_samples": cfg.train.n_samples},  # fmt: skip
        "fraction_of_logits_in_the_subnormal_band": band,
        "workloads": {},
        "command": shlex.join(["python", "benchmarks/denormals.py", *map(portable, argv)]),
    }
    for name, t in seconds.items():
        off, on = statistics.median(t["off"]), statistics.median(t["on"])
        diff = (values[name, "off"] - values[name, "on"]).abs()
        scale = values[name, "off"].abs().clamp(min=1e-3)
        result["workloads"][name] = {
            "off_s": t["off"], "on_s": t["on"], "median_off_s": off, "median_on_s": on,
            "ratio": off / on, "max_relative_difference": float((diff / scale).max()),
        }  # fmt: skip
        rel = result["workloads"][name]["max_relative_difference"]
        print(f"{name:>10s}: {off * 1e3:7.2f} ms kept, {on * 1e3:7.2f} ms flushed, "
              f"{off / on:.2f}x; values differ by {rel:.1e} (relative)")  # fmt: skip
    write_result(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
