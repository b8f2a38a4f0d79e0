"""paired_difference: the paired mean difference and its standard error over examples."""

import math

import pytest
import torch

from implicit_vae.evaluation import EvaluationError, paired_difference


def test_paired_difference_matches_hand_computation():
    a = torch.tensor([-100.0, -90.0, -110.0, -95.0])
    b = torch.tensor([-101.0, -90.5, -109.0, -97.0])
    out = paired_difference(a, b)
    diff = [1.0, 0.5, -1.0, 2.0]
    mean = sum(diff) / 4
    sd = math.sqrt(sum((d - mean) ** 2 for d in diff) / 3)
    assert out["difference"] == pytest.approx(mean)
    assert out["difference_stderr_over_examples"] == pytest.approx(sd / 2)
    assert out["fraction_where_a_is_higher"] == pytest.approx(0.75)
    assert out["examples"] == 4
    assert out["mean_a"] == pytest.approx(-98.75) and out["mean_b"] == pytest.approx(-99.375)


def test_pairing_removes_the_shared_per_image_difficulty():
    """Two models whose per-image values share a large image effect: the paired s.e. is set by
    the small model difference only, not by how much images differ from each other."""
    gen = torch.Generator().manual_seed(0)
    difficulty = 20.0 * torch.randn(1000, generator=gen)
    a = -100.0 + difficulty + 0.1 * torch.randn(1000, generator=gen) + 0.5
    b = -100.0 + difficulty + 0.1 * torch.randn(1000, generator=gen)
    out = paired_difference(a, b)
    assert out["difference"] == pytest.approx(0.5, abs=0.02)
    # sd of the difference is 0.1 * sqrt(2), so the s.e. is ~0.0045; unpaired it would be ~0.9
    assert out["difference_stderr_over_examples"] < 0.01


@pytest.mark.parametrize(
    "a, b, match",
    [
        (torch.zeros(3), torch.zeros(4), "same length"),
        (torch.zeros(1), torch.zeros(1), "at least 2"),
        (torch.tensor([0.0, float("nan")]), torch.zeros(2), "non-finite"),
    ],
)
def test_paired_difference_rejects_bad_input(a, b, match):
    with pytest.raises(EvaluationError, match=match):
        paired_difference(a, b)
