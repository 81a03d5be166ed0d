"""The report's measurements of the synthetic stores, each a cached step (a rerun skips it):

- synthetic-real gap (`kid-STORE`): KID (`metrics.kid`, its subsets and seed) between the real
  training images and the store's images, in the penultimate features (`metrics.
  penultimate_features`) of the PRETRAINED classifier: the training section's model and
  pretrained weights before any fine-tuning (random weights of `training.pretrained: none` are
  the first seed's initialisation, as its training runs start from them);
- the judge (`judge`, OUT/judge/): the pretrained classifier fine-tuned on the real training
  images only (`train_judge`: `report.judge_steps` steps, fixed settings below), with a seeded
  fifth of each class held out; its accuracy on those held-out real images is reported beside
  every faithfulness figure, so a reader sees how good the judge is;
- class faithfulness (`faithfulness-STORE`): the judge's top-1 accuracy on the store's images
  (the class each was generated for). The judge is not a training run of the study: those see
  synthetic images (all but vanilla) or few real ones, and vanilla's recipe (one epoch, crops
  down to 8% of the image, flips) is the study's, not one chosen to recognise digits well.
Both read at most `report.measure_images` images of each store (and of the real training
images), balanced across classes (`metrics.balanced_indices`); 0 turns them off.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..metrics import DEFAULT_KID_SUBSETS, DEFAULT_KID_SUBSET_SIZE
from .steps import input_fingerprint

__all__ = ["JUDGE_BATCH_SIZE", "JUDGE_LR", "JUDGE_SCALE", "JUDGE_VAL_FRACTION", "Measurements", "split_validation",
           "train_judge"]


# The judge of class faithfulness (`train_judge`): fixed settings, documented here, so its figure
# means the same in every run; its length is `report.judge_steps`.
JUDGE_BATCH_SIZE = 32
JUDGE_LR = 0.01
JUDGE_VAL_FRACTION = 0.2
JUDGE_SCALE = (0.5, 1.0)


def _size(path: Path) -> int:
    """A store's image count: a store of a volume study grows under the same generate key."""
    from ..data import ImageStore

    return len(ImageStore(path))


def split_validation(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) indices: a seeded `fraction` of each class (at least one image of a class
    with two or more) held out for validation, both sorted."""
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = min(len(idx) - 1, max(1, round(len(idx) * fraction))) if len(idx) > 1 else 0
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(val)).values


def train_judge(model_name: str, pretrained: str, store: Any, *, steps: int, batch_size: int = JUDGE_BATCH_SIZE,
                lr: float = JUDGE_LR, image_size: int | None = None, val_fraction: float = JUDGE_VAL_FRACTION,
                seed: int = 0, device: str | torch.device = "cpu",
                scale: tuple[float, float] = JUDGE_SCALE, hflip: float = 0.0) -> tuple[Any, dict]:
    """Fine-tunes `pretrained` (a fresh head for the store's classes) on the real images of `store`
    (an ImageStore) but a held-out validation share: `steps` SGD steps (momentum 0.9 nesterov,
    head lr 10x, label smoothing 0.1, a tenth warmup then cosine) on random-resized crops of
    `scale` area (no flips by default: a digit's mirror image is not that digit). Returns
    (model in eval mode, {"val_accuracy", "train_images", "val_images", "steps", ...})."""
    from ..metrics import class_faithfulness
    from ..schedules import lr_factor
    from ..transfer.data import make_train_augment
    from ..transfer.models import create_model, data_config, param_groups

    if steps < 1:
        raise ValueError(f"the judge needs at least one training step, got {steps!r}")
    device = torch.device(device)
    train_idx, val_idx = split_validation(store.labels, val_fraction, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model(model_name, len(store.classes), pretrained, image_size).to(device)
    cfg = data_config(model, image_size)
    augment = make_train_augment(cfg["image_size"], scale=scale, ratio=(3 / 4, 4 / 3), hflip=hflip, mean=cfg["mean"],
                                 std=cfg["std"])
    opt = torch.optim.SGD(param_groups(model, lr=lr, head_lr=10 * lr, weight_decay=1e-4), lr=lr, momentum=0.9,
                          nesterov=True)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    g = torch.Generator().manual_seed(seed)
    order = train_idx[torch.randperm(len(train_idx), generator=g)]
    pos = 0
    model.train()
    for step in range(steps):
        if pos + batch_size > len(order):
            order, pos = train_idx[torch.randperm(len(train_idx), generator=g)], 0
        batch = order[pos:pos + batch_size].tolist()
        pos += batch_size
        x = augment([store.image(i) for i in batch], g).to(device)
        y = store.labels[batch].to(device)
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * lr_factor(step, steps, max(1, steps // 10))
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    val = class_faithfulness(model, store, store.classes, image_size=cfg["image_size"], device=device,
                             indices=val_idx) if len(val_idx) else None
    return model, {"val_accuracy": val, "train_images": len(train_idx), "val_images": len(val_idx), "steps": steps,
                   "batch_size": batch_size, "lr": lr, "scale": list(scale), "hflip": hflip, "seed": seed,
                   "final_loss": float(loss.detach())}


class Measurements:
    """KID and class faithfulness of every synthetic store of `runner` (an ExperimentRunner)."""

    def __init__(self, runner: Any, train: Path, data_key: str) -> None:
        self.runner, self.train, self.data_key = runner, train, data_key
        self.cap = runner.exp.report.measure_images
        self._real: torch.Tensor | None = None
        self._pretrained: Any = None
        self._judge: tuple[str, dict] | None = None
        self._judge_model: tuple[Any, list[str], int | None] | None = None

    def device(self) -> torch.device:
        from ..devices import resolve_device

        return resolve_device(self.runner.exp.training.device)

    def pretrained(self) -> Any:
        """The classifier before fine-tuning (its source head, if any: features come before it)."""
        if self._pretrained is None:
            from ..data import ImageStore
            from ..seeds import derive_seed
            from ..transfer.models import create_source_model

            t = self.runner.exp.training
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed("init", t.seeds[0]))
                self._pretrained, _ = create_source_model(t.model, len(ImageStore(self.train).classes), t.pretrained,
                                                          t.image_size)
        return self._pretrained

    def features(self, path: Path) -> torch.Tensor:
        from ..data import ImageStore
        from ..metrics import balanced_indices, penultimate_features

        store = ImageStore(path)
        return penultimate_features(self.pretrained(), store, image_size=self.runner.exp.training.image_size,
                                    device=self.device(), indices=balanced_indices(store.labels, self.cap))

    def real_features(self) -> torch.Tensor:
        if self._real is None:
            self._real = self.features(self.train)
        return self._real

    def kid(self, store: Any) -> dict:
        from ..metrics import kid

        t = self.runner.exp.training
        payload = {"data": self.data_key, "synthetic": store.key, "size": _size(store.path), "model": t.model,
                   "pretrained": t.pretrained,
                   "image_size": t.image_size, "images": self.cap, "subsets": DEFAULT_KID_SUBSETS,
                   "subset_size": DEFAULT_KID_SUBSET_SIZE, "seed": 0}
        if t.pretrained not in ("timm", "none"):
            payload["pretrained_input"] = input_fingerprint(t.pretrained)
        if t.pretrained == "none":
            payload["init_seed"] = t.seeds[0]

        def work() -> dict:
            real, synthetic = self.real_features(), self.features(store.path)
            mean, std = kid(real, synthetic, seed=0)
            return {"mean": mean, "std": std, "real_images": len(real), "synthetic_images": len(synthetic)}

        return self.runner.steps.run(f"kid{store.name.removeprefix('synthetic')}", payload, [], work)[1]

    def judge(self) -> tuple[str, dict]:
        """(step key, record) of the faithfulness judge, trained once (cached step `judge`)."""
        if self._judge is not None:
            return self._judge
        t = self.runner.exp.training
        steps = self.runner.exp.report.judge_steps
        folder = self.runner.out / "judge"
        payload = {"data": self.data_key, "model": t.model, "pretrained": t.pretrained, "image_size": t.image_size,
                   "steps": steps, "batch_size": JUDGE_BATCH_SIZE, "lr": JUDGE_LR, "val_fraction": JUDGE_VAL_FRACTION,
                   "scale": list(JUDGE_SCALE), "seed": 0}
        if t.pretrained not in ("timm", "none"):
            payload["pretrained_input"] = input_fingerprint(t.pretrained)

        def work() -> dict:
            from safetensors.torch import save_file

            from ..data import ImageStore
            from ..files import atomic_write_json

            store = ImageStore(self.train)
            started = time.perf_counter()
            model, record = train_judge(t.model, t.pretrained, store, steps=steps, image_size=t.image_size,
                                        device=self.device())
            record.update(seconds=time.perf_counter() - started, model=t.model, pretrained=t.pretrained,
                          image_size=t.image_size, classes=list(store.classes))
            folder.mkdir(parents=True, exist_ok=True)
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                      str(folder / "model.safetensors"))
            atomic_write_json(folder / "judge.json", record)
            return record

        self._judge = self.runner.steps.run("judge", payload, [folder], work)
        return self._judge

    def judge_model(self) -> tuple[Any, list[str], int | None]:
        """(model, class names, image size) of the trained judge, loaded once for every store."""
        if self._judge_model is None:
            from safetensors.torch import load_file

            from ..transfer.models import create_model

            record = self.judge()[1]
            model = create_model(record["model"], len(record["classes"]), "none", record["image_size"])
            model.load_state_dict(load_file(str(self.runner.out / "judge" / "model.safetensors")))
            self._judge_model = (model, record["classes"], record["image_size"])
        return self._judge_model

    def faithfulness(self, store: Any) -> dict:
        from ..data import ImageStore
        from ..metrics import balanced_indices, class_faithfulness

        judge_key, record = self.judge()
        payload = {"synthetic": store.key, "size": _size(store.path), "judge": judge_key, "images": self.cap}

        def work() -> dict:
            model, classes, size = self.judge_model()
            images = ImageStore(store.path)
            idx = balanced_indices(images.labels, self.cap)
            accuracy = class_faithfulness(model, images, classes, image_size=size, device=self.device(), indices=idx)
            return {"accuracy": accuracy, "images": len(idx), "judge_val_accuracy": record["val_accuracy"],
                    "judge_val_images": record["val_images"]}

        return self.runner.steps.run(f"faithfulness{store.name.removeprefix('synthetic')}", payload, [], work)[1]

    def all(self, stores: list) -> dict:
        """{"stores": [per store: name, styled, style_subset, kid, faithfulness], "judge": its record}."""
        out: dict[str, Any] = {"stores": [], "images": self.cap, "judge": None}
        if not self.cap or not stores:
            return out
        for store in stores:
            sub = store.style_subset
            out["stores"].append({
                "name": store.name, "styled": store.styled, "style_shots": None if sub is None else sub[0],
                "kid": self.kid(store), "faithfulness": self.faithfulness(store),
            })
        out["judge"] = self.judge()[1]
        return out
