"""Data sets held in memory (toy4, digits, MNIST IDX, binarised MNIST .amat, user files and image
folders) and the step-indexed batch stream."""

from .amat import AMAT_SUFFIXES, read_amat
from .errors import DataError
from .loaders import (
    BINARIZED_MNIST_SIZES,
    BINARIZED_MNIST_SPLITS,
    FILE_EXTENSIONS,
    MIN_EXAMPLES,
    MNIST_FILES,
    SPLIT_FILE_NAMES,
    DataOptions,
    Dataset,
    binarize,
    file_sources,
    load_binarized_mnist_dir,
    load_dataset,
    load_mnist_dir,
    read_idx,
    split_indices,
)
from .stream import BatchStream, StepSampler

__all__ = [
    "AMAT_SUFFIXES",
    "BINARIZED_MNIST_SIZES",
    "BINARIZED_MNIST_SPLITS",
    "FILE_EXTENSIONS",
    "MIN_EXAMPLES",
    "MNIST_FILES",
    "SPLIT_FILE_NAMES",
    "BatchStream",
    "DataError",
    "DataOptions",
    "Dataset",
    "StepSampler",
    "binarize",
    "file_sources",
    "load_binarized_mnist_dir",
    "load_dataset",
    "load_mnist_dir",
    "read_amat",
    "read_idx",
    "split_indices",
]
