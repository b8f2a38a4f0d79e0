"""Loggers that continue a run's logs on resume instead of replacing them.

Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts; a resumed run must instead keep
the rows up to its checkpoint and drop only those a crashed segment wrote after it (they will be
recomputed). TensorBoard gets the same effect from ``purge_step``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class _ContinuingWriter(ExperimentWriter):
    """Keeps rows of an existing metrics file with ``step <= keep_until_step``."""

    def __init__(self, log_dir: str, keep_until_step: int):
        self._keep_until_step = keep_until_step
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            rows = [
                r for r in reader if r.get("step") and float(r["step"]) <= self._keep_until_step
            ]
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)  # the old rows are never absent from disk
        self.metrics_keys = sorted(header)

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        # Lightning rewrites the file in place when a new column appears; a kill mid-rewrite would
        # lose every row, so write a complete copy and rename it over the original.
        path = Path(self.metrics_file_path)
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)


class RunCSVLogger(CSVLogger):
    """``run_dir/metrics.csv``, continued (not replaced) when ``resume_step`` is given."""

    def __init__(self, run_dir: str | Path, resume_step: int | None = None):
        super().__init__(save_dir=str(run_dir), name="", version="")
        self._resume_step = -1 if resume_step is None else resume_step

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(self.log_dir, self._resume_step)
        return self._experiment


def run_loggers(run_dir: str | Path, resume_step: int | None = None) -> list:
    """TensorBoard events in ``run_dir/tensorboard`` and ``run_dir/metrics.csv``."""
    purge = {} if resume_step is None else {"purge_step": resume_step + 1}
    return [
        TensorBoardLogger(
            save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False, **purge
        ),
        RunCSVLogger(run_dir, resume_step),
    ]
