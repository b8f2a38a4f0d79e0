"""Run logs: ``metrics.csv`` (written here with the csv module) and TensorBoard events (Fabric's logger).

A resumed run continues both instead of replacing them: ``metrics.csv`` keeps its rows up to the
checkpoint's step and drops only those a crashed segment wrote after it (they will be recomputed), and
TensorBoard gets the same effect from ``purge_step``. Every row is flushed when written, so a crash loses
no logged row, and a rewrite (a new column, or the trim on resume) goes to a temporary file that is
renamed over the old one, so a kill mid-rewrite loses nothing either.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ..files import atomic_write_text


def upgrade_columns(fieldnames: list[str], rows: list[dict[str, Any]]) -> list[str]:
    """Rows of an older ``metrics.csv`` in today's columns, in place; returns the new fieldnames.

    Older runs logged the reconstruction term as ``SPLIT/reconstruction`` = E_q[log p(x|z)]
    (negative); it is now ``SPLIT/reconstruction_error`` = −E_q[log p(x|z)], the sign ``evaluate``
    reports. A resumed old run keeps one column with one sign.
    """
    out = []
    for name in fieldnames:
        split, _, metric = name.rpartition("/")
        new = f"{split}/reconstruction_error"
        if metric != "reconstruction" or not split or new in fieldnames:
            out.append(name)
            continue
        for row in rows:
            value = row.pop(name, "")
            row[new] = repr(-float(value)) if value not in ("", None) else ""
        out.append(new)
    return out


class MetricsCSV:
    """``path`` with a ``step`` column and one column per metric; one row per :meth:`log` call.

    Args:
        path: the CSV file.
        resume_step: keep the existing rows with ``step <= resume_step`` (None: a new file).
    """

    def __init__(self, path: str | Path, resume_step: int | None = None):
        self.path = Path(path)
        self.fieldnames: list[str] = []
        if resume_step is not None and self.path.is_file():
            with self.path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                self.fieldnames = list(reader.fieldnames or [])
                rows = [r for r in reader if r.get("step") and float(r["step"]) <= resume_step]
            self.fieldnames = upgrade_columns(self.fieldnames, rows)
            self._rewrite(rows)
        elif self.path.exists():
            self.path.unlink()

    def log(self, metrics: dict[str, float], step: int) -> None:
        row: dict[str, Any] = {"step": step, **metrics}
        new = [k for k in row if k not in self.fieldnames]
        if new or not self.path.is_file():
            rows = self._rows() if self.path.is_file() else []
            self.fieldnames = sorted({*self.fieldnames, *new}, key=lambda k: (k != "step", k))
            self._rewrite([*rows, row])
            return
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.fieldnames).writerow(row)

    def _rows(self) -> list[dict[str, str]]:
        with self.path.open(newline="") as handle:
            return list(csv.DictReader(handle))

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.fieldnames)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, text.getvalue())  # the old rows are never absent from disk


class RunLogs:
    """``run_dir/metrics.csv`` and TensorBoard events in ``run_dir/tensorboard``, continued (not
    replaced) when ``resume_step`` is given. Only rank 0 makes one."""

    def __init__(self, run_dir: str | Path, resume_step: int | None = None):
        from lightning.fabric.loggers import TensorBoardLogger

        purge = {} if resume_step is None else {"purge_step": resume_step + 1}
        self.csv = MetricsCSV(Path(run_dir) / "metrics.csv", resume_step)
        self.tensorboard = TensorBoardLogger(
            root_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False, **purge
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.csv.log(metrics, step)
        self.tensorboard.log_metrics(metrics, step=step)
        self.tensorboard.experiment.flush()  # a crash loses no logged row

    def log_images(self, images: dict[str, Any], step: int) -> None:
        """(C, H, W) pictures in [0, 1], e.g. :func:`~implicit_vae.training.report.validation_images`."""
        if not images:
            return
        writer = self.tensorboard.experiment
        for tag, image in images.items():
            writer.add_image(tag, image, global_step=step, dataformats="CHW")
        writer.flush()

    def log_hparams(self, params: dict[str, Any], metrics: dict[str, float], step: int) -> None:
        """The run's flattened config as TensorBoard hyper-parameters, with its final ``metrics``
        (``val/…`` are scalars already; the others, e.g. ``test/…``, are logged at ``step`` here)."""
        from torch.utils.tensorboard.summary import hparams

        new = {k: float(v) for k, v in metrics.items() if not k.startswith(("train/", "val/"))}
        if new:
            self.tensorboard.log_metrics(new, step=step)
        exp, ssi, sei = hparams(params, {k: float(v) for k, v in metrics.items()})
        writer = self.tensorboard.experiment._get_file_writer()  # as Lightning's log_hyperparams
        for summary in (exp, ssi, sei):
            writer.add_summary(summary, step)
        self.tensorboard.experiment.flush()

    def close(self) -> None:
        self.tensorboard.finalize("success")
