"""Measurements of synthetic images against real ones.

- `kid`: Kernel Inception Distance (Binkowski et al. 2018): the unbiased estimate of the squared
  MMD with the polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over random subsets (the
  definition torchmetrics and clean-fid use), here on any features.
- `penultimate_features`: a timm classifier's pooled pre-logits features of every image of a
  store, through the evaluation path of training (`EvalAugment`: the same resize, crop and
  normalisation as the test accuracy), the features KID is computed on.
- `class_faithfulness`: a classifier's top-1 accuracy on a store's images against their class
  labels, classes matched by name (e.g. how often a classifier trained on real images recognises
  the class a synthetic image was generated for).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import torch
from torch import nn

from .seeds import derive_seed

if TYPE_CHECKING:
    from .data import ImageStore

__all__ = ["kid", "polynomial_mmd2", "penultimate_features", "class_faithfulness", "balanced_indices",
           "DEFAULT_KID_SUBSETS", "DEFAULT_KID_SUBSET_SIZE"]

DEFAULT_KID_SUBSETS = 100        # torchmetrics' defaults
DEFAULT_KID_SUBSET_SIZE = 1000


def _kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def polynomial_mmd2(a: torch.Tensor, b: torch.Tensor) -> float:
    """The unbiased estimate of MMD^2 between the rows of `a` [m, d] and `b` [n, d] with the
    kernel (x.y/d + 1)^3: mean k(a_i, a_j) over i != j + mean k(b_i, b_j) over i != j
    - 2 mean k(a_i, b_j). m, n >= 2; computed in float64."""
    a, b = a.double(), b.double()
    m, n = a.shape[0], b.shape[0]
    kaa, kbb, kab = _kernel(a, a), _kernel(b, b), _kernel(a, b)
    xx = (kaa.sum() - kaa.diagonal().sum()) / (m * (m - 1))
    yy = (kbb.sum() - kbb.diagonal().sum()) / (n * (n - 1))
    return float(xx + yy - 2 * kab.mean())


def _features(x: torch.Tensor | Sequence, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.dim() != 2 or t.shape[0] < 2 or t.shape[1] < 1:
        raise ValueError(f"kid: {name} must be a 2-D [N, D] tensor of features with N >= 2, got shape {tuple(t.shape)}")
    if not torch.is_floating_point(t):
        t = t.double()
    return t


def kid(features_a: torch.Tensor, features_b: torch.Tensor, *, subsets: int = DEFAULT_KID_SUBSETS,
        subset_size: int = DEFAULT_KID_SUBSET_SIZE, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the unbiased polynomial-kernel MMD^2 over `subsets` random subsets of
    min(subset_size, N_a, N_b) rows drawn without replacement from each side (a seeded
    generator: the same seed gives the same subsets). The std is the population std over the
    subsets (torchmetrics'). Identical distributions give ~0 (it can be slightly negative)."""
    a, b = _features(features_a, "features_a"), _features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"kid: the two feature sets have different widths ({a.shape[1]} vs {b.shape[1]})")
    if isinstance(subsets, bool) or not isinstance(subsets, int) or subsets < 1:
        raise ValueError(f"kid: subsets must be a positive integer, got {subsets!r}")
    if isinstance(subset_size, bool) or not isinstance(subset_size, int) or subset_size < 2:
        raise ValueError(f"kid: subset_size must be an integer >= 2, got {subset_size!r}")
    m = min(subset_size, a.shape[0], b.shape[0])
    g = torch.Generator().manual_seed(derive_seed("kid", seed))
    scores = torch.empty(subsets, dtype=torch.float64)
    for s in range(subsets):
        ia = torch.randperm(a.shape[0], generator=g)[:m]
        ib = torch.randperm(b.shape[0], generator=g)[:m]
        scores[s] = polynomial_mmd2(a[ia], b[ib])
    return float(scores.mean()), float(scores.std(unbiased=False))


def balanced_indices(labels: torch.Tensor, cap: int | None) -> torch.Tensor:
    """Sorted indices of at most `cap` images, even across classes: class k (in label order) takes
    its first cap // C images in store order, one more for the first cap % C classes (a smaller
    class gives what it has). None: every index."""
    labels = torch.as_tensor(labels, dtype=torch.int64).flatten()
    if cap is None or cap >= labels.numel():
        return torch.arange(labels.numel())
    classes = labels.unique().tolist()
    base, extra = divmod(cap, len(classes))
    picked = [torch.nonzero(labels == c).flatten()[:base + (k < extra)] for k, c in enumerate(classes)]
    return torch.cat(picked).sort().values


def _open(store: ImageStore | str | Path) -> ImageStore:
    from .data import ImageStore

    return store if isinstance(store, ImageStore) else ImageStore(store)


def _eval_batches(model: nn.Module, store: ImageStore, *, image_size: int | None, batch_size: int,
                  device: str | torch.device, indices: Sequence[int] | torch.Tensor | None = None
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(eval-augmented images, labels) batches of `store`'s images `indices` (default: all), with the model's own
    normalisation and crop fraction (`transfer.models.data_config`), as training evaluates."""
    from .transfer.data import iterate_eval, make_eval_augment
    from .transfer.models import data_config

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    cfg = data_config(model, image_size)
    augment = make_eval_augment(cfg["image_size"], crop_pct=cfg["crop_pct"], mean=cfg["mean"], std=cfg["std"])
    idx = torch.arange(len(store)) if indices is None else torch.as_tensor(indices, dtype=torch.int64).flatten()
    yield from iterate_eval(store, idx, batch_size=batch_size, augment=augment, device=torch.device(device))


@torch.no_grad()
def penultimate_features(model: nn.Module, store: ImageStore | str | Path, *, image_size: int | None = None,
                         batch_size: int = 64, device: str | torch.device = "cpu",
                         indices: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """float32 [len(store), D] (on the CPU): `model.forward_head(model.forward_features(x),
    pre_logits=True)` of each image (store order; only images `indices`, in that order, when
    given), x from the evaluation transform."""
    store = _open(store)
    model = model.to(device).eval()
    out = []
    for x, _ in _eval_batches(model, store, image_size=image_size, batch_size=batch_size, device=device,
                              indices=indices):
        f = model.forward_head(model.forward_features(x), pre_logits=True)
        out.append(f.float().flatten(1).cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


@torch.no_grad()
def class_faithfulness(model: nn.Module, store: ImageStore | str | Path, class_names: Sequence[str], *,
                       image_size: int | None = None, batch_size: int = 64, device: str | torch.device = "cpu",
                       indices: Sequence[int] | torch.Tensor | None = None) -> float:
    """Top-1 accuracy of `model` (logits over `class_names`, in that order) on every image of
    `store` (only images `indices` when given) against its label, the store's classes matched
    to `class_names` by name."""
    store = _open(store)
    names = list(class_names)
    missing = [c for c in store.classes if c not in names]
    if missing:
        raise ValueError(f"class_faithfulness: the classifier has no class named {missing[0]!r} "
                         f"(it knows {len(names)}: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")
    count = len(store) if indices is None else len(torch.as_tensor(indices).flatten())
    if count == 0:
        raise ValueError("class_faithfulness: the store holds no images" if indices is None
                         else "class_faithfulness: no images selected")
    to_model = torch.tensor([names.index(c) for c in store.classes], dtype=torch.int64)
    model = model.to(device).eval()
    correct = 0
    for x, y in _eval_batches(model, store, image_size=image_size, batch_size=batch_size, device=device,
                              indices=indices):
        pred = model(x).argmax(1).cpu()
        correct += int((pred == to_model[y.cpu()]).sum())
    return correct / count
