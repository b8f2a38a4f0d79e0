"""Data sets held in memory (toy4, digits, MNIST IDX, user files) and the step-indexed batch stream."""

from .loaders import (
    FILE_EXTENSIONS,
    MIN_EXAMPLES,
    MNIST_FILES,
    DataError,
    DataOptions,
    Dataset,
    binarize,
    load_dataset,
    load_mnist_dir,
    read_idx,
    split_indices,
)
from .stream import BatchStream, StepSampler

__all__ = [
    "FILE_EXTENSIONS",
    "MIN_EXAMPLES",
    "MNIST_FILES",
    "BatchStream",
    "DataError",
    "DataOptions",
    "Dataset",
    "StepSampler",
    "binarize",
    "load_dataset",
    "load_mnist_dir",
    "read_idx",
    "split_indices",
]
