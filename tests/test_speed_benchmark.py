"""benchmarks/speed.py on tiny sizes: every figure is written with its pairs, ratio, goal and verdict;
and the fused guard check that made training steps cheap is still exact.

The speed goals themselves are not asserted here: timings on a shared test machine are too noisy.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from scripts import load_benchmark_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"
TINY = dict(train=3, ais=6, ais_steps=2, naive=1, memory=[4, 8], memory_steps=1, peer_examples=200)
FIGURE_KEYS = {"median_ratio", "goal", "pass", "timed", "ratios", "pairs", "command"}


@pytest.fixture(scope="module")
def speed():
    spec = importlib.util.spec_from_file_location("speed_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _check_figure(figure: dict, pairs: int, scored: bool) -> None:
    assert FIGURE_KEYS - {"command"} <= set(figure)
    assert len(figure["ratios"]) == len(figure["pairs"]) == pairs
    for pair, ratio in zip(figure["pairs"], figure["ratios"]):
        assert pair["a"] > 0 and pair["b"] > 0
        assert ratio == pytest.approx(pair["a"] / pair["b"])
    assert math.isfinite(figure["median_ratio"]) and figure["timed"]
    if scored:
        assert figure["goal"] >= 1 and figure["pass"] == (figure["median_ratio"] <= figure["goal"])
    else:
        assert figure["goal"] is None and figure["pass"] is None


def test_a_figure_is_the_median_ratio_of_its_pairs_against_its_goal(speed):
    """Hand-worked: pairs (2, 1), (9, 3), (8, 2) have ratios 2, 3, 4, median 3; a goal of 3 is met,
    2.9 is not, and no goal (a figure for scale) has no verdict."""
    a, b = [2.0, 9.0, 8.0], [1.0, 3.0, 2.0]
    met = speed.figure(a, b, 3.0, "one step", steps=5)
    assert met["ratios"] == [2.0, 3.0, 4.0] and met["median_ratio"] == 3.0 and met["pass"] is True
    assert met["pairs"] == [{"a": 2.0, "b": 1.0}, {"a": 9.0, "b": 3.0}, {"a": 8.0, "b": 2.0}]
    assert met["steps"] == 5 and met["timed"] == "one step"
    assert speed.figure(a, b, 2.9, "one step")["pass"] is False
    assert speed.figure([1.0, 3.0], [1.0, 1.0], None, "scale")["median_ratio"] == 2.0
    assert speed.figure(a, b, None, "scale")["pass"] is None


@pytest.mark.slow  # tens of seconds of timing runs; checks the script end to end, not the speed
def test_quick_run_writes_every_figure(speed, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(speed, "QUICK", TINY)
    before = tmp_path / "before.json"
    before.write_text(json.dumps({"command": "old", "figures": {"ais_floor": {"median_ratio": 2}}}))
    out = tmp_path / "results" / "speed.json"
    args = ["--quick", "--pairs", "1", "--out", str(out), "--before", str(before)]
    assert speed.main(args) == 0
    report = json.loads(out.read_text())
    assert report["benchmark"] == "speed" and report["quick"] is True
    assert report["command"] == "python benchmarks/speed.py --quick --pairs 1 --threads 1"
    assert report["sizes"] == TINY and report["machine"]["torch"]
    assert report["before"] == {"ais_floor": 2} and report["before_command"] == "old"
    figures = report["figures"]
    assert set(figures) == {"train_step", "ais_floor", "ais_memory", "step_floor",
                            "avb_ac_vs_vae", "peer_epoch"}  # fmt: skip
    for name in ("train_step", "ais_floor", "ais_memory"):
        figure = figures[name]
        assert set(figure) >= FIGURE_KEYS and figure["command"] == report["command"]
        _check_figure(figure, 1, scored=True)
        assert figure["goal"] == speed.GOALS[name]
    # (d) per config against its network floor (MNIST only where its files are), (e) for scale,
    # (f) per peer model where pythae is installed.
    assert "digits_default" in figures["step_floor"]
    for name, figure in figures["step_floor"].items():
        if "skipped" not in figure:
            _check_figure(figure, 1, scored=True)
            assert figure["goal"] == speed.GOALS["step_floor"], name
    _check_figure(figures["avb_ac_vs_vae"], 1, scored=False)
    peers = figures["peer_epoch"]
    if "skipped" in peers:
        assert "pythae" in peers["skipped"]
    else:
        assert set(peers) == {"vae", "aae"}
        for figure in peers.values():
            _check_figure(figure, 1, scored=True)
    _check_figure(figures["train_step"]["whole_fit"], 1, scored=False)
    _check_figure(figures["ais_floor"]["per_example_loop"], 1, scored=False)
    # 2 annealing steps: the pilot (2 steps, 20 warm-up transitions + 1) and the reported chains (1)
    assert figures["ais_floor"]["decoder_passes"] == (1 + 21 * speed.LEAPFROG) + (1 + 1 * speed.LEAPFROG)
    memory = figures["ais_memory"]
    assert set(memory["peak_mib"]) == set(memory["growth_mib"]) == {"4", "8"}
    assert all(memory["growth_mib"][n] >= 0 for n in ("4", "8"))
    _check_figure(memory["one_batch"], 1, scored=False)
    table = capsys.readouterr().out
    assert all(name in table for name in figures) and f"wrote {out}" in table
    assert not list(out.parent.glob(".*.tmp"))  # written atomically


def test_decoder_passes_count_every_batch():
    module = load_benchmark_script("speed.py", "speed_passes")
    # batches of 128, 128, 44; each: the pilot's 1 + (2 + 20 warm-up) * 10 passes, then 1 + 2 * 10
    passes = module.decoder_passes(300, 3)
    assert len(passes) == 3 * (221 + 21) and set(passes) == {128, 44}


def test_the_fused_guard_check_is_exact():
    """The per-update guard is one fused norm; huge finite values, whose squares overflow, must not
    read as non-finite, and a NaN anywhere must read as NaN."""
    import torch

    from implicit_vae.training.guards import Player, nonfinite_value

    ok, huge = torch.ones(3), torch.full((4,), 1e30)
    assert nonfinite_value([]) is None and nonfinite_value([ok, huge]) is None
    assert math.isnan(nonfinite_value([ok, torch.tensor([1.0, math.inf, math.nan])]))
    assert nonfinite_value([ok, torch.tensor([-math.inf])]) == math.inf
    layer = torch.nn.Linear(2, 2)
    player = Player(layer.named_parameters())
    assert player.weights_finite() and player.nonfinite_gradient() is None  # no gradients yet
    layer(torch.ones(1, 2)).sum().backward()
    assert player.nonfinite_gradient() is None
    layer.bias.grad[0] = math.nan
    assert math.isnan(player.nonfinite_gradient())
    with torch.no_grad():
        layer.weight[0, 0] = -math.inf
    assert not player.weights_finite()


def test_peer_figure_without_pythae_is_skipped_with_the_reason(speed, monkeypatch):
    """Without pythae (a user's fresh install) the peers figure is skipped, named in the table."""
    monkeypatch.setitem(sys.modules, "pythae", None)  # import pythae now raises ImportError
    peers = speed.peer_figures(100, 1, 1, speed.GOALS["peer_epoch"], speed.figure)
    assert peers == {"skipped": "pythae is not installed (pip install -e '.[peers]')"}
    table = speed.table({"peer_epoch": peers})
    assert "peer_epoch" in table and "pythae is not installed" in table


def test_bare_loop_of_a_gaussian_vae_steps_without_a_critic(speed):
    """A Gaussian VAE has no critic parameters: the bare reference loop still builds and its step
    changes the weights (it used to stop at Adam's empty parameter list)."""
    import torch

    from implicit_vae.config import load_config

    cfg = load_config(None, ["model.posterior=gaussian", "divergence.name=analytic",
                             "train.batch_size=16"])  # fmt: skip
    loop = speed.BareLoop(cfg)
    assert loop.critic is None
    before = [p.detach().clone() for p in loop.model.model_parameters()]
    loop.step(0)
    after = list(loop.model.model_parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after))
