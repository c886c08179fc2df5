"""Image datasets as tensors: loaders, deterministic splits, per-class sampling, class-subset tasks."""

from __future__ import annotations

from grabnas.data.datasets import (
    BUNDLED,
    DatasetError,
    ImageDataset,
    from_arrays,
    load_dataset,
    load_digits,
    load_image_folder,
    load_mnist_subset,
    load_npz,
    load_torchvision,
)
from grabnas.data.tasks import (
    DatasetSplit,
    TaskSpec,
    class_subset_tasks,
    sample_per_class,
    select_classes,
    split_dataset,
)

__all__ = [
    "BUNDLED",
    "DatasetError",
    "DatasetSplit",
    "ImageDataset",
    "TaskSpec",
    "class_subset_tasks",
    "from_arrays",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "load_mnist_subset",
    "load_npz",
    "load_torchvision",
    "sample_per_class",
    "select_classes",
    "split_dataset",
]
