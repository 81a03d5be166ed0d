"""How good a synthetic image is for its class, as one number (higher is better):
- `ClipScorer`: the cosine similarity between the image's and its class prompt's CLIP embeddings
  (a local transformers CLIP folder: `CLIPModel` + `CLIPProcessor`);
- `ClassifierScorer`: the probability that a classifier trained on the real images (a
  `bridgedfast train` run folder) gives the image's own class.
Each scorer has `identity` (what its scores depend on, for the filter's manifest) and
`scores(images, labels) -> float32[N]` for uint8 HWC images and their labels in the store's
class list, computed in one batch on the device."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .config import FilterConfig

__all__ = ["ClipScorer", "ClassifierScorer", "make_scorer"]


def _file_digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
    return h.hexdigest()


def _features(output: Any) -> torch.Tensor:
    """transformers 5 returns a model output (its pooler_output), 4 the tensor itself."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClipScorer:
    def __init__(self, folder: str | Path, classes: Sequence[str], template: str, device: torch.device) -> None:
        from transformers import CLIPModel, CLIPProcessor

        path = Path(folder).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"clip model {str(folder)!r} is not a transformers CLIP folder (no config.json): "
                                    "save one with CLIPModel.save_pretrained and CLIPProcessor.save_pretrained")
        try:
            self.model = CLIPModel.from_pretrained(str(path)).to(device).eval()
            self.processor = CLIPProcessor.from_pretrained(str(path))
        except (OSError, ValueError, KeyError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"clip model {str(folder)!r} cannot be loaded as CLIPModel + CLIPProcessor: {first}") from None
        self.device = device
        self.prompts = [template.replace("{}", name.replace("_", " ")) for name in classes]
        weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))
        self.identity = {"clip_model": _file_digest(path / "config.json", *weights), "score_template": template}
        with torch.inference_mode():
            text = self.processor(text=self.prompts, padding=True, return_tensors="pt").to(device)
            emb = _features(self.model.get_text_features(**text))
            self.text = emb / emb.norm(dim=-1, keepdim=True)

    @torch.inference_mode()
    def scores(self, images: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        emb = _features(self.model.get_image_features(pixel_values=pixels))
        emb = emb / emb.norm(dim=-1, keepdim=True)
        own = self.text[torch.as_tensor(labels, device=self.device)]
        return (emb * own).sum(-1).float().cpu().numpy()


class ClassifierScorer:
    def __init__(self, run_dir: str | Path, classes: Sequence[str], device: torch.device) -> None:
        from safetensors.torch import load_file

        from ..transfer.data import make_eval_augment
        from ..transfer.models import create_model
        from ..transfer.results import load_results

        folder = Path(run_dir).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"classifier run folder {str(run_dir)!r} does not exist")
        results = load_results(folder)
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"classifier run folder {str(run_dir)!r} has no model.safetensors")
        run_classes = list(results.get("classes") or [])
        missing = [c for c in classes if c not in run_classes]
        if missing:
            raise ValueError(f"classifier {str(run_dir)!r} was not trained on classes {missing[:5]} of the synthetic "
                             "store (classes are matched by exact name)")
        data = results["data"]
        self.model = create_model(results["model"], len(run_classes), "none", data["image_size"])
        self.model.load_state_dict(load_file(str(weights)))
        self.model.to(device).eval()
        self.augment = make_eval_augment(int(data["image_size"]), crop_pct=float(data["eval_crop_pct"]),
                                         mean=data["mean"], std=data["std"])
        self.column = torch.tensor([run_classes.index(c) for c in classes], device=device)
        self.device = device
        self.identity = {"classifier": _file_digest(weights),
                         "classifier_run": json.loads(json.dumps({k: results.get(k) for k in ("model", "classes")}))}

    @torch.inference_mode()
    def scores(self, images: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
        from ..packed import PackedImages

        packed = PackedImages.from_images([torch.from_numpy(np.ascontiguousarray(x)) for x in images]).to(self.device)
        logits = self.model(self.augment(packed, None))
        probs = logits.float().softmax(-1)
        own = self.column[torch.as_tensor(labels, device=self.device)]
        return probs.gather(1, own[:, None])[:, 0].cpu().numpy()


def make_scorer(cfg: FilterConfig, classes: Sequence[str], device: torch.device) -> ClipScorer | ClassifierScorer:
    """The scorer `cfg.by` names, loaded (errors before anything is written)."""
    if cfg.by == "clip":
        if cfg.clip_model is None:
            raise ValueError("filter by clip needs a CLIP model folder: give clip_model (--clip-model PATH)")
        return ClipScorer(cfg.clip_model, classes, cfg.score_template, device)
    if cfg.classifier is None:
        raise ValueError("filter by classifier needs a trained run: give classifier (--classifier RUN_DIR)")
    return ClassifierScorer(cfg.classifier, classes, device)
