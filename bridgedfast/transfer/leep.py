"""LEEP, the Log Expected Empirical Prediction of Nguyen et al. (ICML 2020).

For a source model theta giving each target image x_i a distribution theta(x_i) over its own
labels z, and the images' target labels y_i (n images):
  P(y, z) = 1/n * sum_{i: y_i = y} theta(x_i)_z,   P(y | z) = P(y, z) / sum_y' P(y', z)
  LEEP    = 1/n * sum_i log( sum_z P(y_i | z) * theta(x_i)_z )
Higher (closer to 0) = features that transfer better to the target labels.
"""
from __future__ import annotations

import torch

__all__ = ["leep", "leep_joint", "leep_from_joint"]


def _check(probs: torch.Tensor, labels: torch.Tensor, num_classes: int | None) -> int:
    if not isinstance(probs, torch.Tensor) or probs.dim() != 2 or probs.shape[0] == 0:
        raise ValueError(f"leep: probs must be a non-empty [n, Z] tensor, got {getattr(probs, 'shape', type(probs))}")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.shape[0] != probs.shape[0]:
        raise ValueError(f"leep: labels must be a [n] tensor matching probs' {probs.shape[0]} rows, got {getattr(labels, 'shape', type(labels))}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"leep: labels must be integer class indices, got {labels.dtype}")
    if (labels < 0).any():
        raise ValueError(f"leep: labels must be >= 0, got minimum {int(labels.min())}")
    num_y = int(labels.max()) + 1 if num_classes is None else num_classes
    if int(labels.max()) >= num_y:
        raise ValueError(f"leep: label {int(labels.max())} out of range for num_classes={num_y}")
    return num_y


def leep_joint(probs: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Un-normalised joint sum_{i: y_i = y} theta(x_i)_z as float64 [Y, Z] (summable across shards)."""
    num_y = _check(probs, labels, num_classes)
    probs = probs.detach().to(torch.float64)
    joint = torch.zeros(num_y, probs.shape[1], dtype=torch.float64, device=probs.device)
    return joint.index_add_(0, labels.to(probs.device, torch.int64), probs)


def leep_from_joint(probs: torch.Tensor, labels: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
    """sum_i log(sum_z P(y_i|z) theta(x_i)_z) over these rows, given the (global) joint from `leep_joint`."""
    pz = joint.sum(0, keepdim=True)
    cond = torch.where(pz > 0, joint / pz.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(joint))  # P(y|z)
    probs = probs.detach().to(torch.float64)
    labels = labels.to(probs.device, torch.int64)
    eep = (probs * cond.to(probs.device)[labels]).sum(1)
    return torch.log(eep.clamp_min(torch.finfo(torch.float64).tiny)).sum()


def leep(probs: torch.Tensor, labels: torch.Tensor, num_classes: int | None = None) -> float:
    """LEEP of softmax outputs `probs` float [n, Z] (rows sum to 1) for integer target `labels` [n].

    `num_classes` = number of target labels Y (default max(labels) + 1)."""
    _check(probs, labels, num_classes)
    if (probs < 0).any() or not torch.allclose(probs.sum(1).double(), torch.ones(probs.shape[0], dtype=torch.float64, device=probs.device), atol=1e-3):
        raise ValueError("leep: probs must be softmax outputs (non-negative rows summing to 1); apply softmax to logits first")
    joint = leep_joint(probs, labels, num_classes)
    return float(leep_from_joint(probs, labels, joint) / probs.shape[0])
