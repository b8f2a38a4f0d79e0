"""The KL audit: the semi-implicit bracket (ordered, narrowing in K, containing the exact KL of a
linear semi-implicit posterior), the closed-form truth of a Gaussian run, the unavailable truth of an
implicit one, and one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from implicit_vae.cli import main
from implicit_vae.config import ConfigError
from implicit_vae.evaluation.audit import audit_posteriors, audit_run
from implicit_vae.priors import StandardNormal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "semi_implicit"))
from si_models import gaussian_kl_to_standard_normal, linear_case, table_posterior  # noqa: E402

from pngs import decoded_png  # noqa: E402
from tiny_runs import TINY_NETWORKS  # noqa: E402

# A tiny audit: few inputs, a few critic steps, small samples.
TINY_AUDIT = ["--examples", "2", "--truth-samples", "64", "--steps", "3", "--samples", "100",
              "--batch-size", "32", "--critic-width", "16", "--critic-blocks", "1"]  # fmt: skip


def _train(run, extra, steps=4):
    args = ["train"]
    for item in [*TINY_NETWORKS, f"train.max_steps={steps}", f"train.run_dir={run}", *extra]:
        args += ["--set", item]
    assert main(args) == 0


@pytest.fixture(scope="module")
def semi_implicit_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("audit") / "si"
    _train(run, ["model.posterior=semi_implicit", "divergence.name=sivi",
                 "divergence.mixing_samples=5", "model.latent_dim=4"])  # fmt: skip
    return run


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_cli_audit_of_a_semi_implicit_run_brackets_the_kl(semi_implicit_run, capsys):
    run = semi_implicit_run
    code = main(["audit", str(run), *TINY_AUDIT, "--mixing", "100",
                 "--estimators", "monte_carlo,avb_ac,kde,sivi,mmd"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "truth (bracket)" in out and "K =    100" in out
    result = json.loads((run / "audit.json").read_text())
    decoded_png(run / "plots" / "audit.png")
    assert result["examples"] == 2 and result["posterior"] == "SemiImplicitPosterior"
    truth = result["truth"]
    assert truth["kind"] == "bracket"
    assert len(truth["per_example"]["lower"]) == 2
    # Ordered (the two ends share their mixing draws and samples, so only their difference is
    # noisy) and narrowing as K grows: K = 1, 10, 100.
    ks = [row["mixing"] for row in truth["by_mixing"]]
    widths = [row["width"] for row in truth["by_mixing"]]
    assert ks == [1, 10, 100]
    assert all(row["lower"] <= row["upper"] + 1e-4 for row in truth["by_mixing"])
    assert widths[0] > widths[1] > widths[2] >= -1e-4
    assert truth["width"] == pytest.approx(widths[-1])
    # The estimators: the run's own (as trained), both contrasts, kde, sivi; what is skipped, why.
    cells = result["estimators"]
    assert set(cells) == {"run:sivi", "avb_ac[diagonal]", "avb_ac[full]", "kde", "sivi"}
    for cell in cells.values():
        assert cell["status"] == "ok", cell["status"]
        assert len(cell["per_example"]) == 2 and cell["wall_time_s"] >= 0
        assert cell["bracket"] == [pytest.approx(truth["lower"]), pytest.approx(truth["upper"])]
        assert isinstance(cell["relative_error"], float)
    assert cells["sivi"]["options"] == {"mixing_samples": 5}  # the run's K
    assert "no density" in result["skipped"]["monte_carlo"]
    assert "not KL" in result["skipped"]["mmd"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_audit_run_writes_where_asked_and_refuses_bad_input(semi_implicit_run, tmp_path, capsys):
    out = tmp_path / "a.json"
    result = audit_run(semi_implicit_run, examples=1, mixing=10, truth_samples=16, estimators=[],
                       json_path=out, plot=False)  # fmt: skip
    assert json.loads(out.read_text())["truth"]["kind"] == "bracket"
    assert set(result["estimators"]) == {"run:sivi"} and "plot" not in result
    with pytest.raises(ConfigError, match="examples must be an integer >= 1"):
        audit_run(semi_implicit_run, examples=0)
    with pytest.raises(ConfigError, match="is not known"):
        audit_run(semi_implicit_run, examples=1, estimators=["avb_ac[wide]"])
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, expected in [
        (["audit", str(tmp_path / "missing")], "does not exist"),
        (["audit", str(empty)], "checkpoint"),
        (["audit", str(semi_implicit_run), "--examples", "0"], "--examples"),
        (["audit", str(semi_implicit_run), "--json", str(tmp_path / "no" / "a.json")], "--json"),
    ]:
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err


def test_exact_kl_of_a_linear_semi_implicit_posterior_lies_in_the_bracket():
    """q(z|x_i) = N(m_i, A_i A_iᵀ + σ² I) exactly; the bracket at K = 1000 must hold its KL, within
    4 standard errors of the bracket's Monte Carlo, and be far tighter than at K = 1."""
    x, mean, factor, cov = linear_case(b=3, d=2, e=2, sigma=0.3)
    posterior = table_posterior(x, mean, factor, sigma=0.3)
    exact = gaussian_kl_to_standard_normal(mean, cov)
    result = audit_posteriors(posterior, StandardNormal(2), x, mixing=1000, truth_samples=2000,
                              estimators=["sivi", "knn"], samples=1000, seed=0)  # fmt: skip
    truth = result["truth"]
    lo, hi = (torch.tensor(truth["per_example"][k]) for k in ("lower", "upper"))
    lo_se, hi_se = (torch.tensor(truth["per_example"][k]) for k in ("lower_se", "upper_se"))
    assert (lo - 4 * lo_se <= exact).all() and (exact <= hi + 4 * hi_se).all(), (lo, exact, hi)
    assert (hi - lo).max() < 0.05
    rows = truth["by_mixing"]
    assert rows[0]["mixing"] == 1 and rows[0]["width"] > 10 * truth["width"]
    assert truth["midpoint"] == pytest.approx(float(exact.mean()), abs=0.05)
    # SIVI's estimate (K = 100) is the upper end at a smaller K: biased high, as the audit shows.
    assert result["estimators"]["sivi"]["estimate"] > truth["upper"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_audit_of_a_gaussian_run_uses_the_closed_form(tmp_path):
    run = tmp_path / "gauss"
    _train(run, ["model.posterior=gaussian", "divergence.name=analytic"])
    result = audit_run(run, examples=2, truth_samples=64, steps=0, samples=2000,
                       estimators=["analytic", "monte_carlo", "sivi", "knn"], plot=False)  # fmt: skip
    truth = result["truth"]
    assert truth["kind"] == "exact" and truth["width"] == 0.0
    assert "by_mixing" not in truth
    cells = result["estimators"]
    assert cells["analytic"]["estimate"] == pytest.approx(truth["midpoint"], rel=1e-5)
    assert cells["run:analytic"]["estimate"] == pytest.approx(truth["midpoint"], rel=1e-5)
    # Monte Carlo over 2,000 samples of a KL of a few nats: within 5 %.
    assert cells["monte_carlo"]["relative_error"] == pytest.approx(0.0, abs=0.05)
    assert "SemiImplicitPosterior" in result["skipped"]["sivi"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_audit_of_an_implicit_run_reports_no_truth_and_reads_ais(tmp_path):
    run = tmp_path / "implicit"
    _train(run, ["model.posterior=implicit", "divergence.name=avb"])
    kw = {"examples": 2, "steps": 2, "samples": 100, "batch_size": 32, "plot": False,
          "estimators": ["knn"], "critic": {"width": 16, "blocks": 1}}  # fmt: skip
    result = audit_run(run, **kw)
    assert result["truth"]["kind"] == "unavailable" and "implicit" in result["truth"]["reason"]
    assert "evaluate" in result["ais_check"]  # no evaluation file yet: says how to get one
    cell = result["estimators"]["knn"]
    assert cell["status"] == "ok" and cell["relative_error"] is None and "bracket" not in cell
    (run / "evaluation_test.json").write_text(json.dumps(
        {"elbo_estimate": -40.0, "log_px_ais": -43.0, "log_px_ais_stderr": 0.1, "examples": 5}))
    check = audit_run(run, **kw)["ais_check"]
    assert check["difference"] == pytest.approx(3.0)
    assert "under-charged by at least 3.000" in check["statement"]
