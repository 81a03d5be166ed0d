"""Evaluation of a classifier during a run: top-1/top-5 on the real test store and LEEP on the
real training images, each rank scoring its share and the sums reduced over ranks."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import torch
from torch import nn

from ..distributed import DistInfo, all_reduce_sum
from . import data as _data
from .leep import leep_from_joint, leep_joint
from .stage import Precision

if TYPE_CHECKING:
    from ..augment import EvalAugment
    from ..data import ImageStore

__all__ = ["Evaluator"]


class Evaluator:
    """Runs a model over a store's images with the eval transform (autocast and memory format
    as the training loop has them)."""

    def __init__(self, augment: EvalAugment, *, info: DistInfo, batch_size: int, num_classes: int,
                 precision: Precision) -> None:
        self.augment, self.info, self.batch_size, self.num_classes = augment, info, batch_size, num_classes
        self.precision = precision

    @property
    def device(self) -> torch.device:
        return self.info.device

    @torch.no_grad()
    def predict(self, model: nn.Module, store: ImageStore, indices: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yields (float32 logits, labels) over this rank's share of `indices`."""
        model.eval()
        for x, y in _data.iterate_eval(store, indices, batch_size=self.batch_size, augment=self.augment,
                                       device=self.device, rank=self.info.rank, world_size=self.info.world_size):
            if self.precision.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.precision.autocast(self.device):
                logits = model(x)
            yield logits.float(), y

    def accuracy(self, model: nn.Module, store: ImageStore, indices: torch.Tensor) -> tuple[float, float]:
        """Top-1 and top-5 accuracy on the images `indices` of `store` (summed over ranks)."""
        counts = torch.zeros(3, dtype=torch.float64, device=self.device)
        k = min(5, self.num_classes)
        for logits, y in self.predict(model, store, indices):
            top = logits.topk(k, dim=1).indices
            counts[0] += (top[:, 0] == y).sum()
            counts[1] += (top == y[:, None]).any(1).sum()
            counts[2] += y.numel()
        all_reduce_sum(counts, self.info)
        n = float(counts[2])
        return float(counts[0]) / n, float(counts[1]) / n

    def leep(self, model: nn.Module, store: ImageStore, indices: torch.Tensor) -> float:
        """LEEP of `model` (its softmax over its own head) on the images `indices` of `store`."""
        probs, labels = [], []
        for logits, y in self.predict(model, store, indices):
            probs.append(torch.softmax(logits, dim=1).double())
            labels.append(y)
        width = int(getattr(model, "num_classes", self.num_classes))
        p = torch.cat(probs) if probs else torch.zeros(0, width, dtype=torch.float64, device=self.device)
        y = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64, device=self.device)
        joint = torch.zeros(self.num_classes, p.shape[1], dtype=torch.float64, device=self.device)
        if len(y):
            joint += leep_joint(p, y, self.num_classes)
        all_reduce_sum(joint, self.info)
        total = leep_from_joint(p, y, joint) if len(y) else torch.zeros((), dtype=torch.float64, device=self.device)
        total = all_reduce_sum(total.reshape(1).clone(), self.info)
        return float(total[0]) / len(indices)
