"""GPU check: the default job and an MNIST AVB-AC job trained in 32-true and bf16-mixed, AIS on test
images, and an exact resume of a killed run, on a CUDA device, with their CPU counterparts.

For each job: steps/s of ``fit`` on the device in 32-true and bf16-mixed and on the CPU in 32-true;
AIS log p(x) of each trained model on the same test images (on its own device); and a run stopped
by an exception three steps after a checkpoint (the work after the checkpoint is lost, as after a
kill) then resumed, whose final weights, optimizer states and RNG states must equal an unbroken run's
(``exact_resume``). MNIST is read from ``../shared/data/mnist`` (the t10k IDX files, relative to the
repository root); random binary images of the same shape stand in if they are missing.

    python benchmarks/gpu_check.py                      # on CUDA (a few minutes on one GPU)
    python benchmarks/gpu_check.py --device cpu --quick # a smoke run (the test suite runs it)

Writes benchmarks/results/gpu_check.json (atomically).
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from implicit_vae.config import load_config
from implicit_vae.evaluation import ais_log_likelihood
from implicit_vae.evaluation.run import ais_initial
from implicit_vae.training.checkpoint import load_checkpoint
from implicit_vae.training.fit import fit
from implicit_vae.training.module import TwoPlayerLoop
from implicit_vae.training.runs import load_run, write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MNIST = ROOT.parent / "shared" / "data" / "mnist"
# steps_per_s is steps / the whole fit (start-up, checkpoints, test evaluation and plots included).
FULL = dict(steps=300, ais_images=256, ais_chains=8, ais_steps=200, tiny=False, mnist=10000)
QUICK = dict(steps=12, ais_images=8, ais_chains=2, ais_steps=3, tiny=True, mnist=1000)
TINY = ["model.hidden=[32]", "divergence.critic_width=32", "divergence.critic_blocks=1",
        "model.n_basis=2", "train.batch_size=32"]


def mnist_file(tmp: Path, limit: int = 10000) -> tuple[Path, str]:
    """An .npy of the first ``limit`` t10k images in [0, 1] (N, 784), or random binary ones if
    the files are absent."""
    images = MNIST / "t10k-images-idx3-ubyte.gz"
    if images.is_file():
        raw = gzip.decompress(images.read_bytes())
        x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 784) / 255.0
        source = os.path.relpath(images, ROOT)  # relative: the JSON is committed
    else:
        x = np.random.default_rng(0).integers(0, 2, (10000, 784)).astype(np.float64)
        source = "random binary images (MNIST not found)"
    path = tmp / "mnist_t10k.npy"
    np.save(path, x[:limit].astype(np.float32))
    return path, source


def job_overrides(job: str, mnist: Path, tiny: bool) -> list[str]:
    base = ["train.progress_bar=false", "train.log_every=20", "train.val_every=100000",
            "train.lr_schedule=constant"]
    if job == "mnist_avb_ac":
        base += [f"data.path={mnist}", "data.name=file", "data.binarize=dynamic"]
    return [*base, *(TINY if tiny else [])]


def train(job: str, overrides: list[str], run: Path, steps: int, **train) -> dict:
    config = "mnist_avb_ac" if job == "mnist_avb_ac" else "default"
    from implicit_vae.cli import resolve_config

    sets = [*overrides, f"train.max_steps={steps}", f"train.run_dir={run}",
            f"train.checkpoint_every={max(1, steps // 2)}"]
    sets += [f"train.{k}={v}" for k, v in train.items()]
    start = time.perf_counter()
    _, summary = fit(load_config(resolve_config(config), sets))
    seconds = time.perf_counter() - start
    return {"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
            "train_loss": summary["train"].get("loss"), "val_loss": summary["val"].get("loss")}


def ais(run: Path, device: str, size: dict) -> dict:
    cfg, model, data = load_run(run)
    model.to(device)
    x = (data.test if data.test.shape[0] else data.val)[: size["ais_images"]]
    x = torch.bernoulli(x, generator=torch.Generator().manual_seed(0)).to(device)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    est = ais_log_likelihood(model.log_likelihood, model.prior, x, chains=size["ais_chains"],
                             steps=size["ais_steps"], initial=ais_initial(model, x, 0), seed=0)
    return {"log_px": est.mean, "stderr": est.mean_stderr, "images": int(x.shape[0]),
            "seconds": time.perf_counter() - start}


def exact_resume(job: str, overrides: list[str], tmp: Path, steps: int, device: str) -> bool:
    """An unbroken run against one stopped 3 steps after its mid-run checkpoint, then resumed."""
    sets = {"accelerator": device}
    train(job, overrides, tmp / "whole", steps, **sets)
    stop_at = steps // 2 + min(3, steps - steps // 2 - 1)

    class Killed(Exception):
        pass

    original = TwoPlayerLoop.on_step_end

    def on_step_end(self):
        original(self)
        if self.model_step == stop_at:
            raise Killed

    TwoPlayerLoop.on_step_end = on_step_end
    try:
        train(job, overrides, tmp / "split", steps, **sets)
    except Killed:
        pass
    finally:
        TwoPlayerLoop.on_step_end = original
    fit(None, resume=tmp / "split")
    a, b = (load_checkpoint(tmp / r / "checkpoints" / "last.ckpt") for r in ("whole", "split"))
    same = a["model_step"] == b["model_step"] == steps
    same &= all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for opt_a, opt_b in zip(a["optimizers"], b["optimizers"]):
        for pid, state in opt_a["state"].items():
            same &= all(torch.equal(state[k], opt_b["state"][pid][k]) for k in state)
    same &= torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    for sa, sb in zip(a["rng"].get("cuda", []), b["rng"].get("cuda", [])):
        same &= torch.equal(sa, sb)
    return bool(same)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="tiny nets and sizes: a smoke run")
    parser.add_argument("--steps", type=int, help="training steps per run (default 300)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for CPU runs")
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check.json")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible; use --device cpu", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    size = dict(QUICK if args.quick else FULL)
    if args.steps:
        size["steps"] = args.steps
    devices = [args.device] if args.device == "cpu" else [args.device, "cpu"]
    report: dict = {"benchmark": "gpu_check", "command": " ".join(["python", *sys.argv]),
                    "quick": args.quick, "sizes": size, "jobs": {}}
    report["machine"] = {"torch": torch.__version__, "python": platform.python_version(),
                         "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp_name:
        tmp = Path(tmp_name)
        mnist, source = mnist_file(tmp, size["mnist"])
        report["mnist"] = source
        for job in ("default", "mnist_avb_ac"):
            overrides = job_overrides(job, mnist, size["tiny"])
            out: dict = {}
            threads = {"threads": args.threads} if args.threads else {}
            for device in devices:
                precisions = ["32-true", "bf16-mixed"] if device == args.device else ["32-true"]
                for precision in precisions:
                    run = tmp / f"{job}_{device}_{precision}"
                    key = f"{device}/{precision}"
                    out[key] = train(job, overrides, run, size["steps"], accelerator=device,
                                     precision=precision, **threads)
                    out[key]["ais"] = ais(run, device, size)
                    print(f"{job:14s} {key:18s} {out[key]['steps_per_s']:8.1f} steps/s  "
                          f"AIS {out[key]['ais']['log_px']:9.3f}", flush=True)
            out["exact_resume"] = exact_resume(job, overrides, tmp / f"resume_{job}",
                                               size["steps"], args.device)
            print(f"{job:14s} exact resume on {args.device}: {out['exact_resume']}", flush=True)
            report["jobs"][job] = out
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0 if all(j["exact_resume"] for j in report["jobs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
