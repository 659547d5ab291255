"""Datasets (MNIST, CIFAR-10/100) as float32 NHWC arrays, from a local cache or their sources."""

from testbed.data.cache import data_dir
from testbed.data.dataset import Dataset, DatasetUnavailableError, UnknownDatasetError
from testbed.data.registry import DATASETS, get_spec, load_dataset
from testbed.data.spec import DatasetSpec

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetSpec",
    "DatasetUnavailableError",
    "UnknownDatasetError",
    "data_dir",
    "get_spec",
    "load_dataset",
]
