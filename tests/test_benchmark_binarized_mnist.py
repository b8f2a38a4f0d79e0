"""benchmarks/binarized_mnist.py on generated .amat fixtures (a few dozen rows, tiny nets, a
handful of steps): the end-to-end --quick run, reuse of finished runs and results, resuming an
unfinished run, and the report's arithmetic and goal states against hand-computed values."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from scripts import load_benchmark_script

TINY = ["--set", "model.hidden=[16]", "--set", "model.noise_dim=4",
        "--set", "train.batch_size=10", "--set", "train.val_every=3",
        "--set", "train.log_every=3", "--set", "train.checkpoint_every=3"]  # fmt: skip
SMALL_EVAL = ["--eval-subset", "12", "--ais-chains", "2", "--ais-steps", "4", "--is-samples",
              "8", "--iw-samples", "4", "--iw-mixing", "3", "--check-examples", "4",
              "--check-steps", "8", "--ais-leapfrog", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def bench():
    return load_benchmark_script("binarized_mnist.py", "binarized_mnist_benchmark")


@pytest.fixture(scope="module")
def amat(tmp_path_factory) -> Path:
    """binarized_mnist_{train,valid,test}.amat with 40 / 20 / 20 random 0/1 rows (test gzipped)."""
    import gzip

    root = tmp_path_factory.mktemp("amat")
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("valid", 20), ("test", 20)):
        rows = (rng.random((n, 784)) < 0.2).astype(int)
        text = "\n".join(" ".join(map(str, r)) for r in rows) + "\n"
        path = root / f"binarized_mnist_{split}.amat"
        if split == "test":
            with gzip.open(f"{path}.gz", "wt") as handle:
                handle.write(text)
        else:
            path.write_text(text)
    return root


def _argv(amat, tmp, *extra):
    return ["--quick", "--settings", "a", "--models", "vae,sivi", "--steps", "6",
            "--data", str(amat), "--workdir", str(tmp / "work"), "--out", str(tmp / "out"),
            *SMALL_EVAL, *TINY, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def quick(bench, amat, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quick")
    assert bench.main(_argv(amat, tmp)) == 0
    return tmp


@pytest.mark.slow
def test_quick_run_end_to_end(quick):
    """Both runs are trained under their names, evaluated on the 12 test images, cached with
    compare-readable per-image files; the report marks setting (a)'s goals pending (1 seed of 3)."""
    from implicit_vae.evaluation.compare import compare_evaluations

    per_run = quick / "out" / "binarized_mnist"
    vae = json.loads((per_run / "z10_vae_seed0.json").read_text())
    sivi = json.loads((per_run / "z10_sivi_seed0.json").read_text())
    assert (quick / "work" / "z10_vae_seed0" / "summary.json").is_file()
    assert vae["steps"] == sivi["steps"] == 6 and vae["training"] == "trained in this run"
    assert "log_px_is" in vae and "log_px_iw_semi_implicit" in sivi and "log_px_is" not in sivi
    for r in (vae, sivi):
        assert math.isfinite(r["log_px_ais"]) and r["train_examples"] == 12
        assert r["ais_steps_check"]["examples"] == 4
        assert r["overfitting_gap"] == pytest.approx(r["train_log_px_ais"] - r["log_px_ais"])
    paired = compare_evaluations(per_run / "z10_sivi_seed0.pt", per_run / "z10_vae_seed0.pt")
    assert paired["examples"] == 12
    report = json.loads((quick / "out" / "binarized_mnist.json").read_text())
    pair = report["paired"]["a_best_implicit_minus_vae"]
    assert pair["models"] == ["sivi", "vae"] and pair["difference"] == pytest.approx(paired["difference"])
    assert {g["status"] for g in report["goals"]} == {"pending"}
    table = (quick / "out" / "binarized_mnist.md").read_text()
    assert "| sivi |" in table
    assert report["rebuild_command"].startswith("python benchmarks/binarized_mnist.py --settings a ")
    assert f"Every row: `{report['rebuild_command']}`" in table


@pytest.mark.slow
def test_reuse_skips_finished_runs_and_rebuilds_from_committed_json(bench, amat, quick, capsys):
    """--reuse-runs: matching results stand (nothing trained or evaluated); with the run
    directory gone the per-run JSON still stands; with a JSON gone, the finished run is evaluated
    again without training; without --reuse-runs an existing run directory is refused."""
    capsys.readouterr()
    assert bench.main(_argv(amat, quick, "--reuse-runs")) == 0
    out = capsys.readouterr().out
    assert "z10_vae_seed0: cached" in out and "z10_sivi_seed0: cached" in out
    (quick / "out" / "binarized_mnist" / "z10_vae_seed0.json").unlink()
    log = quick / "work" / "z10_vae_seed0.log"
    before = log.stat().st_mtime_ns
    assert bench.main(_argv(amat, quick, "--reuse-runs")) == 0
    assert "z10_vae_seed0: evaluate" in capsys.readouterr().out
    assert log.stat().st_mtime_ns == before  # not trained again
    import shutil

    shutil.rmtree(quick / "work" / "z10_sivi_seed0")
    assert bench.main(_argv(amat, quick, "--reuse-runs")) == 0
    assert "z10_sivi_seed0: cached" in capsys.readouterr().out
    assert bench.main(_argv(amat, quick)) == 2
    assert "exists; pass --reuse-runs" in capsys.readouterr().err


@pytest.mark.slow
def test_unfinished_run_is_resumed(bench, amat, tmp_path, monkeypatch, capsys):
    """A run stopped mid-way (last.ckpt, no summary.json) is resumed to its full 6 steps."""
    from implicit_vae.config import load_config
    from implicit_vae.training import fit as fit_module
    from implicit_vae.training.module import StopRequest, TrainingInterrupted

    class StopSoon(StopRequest):  # as if Ctrl-C arrived after the second step
        checks = 0

        def __bool__(self):
            StopSoon.checks += 1
            if StopSoon.checks > 2:
                self.signal = signal.SIGINT
            return self.signal is not None

    args = bench.parse_args(_argv(amat, tmp_path, "--models", "vae"))
    cfg_path, overrides, _ = bench.wanted_config("a", "vae", 0, args)
    run = tmp_path / "work" / "z10_vae_seed0"
    cfg = load_config(cfg_path, [f"data.path={amat}", *overrides, "train.progress_bar=false",
                                 f"train.run_dir={run}"])  # fmt: skip
    monkeypatch.setattr(fit_module, "StopRequest", StopSoon)
    with pytest.raises(TrainingInterrupted):
        fit_module.fit(cfg)
    monkeypatch.undo()
    assert not (run / "summary.json").exists()
    assert bench.main(_argv(amat, tmp_path, "--models", "vae", "--reuse-runs")) == 0
    assert "z10_vae_seed0: resume" in capsys.readouterr().out
    record = json.loads((tmp_path / "out" / "binarized_mnist" / "z10_vae_seed0.json").read_text())
    assert record["steps"] == 6 and record["training"] == "resumed (--reuse-runs)"


def test_missing_data_is_one_line_exit_2(bench, tmp_path, capsys):
    code = bench.main(["--quick", "--data", str(tmp_path / "nowhere"), "--workdir",
                       str(tmp_path / "w")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--data" in err and "does not exist" in err


def test_plan_states(bench, tmp_path):
    """plan(): absent → train (or cached with a matching result under --reuse-runs); a run
    directory without --reuse-runs, or without a checkpoint, is refused."""
    want = {"model": {"latent_dim": 10}}
    fp = bench.fingerprint(want)
    cached = {"config_fingerprint": fp, "eval_fingerprint": "e"}
    run = tmp_path / "r"
    assert bench.plan(run, want, cached, "e", reuse=True) == "cached"
    assert bench.plan(run, want, cached, "other", reuse=True) == "train"
    assert bench.plan(run, want, cached, "e", reuse=False) == "train"
    run.mkdir()
    assert bench.plan(run, want, None, "e", reuse=False) == "train"  # empty: claimable
    (run / "config.yaml").write_text("{}")
    with pytest.raises(bench.BenchmarkError, match="pass --reuse-runs"):
        bench.plan(run, want, None, "e", reuse=False)
    with pytest.raises(bench.BenchmarkError, match="no checkpoint"):
        bench.plan(run, want, None, "e", reuse=True)


# --- the report, from synthetic per-run records -------------------------------------------------


def _record(setting, model, seed, ais, **extra):
    r = {"run": f"{setting}{model}{seed}", "setting": setting, "model": model, "seed": seed,
         "log_px_ais": ais, "steps": 100_000, "train_wall_time_s": 10.0,
         "eval_wall_time_s": 5.0}  # fmt: skip
    return {**r, **extra}


def test_mean_and_stderr_over_seeds(bench):
    """-98, -97, -96: mean -97, s.e. = std (1) / sqrt(3); one seed has no s.e."""
    got = bench.report.mean_stderr([-98.0, -97.0, -96.0])
    assert got["mean"] == pytest.approx(-97.0) and got["stderr"] == pytest.approx(1 / math.sqrt(3))
    assert bench.report.mean_stderr([-5.0]) == {"mean": -5.0, "stderr": None, "seeds": 1}


def test_paired_difference_over_seeds_by_hand(bench):
    """Per-image differences [1, 3] (seed 0) and [2, 2] (seed 1): per-seed means 2 and 2, so the
    mean over seeds is 2 with s.e. 0; seed 0's s.e. over images is std([1, 3]) / sqrt 2 = 1."""
    images = {"a0": torch.tensor([-90.0, -88.0]), "v0": torch.tensor([-91.0, -91.0]),
              "a1": torch.tensor([-89.0, -90.0]), "v1": torch.tensor([-91.0, -92.0])}  # fmt: skip
    a = {0: {"run": "a0"}, 1: {"run": "a1"}}
    v = {0: {"run": "v0"}, 1: {"run": "v1"}, 2: {"run": "v2"}}
    got = bench.report.paired_over_seeds(a, v, images.get)
    assert got["seeds"] == [0, 1] and got["difference"] == pytest.approx(2.0)
    assert got["stderr_over_seeds"] == pytest.approx(0.0)
    assert got["per_seed"][0]["difference_stderr_over_examples"] == pytest.approx(1.0)


def _goal(report, setting, start):
    return next(
        g for g in report["goals"] if g["setting"] == setting and g["goal"].startswith(start)
    )


@pytest.mark.parametrize(
    ("vae", "uivi", "gain", "seeds", "expected"),
    [
        (-98.0, -93.0, 5.0, 3, ("met", "met", "met")),
        (-99.0, -95.0, 0.5, 3, ("missed", "pending", "missed")),  # other implicit models missing
        (-98.0, -93.0, 5.0, 2, ("pending", "pending", "pending")),  # 2 seeds of 3
    ],
)
def test_goals_of_setting_a(bench, vae, uivi, gain, seeds, expected):
    """VAE ≥ -98.29, best implicit ≥ -94.09 and the paired +1 nat, each met / missed / pending
    from synthetic per-run records (per-image values: a constant, so the paired gain is exact)."""
    records, images = {}, {}
    for seed in range(seeds):
        for model, value in (("vae", vae), ("uivi", vae + gain)):
            r = _record("a", model, seed, value if model == "vae" else uivi)
            records[r["run"]] = r
            images[r["run"]] = torch.full((4,), value)
    got = bench.report.build(records, images.get)
    statuses = tuple(
        _goal(got, "a", s)["status"] for s in ("VAE", "best implicit >=", "best implicit -")
    )
    assert statuses == expected
    assert got["settings"]["a"]["uivi"]["log_px_ais"]["mean"] == pytest.approx(uivi)
    assert got["paired"]["a_best_implicit_minus_vae"]["difference"] == pytest.approx(gain)
    assert all(_goal(got, "b", s)["status"] == "pending" for s in ("VAE >= -", "VAE >= py", "AVB"))


def test_goals_of_setting_b_and_the_table(bench):
    """(b): VAE -89.5 ≥ -89.78 met; our IS -89.4 vs pythae's -89.9 met; AVB-AC paired +0.3 < 0.5
    missed; a skipped peer leaves that goal pending with its reason."""
    records = {"v": _record("b", "vae", 0, -89.5, run="v", log_px_is=-89.4),
               "ac": _record("b", "avb_ac", 0, -89.2, run="ac")}  # fmt: skip
    images = {
        "v": torch.tensor([-89.0, -90.0], dtype=torch.float64),
        "ac": torch.tensor([-88.7, -89.7], dtype=torch.float64),
    }
    got = bench.report.build(records, images.get, {"log_px_is": -89.9})
    assert [_goal(got, "b", s)["status"] for s in ("VAE >= -", "VAE >= py", "AVB")] == [
        "met", "met", "missed"]  # fmt: skip
    assert _goal(got, "b", "AVB")["value"] == pytest.approx(0.3)
    skipped = bench.report.build(records, images.get, {"skipped": "pythae is not installed"})
    assert _goal(skipped, "b", "VAE >= py")["status"] == "pending"
    evaluation = {"test_examples": 2, "ais_chains": 8, "ais_steps": 1000, "is_samples": 5000,
                  "iw_samples": 1000, "iw_mixing_samples": 100, "train_examples": 2,
                  "check_examples": 2, "check_steps": 3000}  # fmt: skip
    table = bench.report.markdown(skipped, "python benchmarks/binarized_mnist.py", evaluation)
    assert (
        "-89.78 (row 5" in table
        and "| (b) | AVB-AC >= VAE + 0.5, paired | 0.30 | missed |" in table
    )
    assert "pythae is not installed" in table
    assert "AIS 8 chains × 1000 steps, IS" in table  # no leapfrog count recorded: none claimed
    evaluation["ais_leapfrog_steps"] = 1
    stated = bench.report.markdown(skipped, "python benchmarks/binarized_mnist.py", evaluation)
    assert "AIS 8 chains × 1000 steps (1 leapfrog step each), IS" in stated
    # Every table has as many cells in its separator row as in its header row (Markdown drops a
    # table whose rows disagree).
    rows = [line for line in table.splitlines() if line.startswith("|")]
    for header, rule in zip(rows, rows[1:]):
        if set(rule) <= set("|-"):
            assert rule.count("|") == header.count("|"), header


def test_a_control_pairs_models_that_share_the_objective(bench):
    """sivi_iw and iwae (both importance-weighted): their paired difference is reported beside the
    best-implicit − VAE one and named in the table; here sivi_iw − iwae = −0.25 exactly."""
    records, images = {}, {}
    for model, value in (("vae", -94.0), ("iwae", -93.0), ("sivi_iw", -93.25)):
        r = _record("a", model, 0, value)
        records[r["run"]], images[r["run"]] = r, torch.full((3,), value, dtype=torch.float64)
    got = bench.report.build(records, images.get)
    assert got["paired"]["a_best_implicit_minus_vae"]["models"] == ["sivi_iw", "vae"]
    control = got["paired"]["a_sivi_iw_minus_iwae"]
    assert control["models"] == ["sivi_iw", "iwae"] and control["difference"] == pytest.approx(-0.25)
    evaluation = {"test_examples": 3, "ais_chains": 8, "ais_steps": 1000, "is_samples": 5000,
                  "iw_samples": 1000, "iw_mixing_samples": 100, "train_examples": 3,
                  "check_examples": 3, "check_steps": 3000}  # fmt: skip
    table = bench.report.markdown(got, "python benchmarks/binarized_mnist.py", evaluation)
    assert "sivi_iw − iwae in AIS per test image: -0.25" in table
    assert "sivi_iw − vae in AIS per test image: +0.75" in table


def test_committed_results_name_no_directory_of_this_machine(tmp_path):
    """Absolute paths in a result become relative to the repository; prose with slashes stays."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from benchmark_runs import ROOT, portable

    out = portable({"plot": str(ROOT / "benchmarks/results/a.png"),
                    "command": f"python x.py --workdir {ROOT.parent / 'runs/w'} --steps 5",
                    "note": ["log q/p, 1/√3, (x)/2"], "n": 3})  # fmt: skip
    assert out == {"plot": "benchmarks/results/a.png",
                   "command": "python x.py --workdir ../runs/w --steps 5",
                   "note": ["log q/p, 1/√3, (x)/2"], "n": 3}  # fmt: skip


def _has_pythae() -> bool:
    import importlib.util

    return importlib.util.find_spec("pythae") is not None


@pytest.mark.skipif(not _has_pythae(), reason="pythae is not installed (the peers extra)")
def test_epoch_timing_against_pythae_pairs_each_epoch(bench, amat, tmp_path):
    peer = load_benchmark_script("binarized_mnist_peer.py", "binarized_mnist_peer_timing")
    assert peer.main(["--data", str(amat), "--pairs", "2", "--out", str(tmp_path)]) == 0
    got = json.loads((tmp_path / "binarized_mnist" / "epoch_ours_vs_pythae.json").read_text())
    assert len(got["ours_s"]) == len(got["pythae_s"]) == 2
    assert got["ratios"] == pytest.approx([o / t for o, t in zip(got["ours_s"], got["pythae_s"])])


@pytest.mark.skipif(_has_pythae(), reason="checks the message shown without pythae")
def test_epoch_timing_without_pythae_says_how_to_install_it(bench, amat, tmp_path, capsys):
    peer = load_benchmark_script("binarized_mnist_peer.py", "binarized_mnist_peer_timing")
    assert peer.main(["--data", str(amat), "--out", str(tmp_path)]) == 2
    assert "pip install -e '.[peers]'" in capsys.readouterr().err
    assert not (tmp_path / "binarized_mnist").exists()


def test_a_finished_run_is_reused_though_the_schema_grew(bench, tmp_path):
    """A finished run whose own config is the wanted one, and whose best.ckpt is the one evaluated,
    is reused even when its record's config fingerprint predates new schema keys; another
    checkpoint is evaluated again."""
    import yaml

    from implicit_vae.config import load_config

    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(load_config(None).to_dict()))
    (run / "summary.json").write_text("{}")
    (run / "checkpoints" / "best.ckpt").write_bytes(b"weights")
    want = bench.comparable(load_config(run / "config.yaml").to_dict(), bench.IGNORED)
    cached = {"config_fingerprint": "from an older schema", "eval_fingerprint": "e",
              "checkpoint_sha256": bench.sha256_file(run / "checkpoints" / "best.ckpt")}
    assert bench.plan(run, want, cached, "e", reuse=True) == "cached"
    assert bench.plan(run, want, cached, "other", reuse=True) == "evaluate"
    (run / "checkpoints" / "best.ckpt").write_bytes(b"other weights")
    assert bench.plan(run, want, cached, "e", reuse=True) == "evaluate"


def test_no_committed_result_names_a_directory_of_a_machine():
    """Every committed result (JSON, Markdown) names paths relative to the repository."""
    import re

    machine = re.compile(r"(?<![\w.])/(work|tmp|root|home|Users)/")
    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    offenders = [str(p.relative_to(results)) for p in sorted(results.rglob("*"))
                 if p.suffix in (".json", ".md") and machine.search(p.read_text())]  # fmt: skip
    assert not offenders, offenders


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ([], None),
        (["train.lr_schedule=multistep", "train.lr_milestones=[100000,175000]", "train.lr_gamma=0.5"],
         {"scheduler_cls": "MultiStepLR", "scheduler_params": {"milestones": [200, 350], "gamma": 0.5}}),
    ],
    ids=["constant", "multistep"],
)
def test_the_peer_is_given_our_schedule_in_epochs(bench, settings, expected):
    from implicit_vae.config import load_config

    peer = load_benchmark_script("binarized_mnist_peer.py", "binarized_mnist_peer_schedule")
    assert peer.pythae_schedule(load_config(None, settings).train, 500) == expected


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        (["train.lr_schedule=multistep", "train.lr_milestones=[100250]"], "100250 is not a whole"),
        (["train.lr_schedule=cosine"], "not 'cosine'"),
    ],
)
def test_the_peer_refuses_a_schedule_it_cannot_mirror(bench, settings, match):
    from implicit_vae.config import load_config

    peer = load_benchmark_script("binarized_mnist_peer.py", "binarized_mnist_peer_schedule")
    with pytest.raises(ValueError, match=match):
        peer.pythae_schedule(load_config(None, settings).train, 500)


@pytest.mark.parametrize("argv, settings, expected", [
    (["--settings", "a", "--models", "sivi_iw", "--seeds", "2", "--ais-steps", "200"], ["a"],
     "--settings a --ais-steps 200 --reuse-runs"),
    (["--settings=b", "--model=vae", "--seed=0", "--reuse-runs", "--set", "train.lr_gamma=0.5"],
     ["a", "b"], "--settings a,b --reuse-runs --set train.lr_gamma=0.5"),
    (["--set", "train.seed=3", "--mod", "vae"], ["a"], "--settings a --set train.seed=3 --reuse-runs"),
])  # fmt: skip
def test_the_rebuild_command_drops_the_selection_of_one_invocation(bench, argv, settings, expected):
    """A table written by a run of one model and seed names the command that rebuilds all its rows:
    the same evaluation and overrides, each setting's default models and seeds, reusing runs."""
    assert bench.rebuild_command(argv, settings) == "python benchmarks/binarized_mnist.py " + expected
    assert bench.parse_args(argv).argv == argv
