"""Gaussian VAE vs AVB vs AVB with adaptive contrast on real MNIST, 8-D latent, same decoder and budget.

Data: the t10k IDX files in ``--data-dir`` (default ``<repo>/../shared/data/mnist``). Whatever else
that directory holds, the split is always the t10k-only one: the first 9,000 images are the training
pool (its last 10 %, images 8,100–8,999, are the validation set the trainer watches), the last 1,000
(images 9,000–9,999) the test set. Training binarises every batch afresh (Bernoulli(intensity), as in
AVB). The test images are binarised once, pixel ~ Bernoulli(intensity) with
``torch.Generator().manual_seed(0)`` in file order, and saved to ``<out>/mnist_test_binarized.pt``
(uint8, shape (1000, 784)); a later run reuses the saved tensor, so every model is evaluated on exactly
the same bits.

Each model is trained through the library's trainer from its shipped config (``mnist_vae.yaml``,
``mnist_avb.yaml``, ``mnist_avb_ac.yaml``: same decoder, optimiser and number of steps), then evaluated
on the saved test tensor by ``implicit_vae.evaluate.run.evaluate_model``, every number labelled:
AIS log p(x) ± its Monte Carlo s.e. (HMC AIS started from the Gaussian with q(z|x)'s moments), IS log
p(x) for the VAE (a cross-check of AIS), the ELBO (a true bound for the VAE, an estimate through the
critic for AVB), the reconstruction error and the KL (estimate). For the critic-based models the
critic's health is summarised too: its final accuracy (0.5 = cannot tell q from the contrast) and the
gap elbo_estimate − log_px_ais, which is positive when the critic underestimates the KL by at least
that much (up to AIS's own looseness).

``--models vae_full`` adds an optional fourth model (not run by default): the VAE with a
full-covariance Gaussian posterior (``mnist_vae_full.yaml``). The report then also pairs AVB-AC
against it, which says how much of AVB-AC's gain over the diagonal VAE correlations alone explain.

    python benchmarks/mnist.py                                  # full run (see the README table)
    python benchmarks/mnist.py --steps 50 --max-test 20 --ais-chains 2 --ais-steps 5   # smoke run

Cost on one CPU thread of a 2-core machine shared with one other run (the README run): training
20,000 steps took 7.1 min (VAE), 15.8 min (AVB), 22.6 min (AVB-AC) and 12.1 min (vae_full); AIS with 8
chains x 1,000 steps on 1,000 images took 10-15 min per model with 2 leapfrog steps
(``--ais-leapfrog 2``; 10 steps cost about 5x as much and moved the VAE's AIS by 0.02 nat on 50
images). Every model's per-image AIS values are saved (``<out>/mnist_per_image_<model>.pt``) and,
once the VAE and AVB-AC are both done, the report adds their paired difference with its standard
error over test images.
``--threads 2`` only helps on an otherwise idle machine.
With ``--workdir DIR --reuse-runs`` a model whose finished run of the same config is in DIR is
evaluated without training it again; a later run of some models into the same ``--out`` keeps the other
models' rows (same test tensor and evaluation settings), each with its own command.

Writes ``<out>/mnist.json``, ``<out>/mnist.md`` (the markdown table, also printed),
``<out>/mnist_<model>_{samples,reconstructions,training}.png``, ``<out>/mnist_<model>_metrics.csv``,
``<out>/mnist_per_image_<model>.pt``
and ``<out>/mnist_test_binarized.pt``; ``<out>`` defaults to ``benchmarks/results``.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from implicit_vae.config import ConfigError, load_config
from implicit_vae.cpu import flush_denormals
from implicit_vae.data import DataError, load_mnist_dir
from implicit_vae.evaluation import EvaluationError
from implicit_vae.evaluation.compare import compare_evaluations, data_fingerprint
from implicit_vae.evaluation.figures import (
    plot_reconstructions,
    plot_samples,
    plot_training_curves,
)
from implicit_vae.evaluation.run import evaluate_model
from implicit_vae.training.fit import fit
from implicit_vae.training.runs import load_run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_runs import (  # noqa: E402
    comparable,
    critic_health,
    differing_keys,
    write_result,  # noqa: E402
    write_table,  # noqa: E402
)
from benchmark_runs import duration as _duration  # noqa: E402
from benchmark_runs import fmt as _fmt  # noqa: E402
from benchmark_runs import read_metrics as _read_metrics  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "src" / "implicit_vae" / "configs"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mnist"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
MODELS = {
    "vae": "mnist_vae.yaml",
    "avb": "mnist_avb.yaml",
    "avb_ac": "mnist_avb_ac.yaml",
    # Optional diagnostic, not run by default: what a full covariance alone buys over the VAE.
    "vae_full": "mnist_vae_full.yaml",
}
REQUIRED = ("vae", "avb", "avb_ac")  # the three models; the report is complete with these
T10K = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TEST_TENSOR = "mnist_test_binarized.pt"
TEST_SEED = 0
IMAGE_SHAPE = (28, 28)
GOAL_NATS = 1.0  # AVB-AC should beat the Gaussian VAE by at least this much in AIS log p(x)
# The AVB paper's own-architecture MNIST table (8-D latent, conv nets, full MNIST, 2.5M steps) as
# recalled in /work/shared/reference/papers.md §1b: unverified, for orientation only.
PAPER = {
    "source": "AVB (Mescheder et al. 2017), MNIST 8-D latent, recalled [UNVERIFIED-MEMORY]",
    "avb_ac": {"elbo_estimate": -85.1, "log_px_ais": -83.7, "reconstruction_error": 59.3},
    "vae": {"elbo": -88.9, "log_px_ais": -85.0, "reconstruction_error": 62.2},
}


class BenchmarkError(Exception):
    """A problem with the benchmark's inputs; main() prints it and exits with code 2."""


# --- data --------------------------------------------------------------------------------------


def _find_t10k(data_dir: Path, base: str) -> Path | None:
    return next((p for p in (data_dir / base, data_dir / f"{base}.gz") if p.is_file()), None)


def t10k_only_dir(data_dir: Path, workdir: Path) -> Path:
    """A directory holding links to the t10k files only, so the loader always takes the t10k-only
    split (first 9/10 train pool, last 1/10 test) even where ``data_dir`` also has the train files.

    Raises:
        BenchmarkError: if ``data_dir`` or its t10k files are missing.
    """
    if not data_dir.is_dir():
        raise BenchmarkError(
            f"MNIST directory {str(data_dir)!r} does not exist; pass --data-dir DIR with "
            f"{T10K[0]}[.gz] and {T10K[1]}[.gz]"
        )
    found = {base: _find_t10k(data_dir, base) for base in T10K}
    missing = [base for base, path in found.items() if path is None]
    if missing:
        raise BenchmarkError(
            f"{data_dir}: missing {', '.join(f'{m}[.gz]' for m in missing)}; the benchmark needs "
            "the MNIST t10k images and labels"
        )
    target = workdir / "mnist_t10k"
    target.mkdir(parents=True, exist_ok=True)
    for path in found.values():
        link = target / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    return target


def binarized_test_set(
    t10k_dir: Path, out: Path, data_dir: Path | None = None
) -> tuple[torch.Tensor, dict]:
    """The 1,000 test images binarised once (Bernoulli(intensity), generator seeded with 0), as
    uint8 of shape (N_test, 784); read from ``out/mnist_test_binarized.pt`` if it is there, else
    sampled and saved there.

    Raises:
        BenchmarkError: if the MNIST files are unreadable or a saved tensor does not fit the images.
    """
    try:
        pool, _, test_images, _, note = load_mnist_dir(t10k_dir)
    except DataError as err:
        raise BenchmarkError(str(err)) from None
    intensities = torch.as_tensor(test_images.reshape(len(test_images), -1), dtype=torch.float32)
    intensities = intensities / 255.0
    path = out / TEST_TENSOR
    if path.is_file():
        x = torch.load(path, weights_only=True)
        ok = (
            isinstance(x, torch.Tensor)
            and x.dtype == torch.uint8
            and x.shape == intensities.shape
            and bool((x <= 1).all())
            # Bernoulli(0) is always 0 and Bernoulli(1) always 1.
            and bool((x[intensities == 0] == 0).all())
            and bool((x[intensities == 1] == 1).all())
        )
        if not ok:
            raise BenchmarkError(
                f"{path} does not hold the binarised test images of {t10k_dir} (expected uint8 "
                f"{{0,1}} of shape {tuple(intensities.shape)} consistent with the intensities); "
                "delete it to resample"
            )
        origin = "loaded"
    else:
        x = torch.bernoulli(intensities, generator=torch.Generator().manual_seed(TEST_SEED))
        x = x.to(torch.uint8)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(x, path)
        origin = "sampled and saved"
    n_pool, n_test = len(pool), len(test_images)
    info = {
        "data_dir": str((data_dir or t10k_dir).resolve()),
        "files": sorted(p.name for p in t10k_dir.iterdir()),
        "loader_note": note.replace(str(t10k_dir), "<t10k-only copy of data_dir>")
        if note
        else None,
        "split": {
            "train_pool": f"t10k[0:{n_pool}] (val carved from its end by data.val_fraction)",
            "test": f"t10k[{n_pool}:{n_pool + n_test}]",
        },
        "training_binarisation": "dynamic: Bernoulli(intensity) resampled for every batch",
        "test_binarisation": (
            f"once: torch.bernoulli(intensity, generator=torch.Generator().manual_seed("
            f"{TEST_SEED})) over the (N_test, 784) float32 intensities in file order"
        ),
        "test_tensor": str(path),
        "test_tensor_origin": origin,
        "test_tensor_sha256": hashlib.sha256(x.numpy().tobytes()).hexdigest(),
        "test_tensor_mean": round(float(x.float().mean()), 6),
    }
    if (n_pool, n_test) != (9000, 1000):
        info["warning"] = f"expected 9,000 + 1,000 t10k images, found {n_pool} + {n_test}"
    return x, info


# --- one model ---------------------------------------------------------------------------------


def _evaluate_options(args: argparse.Namespace) -> dict:
    """Optional evaluate_model arguments, passed only where this library version accepts them."""
    wanted = {"ais_leapfrog_steps": args.ais_leapfrog, "ais_batch_size": args.ais_batch_size}
    wanted = {k: v for k, v in wanted.items() if v is not None}
    accepted = inspect.signature(evaluate_model).parameters
    missing = [k for k in wanted if k not in accepted]
    if missing:
        raise BenchmarkError(
            f"this implicit_vae.evaluate.run.evaluate_model does not accept {', '.join(missing)}; "
            "drop --ais-leapfrog / --ais-batch-size (the library default is used)"
        )
    return wanted


def _comparable(cfg) -> dict:
    """The config without the keys that do not change what is trained."""
    return comparable(cfg.to_dict())


def _finished_run(run_dir: Path, cfg) -> tuple[Path | None, dict | None]:
    """(run_dir, its summary) if ``run_dir`` holds a finished run of exactly ``cfg``, else (None,
    None); a finished run of another config is an error, so it is never evaluated by mistake."""
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        return None, None
    saved, _, _ = load_run(run_dir, with_data=False)
    want, have = _comparable(cfg), _comparable(saved)
    if want != have:
        differing = differing_keys(want, have)
        raise BenchmarkError(
            f"--reuse-runs: {run_dir} was trained with other settings ({', '.join(differing)}); "
            "expected the same config, or drop --reuse-runs"
        )
    return run_dir, json.loads(summary_path.read_text())


def run_model(
    name: str, args: argparse.Namespace, t10k_dir: Path, x_test: torch.Tensor, workdir: Path
) -> dict:
    """Train ``name`` from its config, evaluate it on ``x_test`` and write its figures."""
    overrides = [
        f"data.path={t10k_dir}",
        f"train.seed={args.seed}",
        f"train.threads={args.threads}",
        f"train.progress_bar={'true' if args.progress else 'false'}",
        f"train.run_dir={workdir / name}",
    ]
    if args.steps:
        overrides.append(f"train.max_steps={args.steps}")
    overrides += args.set
    cfg = load_config(CONFIGS / MODELS[name], overrides)
    run_dir, summary = _finished_run(workdir / name, cfg) if args.reuse_runs else (None, None)
    reused = run_dir is not None
    if not reused:
        start = time.perf_counter()
        run_dir, summary = fit(cfg)
        train_time = time.perf_counter() - start
    else:
        print(f"{name}: reusing the finished training run in {run_dir}", flush=True)
        train_time = summary["wall_time_s"]
    _, model, _ = load_run(run_dir, checkpoint=args.checkpoint, with_data=False)
    model.eval()
    x = x_test.float()

    start = time.perf_counter()
    numbers = evaluate_model(
        model,
        x,
        divergence=cfg.divergence.name,
        ais_chains=args.ais_chains,
        ais_steps=args.ais_steps,
        is_samples=args.is_samples,
        seed=args.seed,
        ais_curve_path=args.out / f"mnist_{name}_ais_curve.png" if args.ais_curve else None,
        progress=args.progress,
        per_example=True,
        **_evaluate_options(args),
    )
    eval_time = time.perf_counter() - start
    save_per_image(args.out, name, numbers.pop("per_example"), x_test, run_dir)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        plot_samples(
            model.generate(64),
            args.out / f"mnist_{name}_samples.png",
            image_shape=IMAGE_SHAPE,
            title=f"MNIST: {name} samples, E[x|z], z ~ p(z)",
        )
        shown = x[:16]
        plot_reconstructions(
            shown,
            model.reconstruct(shown),
            args.out / f"mnist_{name}_reconstructions.png",
            image_shape=IMAGE_SHAPE,
            title=f"MNIST: {name} test images (top) and reconstructions E[x|z], z ~ q(z|x)",
        )
    metrics_csv = run_dir / "metrics.csv"
    metrics = _read_metrics(metrics_csv)
    if metrics_csv.is_file():
        shutil.copyfile(metrics_csv, args.out / f"mnist_{name}_metrics.csv")
        plot_training_curves(metrics_csv, args.out / f"mnist_{name}_training.png")

    exact = cfg.divergence.name == "analytic"
    result = {
        "config": MODELS[name],
        "posterior": cfg.model.posterior,
        "divergence": cfg.divergence.name,
        "steps": summary["steps"],
        "training": "reused a finished run (--reuse-runs)" if reused else "trained in this run",
        "checkpoint": args.checkpoint,
        "log_px_ais": numbers.get("log_px_ais"),
        "log_px_ais_stderr": numbers.get("log_px_ais_stderr"),
    }
    if "log_px_is" in numbers:
        result["log_px_is"] = numbers["log_px_is"]
        result["log_px_is_stderr"] = numbers["log_px_is_stderr"]
    result["elbo" if exact else "elbo_estimate"] = numbers["elbo" if exact else "elbo_estimate"]
    result["reconstruction_error"] = numbers["reconstruction_error"]
    result["kl" if exact else "kl_estimate"] = numbers["kl_exact" if exact else "kl_estimate"]
    result.update(
        train_wall_time_s=round(train_time, 1),
        train_loop_wall_time_s=summary["wall_time_s"],
        seconds_per_step=round(summary["wall_time_s"] / max(1, summary["steps"]), 4),
        eval_wall_time_s=round(eval_time, 1),
        critic_health=critic_health(metrics, numbers),
        validation=summary["val"],
        evaluation=numbers,
        config_resolved=cfg.to_dict(),
    )
    return result


# --- report ------------------------------------------------------------------------------------


def markdown_table(
    models: dict[str, dict],
    command: str,
    n_test: int,
    is_samples: int = 1000,
    compared: dict | None = None,
) -> str:
    """The README table: one row per model, every number labelled as bound or estimate."""
    commands: dict[str, list[str]] = {}
    for name, r in models.items():
        commands.setdefault(r.get("command", command), []).append(name)
    source = (
        f"`{command}`"
        if set(commands) <= {command}
        else "; ".join(f"{', '.join(names)}: `{cmd}`" for cmd, names in commands.items())
    )
    lines = [
        f"MNIST, 8-D latent, {n_test} binarised test images (t10k[9000:10000]); {source}",
        "",
        "| model | AIS log p(x) ± s.e. | IS log p(x) | ELBO | reconstruction error | KL "
        "| critic acc. | ELBO − AIS | steps | train | eval |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in models.items():
        health = r.get("critic_health") or {}
        exact = "elbo" in r
        elbo = _fmt(r["elbo"] if exact else r["elbo_estimate"]) + ("" if exact else " (est.)")
        kl = _fmt(r["kl"] if exact else r["kl_estimate"]) + ("" if exact else " (est.)")
        gap = (r["elbo"] if exact else r["elbo_estimate"]) - r["log_px_ais"]
        lines.append(
            f"| {name} | {_fmt(r['log_px_ais'])} ± {_fmt(r['log_px_ais_stderr'], 3)} "
            f"| {_fmt(r.get('log_px_is'))} | {elbo} | {_fmt(r['reconstruction_error'])} | {kl} "
            f"| {_fmt(health.get('final_critic_accuracy'), 3)} | {_fmt(gap)} | {r['steps']} "
            f"| {_duration(r['train_wall_time_s'])} | {_duration(r['eval_wall_time_s'])} |"
        )
    if compared is not None:
        verdict = "met" if compared["goal_met"] else "NOT met"
        lines += [
            "",
            f"AVB-AC − VAE in AIS log p(x): {compared['avb_ac_minus_vae_log_px_ais']:+.2f} ± "
            f"{compared['stderr']:.2f} nats (Monte Carlo s.e.); goal (≥ {GOAL_NATS:g} nat) {verdict}.",
        ]
        paired = compared.get("paired_over_test_images")
        if paired is not None:
            lines[-1] += (
                f" Paired over the {paired['examples']} test images: s.e. "
                f"{paired['difference_stderr_over_examples']:.2f} nats; AVB-AC is higher on "
                f"{100 * paired['fraction_where_a_is_higher']:.0f} % of them."
            )
        full = compared.get("avb_ac_minus_vae_full_paired")
        if full is not None:
            lines[-1] += (
                f" AVB-AC − full-covariance VAE (vae_full): {full['difference']:+.2f} ± "
                f"{full['difference_stderr_over_examples']:.2f} nats, paired."
            )
    lines += [
        "",
        "AIS: HMC AIS from the Gaussian with q(z|x)'s moments, ± its Monte Carlo s.e. over chains "
        f"(the test set is fixed). IS: {is_samples:,} importance samples from q (VAEs only). "
        "ELBO: a true "
        "bound for the VAE; for AVB / AVB-AC reconstruction − the critic's KL estimate, not a "
        "bound. ELBO − AIS > 0 means the KL estimate is too small by at least that much.",
    ]
    return "\n".join(lines)


def per_image_path(out: Path, name: str) -> Path:
    return out / f"mnist_per_image_{name}.pt"


def save_per_image(out: Path, name: str, per_example: dict, x_test: torch.Tensor, run_dir) -> None:
    """Per-image AIS (and IS) of one model, tagged with the test tensor they were computed on."""
    torch.save(
        {
            **{k: v.cpu() for k, v in per_example.items()},
            "data_sha256": data_fingerprint(x_test),  # `implicit-vae compare` reads these files too
            "run": str(run_dir),
        },
        per_image_path(out, name),
    )


def _paired(out: Path, models: dict[str, dict], a: str, b: str) -> dict | None:
    """Model a − model b image by image, if both per-image files in ``out`` are on the same images
    and belong to the rows in ``models`` (their mean difference is the rows' difference)."""
    paths = [per_image_path(out, n) for n in (a, b)]
    if not all(p.is_file() for p in paths):
        return None
    try:
        paired = compare_evaluations(*paths)
    except EvaluationError:  # files from other test images or another evaluation: no pairing
        return None
    rows = models[a]["log_px_ais"] - models[b]["log_px_ais"]
    return paired if math.isclose(paired["difference"], rows, abs_tol=1e-3) else None


def comparison(models: dict[str, dict], out: Path | None = None) -> dict | None:
    """AVB-AC − VAE in AIS log p(x) against the goal: the Monte Carlo s.e. of the difference of
    the means, and (when ``out`` holds both models' per-image files) the paired s.e. over test
    images, the one that says whether the gap would survive a fresh test set."""
    if not {"vae", "avb_ac"} <= set(models):
        return None
    a, v = models["avb_ac"], models["vae"]
    diff = a["log_px_ais"] - v["log_px_ais"]
    se = math.hypot(a["log_px_ais_stderr"], v["log_px_ais_stderr"])
    result = {
        "avb_ac_minus_vae_log_px_ais": diff,
        "stderr": se,
        "goal": f"AVB-AC at least {GOAL_NATS:g} nat better than the Gaussian VAE in AIS log p(x)",
        "goal_met": bool(diff >= GOAL_NATS),
    }
    if out is None:
        return result
    # vae_full: how much of AVB-AC's gain a full-covariance Gaussian posterior already gives.
    pairs = (("paired_over_test_images", "vae"), ("avb_ac_minus_vae_full_paired", "vae_full"))
    for key, baseline in pairs:
        paired = _paired(out, models, "avb_ac", baseline) if baseline in models else None
        if paired is not None:
            result[key] = paired
    return result


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA,
        help="directory with the MNIST t10k IDX files (default: %(default)s)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="override train.max_steps of every config (default: the configs')",
    )
    parser.add_argument("--models", nargs="+", default=list(REQUIRED), choices=list(MODELS))
    parser.add_argument("--seed", type=int, default=0, help="training and evaluation seed")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: reproducible, and robust on a busy machine)",
    )
    parser.add_argument("--ais-chains", type=int, default=8)
    parser.add_argument("--ais-steps", type=int, default=1000)
    parser.add_argument(
        "--ais-leapfrog",
        type=int,
        default=None,
        help="HMC leapfrog steps per AIS transition (needs evaluate_model("
        "ais_leapfrog_steps=...); default: the library's)",
    )
    parser.add_argument(
        "--ais-batch-size",
        type=int,
        default=None,
        help="examples per AIS batch (needs evaluate_model(ais_batch_size=...))",
    )
    parser.add_argument(
        "--ais-curve",
        action="store_true",
        help="also plot AIS log p(x) against the number of steps (100 images)",
    )
    parser.add_argument(
        "--is-samples",
        type=int,
        default=1000,
        help="importance samples per image for the VAE's IS estimate",
    )
    parser.add_argument(
        "--max-test",
        type=int,
        default=None,
        help="evaluate on the first N test images only (smoke runs)",
    )
    parser.add_argument(
        "--checkpoint",
        choices=("last", "best"),
        default="last",
        help="which checkpoint to evaluate (best: by the validation loss, an estimate for AVB)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra config override applied to every model (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the run directories here (default: a temporary directory)",
    )
    parser.add_argument(
        "--reuse-runs",
        action="store_true",
        help="with --workdir: evaluate a model's finished run there instead of training it again "
        "(its config must match exactly)",
    )
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parser.parse_args(argv)
    if args.reuse_runs and args.workdir is None:
        parser.error("--reuse-runs needs --workdir (the directory that holds the finished runs)")
    for key in (
        "steps",
        "threads",
        "ais_chains",
        "ais_steps",
        "ais_leapfrog",
        "ais_batch_size",
        "is_samples",
        "max_test",
    ):
        value = getattr(args, key)
        if value is not None and value < 1:
            parser.error(f"--{key.replace('_', '-')} must be a positive integer, got {value}")
    return args


def reproducing_command(argv: list[str]) -> str:
    return shlex.join(["python", "benchmarks/mnist.py", *argv])


def _earlier_models(path: Path, evaluation: dict, data_info: dict, skip: list[str]) -> dict:
    """Models in an earlier ``mnist.json`` at ``path`` that this run does not redo, kept only if
    they were evaluated on the same test tensor with the same settings (so rows stay comparable);
    each keeps its own ``command``."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    same = (
        earlier.get("evaluation") == evaluation
        and earlier.get("data", {}).get("test_tensor_sha256") == data_info["test_tensor_sha256"]
        and earlier.get("data", {}).get("test_examples_evaluated")
        == data_info["test_examples_evaluated"]
    )
    models = earlier.get("models", {}) if same else {}
    return {k: v for k, v in models.items() if k not in skip and k in MODELS}


def write_report(args, command: str, data_info: dict, results: dict, n_test: int) -> str:
    """Write mnist.json and mnist.md for the models finished so far, keeping the other models of
    an earlier report in ``--out`` that match (see :func:`_earlier_models`); returns the table."""
    evaluation = {
        "ais_chains": args.ais_chains,
        "ais_steps": args.ais_steps,
        "ais_leapfrog_steps": args.ais_leapfrog or "library default",
        "is_samples": args.is_samples,
        "checkpoint": args.checkpoint,
        "stderr": "Monte Carlo s.e. over AIS chains / IS samples; the test set is fixed",
    }
    for r in results.values():
        r.setdefault("command", command)
    kept = _earlier_models(args.out / "mnist.json", evaluation, data_info, args.models)
    results = {k: ({**kept, **results}[k]) for k in MODELS if k in kept or k in results}
    compared = comparison(results, args.out)
    table = markdown_table(results, command, n_test, args.is_samples, compared)
    report = {
        "benchmark": "mnist",
        "command": command,
        "complete": set(REQUIRED) <= set(results),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "data": data_info,
        "evaluation": evaluation,
        "comparison": compared,
        "paper": PAPER,
        "models": results,
    }
    write_result(args.out / "mnist.json", report)
    write_table(args.out / "mnist.md", table + "\n")
    return table


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    flush_denormals()  # as the CLI does: subnormal logits cost 2x on the CPU (implicit_vae.cpu)
    torch.set_num_threads(args.threads)
    command = reproducing_command(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mnist_"))
    results: dict[str, dict] = {}
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        t10k_dir = t10k_only_dir(args.data_dir.expanduser(), workdir)
        args.out.mkdir(parents=True, exist_ok=True)
        x_test, data_info = binarized_test_set(t10k_dir, args.out, args.data_dir)
        x_test = x_test[: args.max_test] if args.max_test else x_test
        data_info["test_examples_evaluated"] = n_test = int(x_test.shape[0])
        _evaluate_options(args)  # fail before training, not after it
        for name in args.models:
            print(
                f"{name}: training ({MODELS[name]}), then AIS on {n_test} images x "
                f"{args.ais_chains} chains x {args.ais_steps} steps",
                flush=True,
            )
            results[name] = r = run_model(name, args, t10k_dir, x_test, workdir)
            extra = f"  IS {r['log_px_is']:.2f}" if "log_px_is" in r else ""
            print(
                f"{name:7s} AIS {r['log_px_ais']:.2f} ± {r['log_px_ais_stderr']:.2f}{extra}  "
                f"train {r['train_wall_time_s']:.0f} s ({r['seconds_per_step'] * 1000:.0f} ms/step)"
                f"  eval {r['eval_wall_time_s']:.0f} s",
                flush=True,
            )
            # Written after every model, so a long run that stops keeps what it finished.
            table = write_report(args, command, data_info, results, n_test)
    except (BenchmarkError, ConfigError) as err:
        print(f"benchmarks/mnist.py: error: {err}", file=sys.stderr)
        return 2
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table)
    print(f"wrote {args.out / 'mnist.json'} and {args.out / 'mnist.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
