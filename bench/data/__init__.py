"""Datasets: each module registers its loaders in ``DATASETS``; importing the package imports them all."""

import importlib
import pkgutil

from bench.data.base import DATASETS, DataRequest, DatasetInfo, ImageTensors, LoadedDataset, load_dataset, register_dataset
from bench.data.stream import make_stream

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DATASETS", "DataRequest", "DatasetInfo", "ImageTensors", "LoadedDataset", "load_dataset",
           "make_stream", "register_dataset"]
