"""The synthetic side of `bridgedfast run`: which style tokens and synthetic stores an experiment
needs and which training runs its study grid makes.

- No leakage in few-shot runs: dataset style inversion sees only the real images a run may use.
  With `shots: K` it learns from the K-shot split (`data/real-train-Kshot-splitS`) and generates
  its own styled store (`synthetic-Kshot-splitS`); `shots: null` (all) learns from the full
  training set (`style/`, `synthetic`: the names and keys of earlier versions). One style and one
  styled store per shots value, reused across modes and seeds. The K-shot split depends on the
  split seed (`training.options.split_seed`, default the training seed): the style and store of
  a shots value use the split of the FIRST training seed, so with several seeds and no fixed
  `split_seed` the runs of the other seeds train on K images per class that differ from the K
  the style saw (still K per class, never the full set); set `training.options.split_seed` to
  give every seed the style's own split.
- Style study (`style.enabled: [true, false]`): besides the styled stores, one plain store (the
  plain template, no style token; it needs no real images, so one is shared by every shots
  value: `synthetic-plain`); every non-vanilla mode trains on each (plain runs' folders end in
  `-plain`). A single bool keeps the earlier step names and keys.
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

__all__ = ["StudyPoint", "SyntheticStore", "Studies", "subset_suffix"]

Subset = tuple[int, int] | None   # (shots, split seed) of a few-shot pick; None: every real training image


@dataclass
class SyntheticStore:
    name: str                     # the folder under OUT: synthetic[-Kshot-splitS][-gG][-plain]
    key: str                      # what training runs on it depend on (its generate or filter step key)
    path: Path                    # what training reads: the generated store, or its filtered copy
    generated: Path               # the generated store
    guidance: float
    per_class: int                # images per class generated
    init: str | None = None       # img2img's init images
    styled: bool = False          # generated with the style token
    style_path: Path | None = None
    style_subset: Subset = None   # the real images its style token was learnt from


@dataclass(frozen=True)
class StudyPoint:
    """Where a training run sits in the study grid."""

    mode: str
    shots: int | None
    seed: int
    volume: int | None = None     # synthetic images per class trained on (None: vanilla)
    guidance: float | None = None
    store: str | None = None      # the SyntheticStore's name
    style: bool | None = None     # style study only: trained on the styled (True) or plain (False) store


def _values(value: Any) -> tuple[list, bool]:
    return (list(value), True) if isinstance(value, list) else ([value], False)


def subset_suffix(subset: Subset) -> str:
    return "" if subset is None else f"-{subset[0]}shot-split{subset[1]}"


class Studies:
    """The style tokens, stores and training runs of `runner` (an ExperimentRunner)."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        g = runner.exp.generation
        self.volumes, self.volume_sweep = _values(g.per_class)
        self.guidances, self.guidance_sweep = _values(g.guidance_scale)
        self.variants, self.style_sweep = _values(runner.exp.style.enabled)
        self.stores: dict[tuple[bool, float, Subset], SyntheticStore] = {}
        self.styles: dict[Subset, tuple[str, Path]] = {}
        self.subsets: dict[Subset, Path] = {}

    # ---------------------------------------------------------------- which real images a store sees
    def split_of(self, shots: int | None, seed: int) -> Subset:
        """(shots, split seed) of the few-shot pick a training run of (shots, seed) uses."""
        if shots is None:
            return None
        cfg = train_config(self.runner.exp, "bridged", shots, seed, real_train="-", real_test="-", synthetic="-",
                           out="-")
        return (shots, cfg.resolved().split_seed)

    def init_subset(self, shots: int | None, seed: int) -> Subset:
        """The real-image subset a store of this (shots, seed) starts from: None (text-to-image,
        or all real training images) or (shots, split seed) of its few-shot pick."""
        return self.split_of(shots, seed) if self.runner.exp.generation.init == "real" else None

    def style_subset(self, shots: int | None) -> Subset:
        """The real images the style of a shots value learns from: that shots value's split of
        the first training seed (see the module docstring), None for all."""
        return self.split_of(shots, self.runner.exp.training.seeds[0])

    def store_subset(self, styled: bool, shots: int | None, seed: int) -> Subset:
        """What tells the stores of a variant apart: img2img's init images, else the style's split
        (a plain text-to-image store sees no real image: one for every shots value)."""
        if self.runner.exp.generation.init == "real":
            return self.init_subset(shots, seed)
        return self.style_subset(shots) if styled else None

    def subset_store(self, subset: Subset, train: Path, data_key: str) -> Path:
        """The real training images of `subset` as a store of their own (a step: redone when the
        real data change)."""
        if subset is None:
            return train
        if subset in self.subsets:
            return self.subsets[subset]
        from ..data import ImageStore
        from ..data.subsets import few_shot_split, write_subset

        shots, split_seed = subset
        path = self.runner.out / "data" / f"real-train{subset_suffix(subset)}"
        payload = {"data": data_key, "shots": shots, "split_seed": split_seed}

        def work() -> dict:
            store = ImageStore(train)
            write_subset(store, few_shot_split(store.labels, shots, split_seed, store.classes), path)
            return {"images": len(ImageStore(path))}

        self.runner.steps.run(f"subset{subset_suffix(subset)}", payload, [path], work)
        self.subsets[subset] = path
        return path

    def style(self, subset: Subset, train: Path, data_key: str) -> tuple[str, Path]:
        """(step key, file) of the style token learnt from `subset`'s real images."""
        if subset not in self.styles:
            images = self.subset_store(subset, train, data_key)
            self.styles[subset] = self.runner.invert(data_key, images, subset)
        return self.styles[subset]

    # ---------------------------------------------------------------- synthetic stores
    def make_stores(self, train: Path, data_key: str) -> list[SyntheticStore]:
        """Learns every style and generates (and filters) every store the training grid needs."""
        r, exp = self.runner, self.runner.exp
        wanted: dict[tuple[bool, Subset], Subset] = {}
        for styled in self.variants:
            for shots in exp.data.shots:
                for seed in exp.training.seeds:
                    style = self.style_subset(shots) if styled else None
                    wanted[(styled, self.store_subset(styled, shots, seed))] = style
        order = sorted(wanted, key=lambda k: (not k[0], k[1] is not None, repr(k[1])))
        for styled, subset in order:
            style = self.style(wanted[(styled, subset)], train, data_key) if styled else None
            for guidance in self.guidances:
                self.stores[(styled, guidance, subset)] = self._store(train, data_key, style, guidance, subset, styled,
                                                                      wanted[(styled, subset)])
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

    def _store(self, train: Path, data_key: str, style: tuple[str, Path] | None, guidance: float, subset: Subset,
               styled: bool, style_subset: Subset) -> SyntheticStore:
        r, g, s = self.runner, self.runner.exp.generation, self.runner.exp.style
        style_key, style_path = style if style is not None else (None, None)
        name = "synthetic" + subset_suffix(subset) + (f"-g{guidance:g}" if self.guidance_sweep else "") + (
            "-plain" if self.style_sweep and not styled else "")
        suffix = name.removeprefix("synthetic")
        out = r.out / name
        template = self.template(style_path)
        payload = {"data": data_key, "style": style_key, "template": template, **section_payload(g)}
        if self.volume_sweep:
            payload.pop("per_class")  # the volume only grows the store: see the module docstring
        if self.guidance_sweep:
            payload["guidance_scale"] = guidance
        if subset is not None and g.init == "real":
            payload["init_subset"] = {"shots": subset[0], "split_seed": subset[1]}
        if g.prompts is not None:  # by content: the generator keys its output by the prompts, not the file
            payload["prompts_input"] = hashlib.sha256(Path(g.prompts).read_bytes()).hexdigest()[:16]
        per_class = max(self.volumes)
        init = None if g.init != "real" else self.subset_store(subset, train, data_key)

        def work() -> dict:
            from ..data import ImageStore

            extra: dict[str, Any] = {"guidance_scale": guidance}
            if init is not None:
                extra["init_images"] = init
            if g.prompts is None:
                extra["template"] = template
            if style_path is not None:
                extra.update(style=style_path, style_token=s.token)
            return r.generate_images(ImageStore(train).classes, per_class, out, **extra)

        key, _ = r.steps.run(f"generate{suffix}", payload, [out], work,
                             enough=lambda result: (result or {}).get("total", 0) >= per_class * len(r.classes(train)))
        store = SyntheticStore(name, key, out, out, guidance, per_class, None if init is None else str(init),
                               styled=style_path is not None, style_path=style_path, style_subset=style_subset)
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
        seed, style variant, guidance, volume). Returns the run folders and each one's StudyPoint
        (by folder)."""
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
                    for styled in self.variants:
                        for guidance in self.guidances:
                            store = self.stores[(styled, guidance, self.store_subset(styled, shots, seed))]
                            for volume in self.volumes:
                                name = (f"{mode}-{'all' if shots is None else f'{shots}shot'}-seed{seed}"
                                        + (f"-v{volume}" if self.volume_sweep else "")
                                        + (f"-g{guidance:g}" if self.guidance_sweep else "")
                                        + ("-plain" if self.style_sweep and not styled else ""))
                                run = r.train_one(mode, shots, seed, data_key, store.key, train, test, store.path,
                                                  name=name, volume=volume if self.volume_sweep else None)
                                runs.append(run)
                                points[str(run)] = StudyPoint(mode, shots, seed, volume if self.volume_sweep else None,
                                                              guidance, store.name,
                                                              styled if self.style_sweep else None)
        return runs, points
