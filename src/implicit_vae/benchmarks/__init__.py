"""Benchmarks behind ``implicit-vae benchmark``: how accurate each divergence estimator is against
known answers (``kl``), with the cases, runner and report in separate modules."""

from .cases import (
    Case,
    gaussian_case,
    mixture_case,
    monte_carlo_truths,
    sampler_only_case,
    steps_for,
)
from .kl import format_cell, kl_accuracy, run_cell, write_json
from .report import markdown_table, plot_kl_accuracy

__all__ = [
    "Case",
    "format_cell",
    "gaussian_case",
    "kl_accuracy",
    "markdown_table",
    "mixture_case",
    "monte_carlo_truths",
    "plot_kl_accuracy",
    "run_cell",
    "sampler_only_case",
    "steps_for",
    "write_json",
]
