"""The synthetic side of `bridgedfast run`: which synthetic stores an experiment needs and which
training runs its study grid makes.

- Volume study (`generation.per_class` a list): each store is generated once, at the largest
  volume; volume v trains on each class's images with image index < v of that store, read in
  place (`TrainConfig.synthetic_per_class`). The images of (c, i) do not depend on per_class, so
  that prefix is exactly what a generation of v would have made; a larger volume later only
  generates the missing images, and the runs of the volumes already trained stay valid.
- Guidance study (`generation.guidance_scale` a list): one store per value.
- img2img (`generation.init: real`): a store starts from the run's own real training images, so
  a few-shot run gets a store generated from its K images per class (its split seed's pick).
- Filter (`filter.enabled`): each store is filtered and training reads the kept images.
A single value of each (no study) keeps the step names, folders and keys of earlier versions.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import section_payload, step_options, train_config
from .steps import input_fingerprint

__all__ = ["StudyPoint", "SyntheticStore", "Studies"]


@dataclass
class SyntheticStore:
    name: str                     # the folder under OUT: synthetic[-Kshot-splitS][-gG]
    key: str                      # what training runs on it depend on (its generate or filter step key)
    path: Path                    # what training reads: the generated store, or its filtered copy
    generated: Path               # the generated store
    guidance: float
    per_class: int                # images per class generated
    init: str | None = None       # img2img's init images


@dataclass(frozen=True)
class StudyPoint:
    """Where a training run sits in the study grid."""

    mode: str
    shots: int | None
    seed: int
    volume: int | None = None     # synthetic images per class trained on (None: vanilla)
    guidance: float | None = None
    store: str | None = None      # the SyntheticStore's name


def _values(value: Any) -> tuple[list, bool]:
    return (list(value), True) if isinstance(value, list) else ([value], False)


class Studies:
    """The stores and training runs of `runner` (an ExperimentRunner)."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        g = runner.exp.generation
        self.volumes, self.volume_sweep = _values(g.per_class)
        self.guidances, self.guidance_sweep = _values(g.guidance_scale)
        self.stores: dict[tuple[float, Any], SyntheticStore] = {}

    # ---------------------------------------------------------------- which real images start img2img
    def init_subset(self, shots: int | None, seed: int) -> tuple | None:
        """The real-image subset a store of this (shots, seed) starts from: None (text-to-image,
        or all real training images) or (shots, split seed) of its few-shot pick."""
        exp = self.runner.exp
        if exp.generation.init != "real" or shots is None:
            return None
        cfg = train_config(exp, "bridged", shots, seed, real_train="-", real_test="-", synthetic="-", out="-")
        return (shots, cfg.resolved().split_seed)

    def _init_images(self, subset: tuple | None, train: Path) -> Path | None:
        if self.runner.exp.generation.init != "real":
            return None
        if subset is None:
            return train
        from ..data import ImageStore
        from ..data.subsets import few_shot_split, write_subset

        shots, split_seed = subset
        path = self.runner.out / "data" / f"real-train-{shots}shot-split{split_seed}"
        store = ImageStore(train)
        write_subset(store, few_shot_split(store.labels, shots, split_seed, store.classes), path)
        return path

    # ---------------------------------------------------------------- synthetic stores
    def make_stores(self, train: Path, data_key: str, style_key: str | None, style_path: Path | None) -> list[SyntheticStore]:
        """Generates (and filters) every store the training grid needs."""
        r, exp = self.runner, self.runner.exp
        subsets = sorted({self.init_subset(shots, seed) for shots in exp.data.shots for seed in exp.training.seeds},
                         key=repr)
        for subset in subsets:
            for guidance in self.guidances:
                self.stores[(guidance, subset)] = self._store(train, data_key, style_key, style_path, guidance, subset)
        first = next(iter(self.stores.values()))
        r.timings["generate"] = r.steps_result(f"generate{first.name.removeprefix('synthetic')}")
        return list(self.stores.values())

    def template(self, style_path: Path | None) -> Any:
        """The generator puts the style file's token where its template says {style}."""
        exp = self.runner.exp
        if style_path is None:
            return exp.generation.template
        t = exp.style.template
        return [x.replace("{token}", "{style}") for x in t] if isinstance(t, list) else t.replace("{token}", "{style}")

    def _store(self, train: Path, data_key: str, style_key: str | None, style_path: Path | None, guidance: float,
               subset: tuple | None) -> SyntheticStore:
        r, g, s = self.runner, self.runner.exp.generation, self.runner.exp.style
        name = "synthetic" + (f"-{subset[0]}shot-split{subset[1]}" if subset else "") + (
            f"-g{guidance:g}" if self.guidance_sweep else "")
        suffix = name.removeprefix("synthetic")
        out = r.out / name
        template = self.template(style_path)
        payload = {"data": data_key, "style": style_key, "template": template, **section_payload(g)}
        if self.volume_sweep:
            payload.pop("per_class")  # the volume only grows the store: see the module docstring
        if self.guidance_sweep:
            payload["guidance_scale"] = guidance
        if subset is not None:
            payload["init_subset"] = {"shots": subset[0], "split_seed": subset[1]}
        if g.prompts is not None:  # by content: the generator keys its output by the prompts, not the file
            payload["prompts_input"] = hashlib.sha256(Path(g.prompts).read_bytes()).hexdigest()[:16]
        per_class = max(self.volumes)
        init = None

        def work() -> dict:
            from ..data import ImageStore

            extra: dict[str, Any] = {"guidance_scale": guidance}
            images = self._init_images(subset, train)
            if images is not None:
                extra["init_images"] = images
            if g.prompts is None:
                extra["template"] = template
            if style_path is not None:
                extra.update(style=style_path, style_token=s.token)
            return r.generate_images(ImageStore(train).classes, per_class, out, **extra)

        key, _ = r.steps.run(f"generate{suffix}", payload, [out], work,
                             enough=lambda result: (result or {}).get("total", 0) >= per_class * len(r.classes(train)))
        if g.init == "real":
            init = str(train if subset is None else r.out / "data" / f"real-train-{subset[0]}shot-split{subset[1]}")
        store = SyntheticStore(name, key, out, out, guidance, per_class, init)
        if r.exp.filter.enabled:
            store.key, store.path = self._filter(store, suffix)
        return store

    def _filter(self, store: SyntheticStore, suffix: str) -> tuple[str, Path]:
        from ..filter import FilterConfig, filter_store

        r, f = self.runner, self.runner.exp.filter
        out = r.out / f"{store.name}-filtered"
        payload = {"synthetic": store.key, "per_class": store.per_class, "filter": section_payload(f, exclude=("enabled",))}
        for key in ("clip_model", "classifier"):
            if getattr(f, key) is not None:
                payload[f"{key}_input"] = input_fingerprint(getattr(f, key))

        def work() -> dict:
            return filter_store(store.generated, out, **step_options(f, FilterConfig), progress=r.progress).as_dict()

        key, _ = r.steps.run(f"filter{suffix}", payload, [out], work)
        return key, out

    # ---------------------------------------------------------------- training grid
    def train_all(self, data_key: str, train: Path, test: Path) -> tuple[list[Path], dict[str, StudyPoint]]:
        """Every training run: vanilla once per (shots, seed); the other modes once per (shots,
        seed, guidance, volume). Returns the run folders and each one's StudyPoint (by folder)."""
        r, exp = self.runner, self.runner.exp
        runs, points = [], {}
        for mode in exp.training.modes:
            for shots in exp.data.shots:
                for seed in exp.training.seeds:
                    if mode == "vanilla":
                        run = r.train_one(mode, shots, seed, data_key, None, train, test, None)
                        runs.append(run)
                        points[str(run)] = StudyPoint(mode, shots, seed)
                        continue
                    for guidance in self.guidances:
                        store = self.stores[(guidance, self.init_subset(shots, seed))]
                        for volume in self.volumes:
                            name = (f"{mode}-{'all' if shots is None else f'{shots}shot'}-seed{seed}"
                                    + (f"-v{volume}" if self.volume_sweep else "")
                                    + (f"-g{guidance:g}" if self.guidance_sweep else ""))
                            run = r.train_one(mode, shots, seed, data_key, store.key, train, test, store.path,
                                              name=name, volume=volume if self.volume_sweep else None)
                            runs.append(run)
                            points[str(run)] = StudyPoint(mode, shots, seed, volume if self.volume_sweep else None,
                                                          guidance, store.name)
        return runs, points
