"""The report's measurements of the synthetic stores, each a cached step (a rerun skips it):

- synthetic-real gap (`kid-STORE`): KID (`metrics.kid`, its subsets and seed) between the real
  training images and the store's images, in the penultimate features (`metrics.
  penultimate_features`) of the PRETRAINED classifier: the training section's model and
  pretrained weights before any fine-tuning (random weights of `training.pretrained: none` are
  the first seed's initialisation, as its training runs start from them);
- class faithfulness (`faithfulness-STORE`): the top-1 accuracy on the store's images of the
  classifier fine-tuned on the real data (the vanilla run with shots: null and the first seed);
  not measured (with a note) when the experiment has no such run.
Both read at most `report.measure_images` images of each store (and of the real training
images), balanced across classes (`metrics.balanced_indices`); 0 turns them off.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..metrics import DEFAULT_KID_SUBSETS, DEFAULT_KID_SUBSET_SIZE
from .steps import input_fingerprint

__all__ = ["Measurements", "faithfulness_run"]


def faithfulness_run(exp: Any) -> str | None:
    """The training step name of the classifier that scores class faithfulness, None if none."""
    if "vanilla" not in exp.training.modes or None not in exp.data.shots:
        return None
    return f"train-vanilla-all-seed{exp.training.seeds[0]}"


def _size(path: Path) -> int:
    """A store's image count: a store of a volume study grows under the same generate key."""
    from ..data import ImageStore

    return len(ImageStore(path))


class Measurements:
    """KID and class faithfulness of every synthetic store of `runner` (an ExperimentRunner)."""

    def __init__(self, runner: Any, train: Path, data_key: str) -> None:
        self.runner, self.train, self.data_key = runner, train, data_key
        self.cap = runner.exp.report.measure_images
        self._real: torch.Tensor | None = None
        self._pretrained: Any = None

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

    def classifier(self, run: Path) -> tuple[Any, list[str], int]:
        """(model, class names, image size) of a finished training run."""
        from safetensors.torch import load_file

        from ..transfer.models import create_model

        res = json.loads((run / "results.json").read_text())
        model = create_model(res["model"], res["num_classes"], "none", res["data"]["image_size"])
        model.load_state_dict(load_file(str(run / "model.safetensors")))
        return model, res["classes"], res["data"]["image_size"]

    def faithfulness(self, store: Any, step: str, run: Path) -> dict:
        from ..data import ImageStore
        from ..metrics import balanced_indices, class_faithfulness

        classifier_key = self.runner.steps.key_of(step)
        payload = {"synthetic": store.key, "size": _size(store.path), "classifier": classifier_key, "images": self.cap}

        def work() -> dict:
            model, classes, size = self.classifier(run)
            images = ImageStore(store.path)
            idx = balanced_indices(images.labels, self.cap)
            accuracy = class_faithfulness(model, images, classes, image_size=size, device=self.device(), indices=idx)
            return {"accuracy": accuracy, "images": len(idx), "classifier": str(run)}

        return self.runner.steps.run(f"faithfulness{store.name.removeprefix('synthetic')}", payload, [], work)[1]

    def all(self, stores: list) -> dict:
        """{"stores": [per store: name, styled, style_subset, kid, faithfulness], "faithfulness_note"}."""
        out: dict[str, Any] = {"stores": [], "images": self.cap, "faithfulness_note": None}
        if not self.cap or not stores:
            return out
        step = faithfulness_run(self.runner.exp)
        run = None if step is None else self.runner.out / "train" / step.removeprefix("train-")
        if run is None or not (run / "results.json").is_file():
            out["faithfulness_note"] = ("class faithfulness not measured: it needs the vanilla run on all real "
                                        "training images (training.modes with vanilla, data.shots with null)")
            run = None
        for store in stores:
            sub = store.style_subset
            out["stores"].append({
                "name": store.name, "styled": store.styled, "style_shots": None if sub is None else sub[0],
                "kid": self.kid(store), "faithfulness": None if run is None else self.faithfulness(store, step, run),
            })
        return out
