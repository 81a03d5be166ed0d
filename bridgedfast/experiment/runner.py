"""`bridgedfast run`: pack -> invert -> generate -> train (each mode, shots and seed) -> report.

Every step is skipped when its outputs exist under the same settings and inputs (see
steps.py), so an interrupted run resumes and a changed setting reruns only what depends on it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from ..data.subsets import is_store, split_store
from .config import Experiment, section_payload, step_options, train_config
from .steps import Steps, input_fingerprint
from .studies import Studies


class ExperimentRunner:
    def __init__(self, exp: Experiment, *, progress: bool = True, log: Callable[[str], None] = print) -> None:
        self.exp = exp
        self.out = Path(exp.out)
        self.progress = progress
        self.log = log
        self.out.mkdir(parents=True, exist_ok=True)
        self.steps = Steps(self.out, log)
        self.timings: dict[str, float] = {}
        self._generator = None
        self._style: Path | None = None  # the style file the generator's pipeline holds

    # ---------------------------------------------------------------- data
    def prepare_real(self) -> tuple[str, Path, Path]:
        from ..data.pack import PackConfig

        d = self.exp.data
        payload = {
            "real": d.real, "real_input": input_fingerprint(d.real), "test": d.test,
            "test_input": input_fingerprint(d.test) if d.test else None,
            "test_fraction": None if d.test else d.test_fraction, "split_seed": None if d.test else d.split_seed,
            "max_side": d.max_side, "encoding": d.encoding, **PackConfig.new_keyed_values(step_options(d, PackConfig)),
        }
        data_dir = self.out / "data"
        train = Path(d.real) if d.test and is_store(d.real) else data_dir / "real-train"
        test = Path(d.test) if d.test and is_store(d.test) else data_dir / "real-test"
        packs_all = d.test is None and not is_store(d.real)
        ours = [p for p in (train, test) if p.is_relative_to(self.out)] + ([data_dir / "real-all"] if packs_all else [])

        def work() -> dict:
            from ..data import ImageStore, pack

            data_dir.mkdir(parents=True, exist_ok=True)
            opts = dict(step_options(d, PackConfig), progress=self.progress)
            if d.test is None:
                packed = data_dir / "real-all"
                if is_store(d.real):
                    full = ImageStore(d.real)
                elif packed.exists():  # packed by an interrupted run (pack renames a finished store into place)
                    full = ImageStore(packed)
                else:
                    full = pack(d.real, packed, **opts)
                split_store(full, train, test, test_fraction=d.test_fraction, seed=d.split_seed)
            else:
                for src, dst in ((d.real, train), (d.test, test)):
                    if not is_store(src) and not dst.exists():
                        pack(src, dst, **opts)
            tr, te = ImageStore(train), ImageStore(test)
            if tr.classes != te.classes:
                raise ValueError(f"the real train and test data have different classes: {tr.classes} vs {te.classes}")
            return {"train_images": len(tr), "test_images": len(te), "classes": tr.classes}

        key, result = self.steps.run("data", payload, ours, work)
        self.log(f"       real data: {result['train_images']} train / {result['test_images']} test images, "
                 f"{len(result['classes'])} classes")
        return key, train, test

    # ---------------------------------------------------------------- generation
    def _needs_synthetic(self) -> bool:
        return any(m != "vanilla" for m in self.exp.training.modes)

    def generator(self, style: Path | None = None):
        """The generator (one model load), fresh when `style` is another style file than the one
        its pipeline already holds (a pipeline knows one embedding per token)."""
        if self._generator is not None and style is not None and self._style not in (None, style):
            self._generator = None
        if self._generator is None:
            from ..generate import Generator, GeneratorConfig

            g = self.exp.generation
            self._generator, self._style = Generator(g.model, **step_options(g, GeneratorConfig)), None
        if style is not None:
            self._style = style
        return self._generator

    def invert(self, data_key: str, images: Path, subset: tuple[int, int] | None = None) -> tuple[str, Path]:
        """Dataset style inversion on `images` (the real training store, or the few-shot subset
        `subset` = (shots, split seed) of it: see studies.py); returns (step key, style file)."""
        from .studies import subset_suffix

        s = self.exp.style
        name = "style" + subset_suffix(subset)
        out = self.out / name / "style.safetensors"
        payload = {"data": data_key, "model": self.exp.generation.model, "style": {**section_payload(s), "enabled": True}}
        if subset is not None:
            payload["subset"] = {"shots": subset[0], "split_seed": subset[1]}

        def work() -> dict:
            from ..invert import InvertConfig, invert_style

            t0 = time.perf_counter()
            invert_style(self.exp.generation.model, images, out, **step_options(s, InvertConfig), progress=self.progress)
            seconds = time.perf_counter() - t0
            report_path = out.with_name(out.stem + ".report.json")
            extra = json.loads(report_path.read_text()) if report_path.is_file() else {}
            return {"seconds": seconds, "steps": s.steps, **{k: v for k, v in extra.items() if isinstance(v, (int, float, str))}}

        key, result = self.steps.run(name, payload, [out.parent], work)
        self.timings.setdefault("style", result)
        return key, out

    def generate_images(self, classes: list[str], n: int, out: Path, **extra: Any) -> dict:
        """`n` images per class into `out` with the generation section's options (`extra` overrides them)."""
        from ..generate import GenerateConfig

        options = {**step_options(self.exp.generation, GenerateConfig), **extra}
        options.pop("per_class")
        return _report_dict(self.generator(options.get("style")).generate(classes, n, out, progress=self.progress,
                                                                            **options))

    def classes(self, train: Path) -> list[str]:
        from ..data import ImageStore

        return list(ImageStore(train).classes)

    def steps_result(self, name: str) -> Any:
        """The recorded result of a finished step (None if it has not finished)."""
        path = self.out / ".steps" / f"{name}.done.json"
        return json.loads(path.read_text()).get("result") if path.is_file() else None

    def samples_without_style(self, train: Path, data_key: str, stores: list) -> Path | None:
        """What the style token changes, for the report's sample grid: the plain store of a style
        study, else a few images per class from the plain template, same seeds as the styled
        ones (next to the first synthetic store); None without a styled store."""
        first = stores[0] if stores else None
        if first is None or not first.styled:
            return None
        plain = [s for s in stores if not s.styled]
        if plain:
            return plain[0].generated
        g = self.exp.generation
        volumes = g.per_class if isinstance(g.per_class, list) else [g.per_class]
        n = min(self.exp.report.samples_per_class, max(volumes))
        out = self.out / "samples-nostyle"
        payload = {"data": data_key, "n": n, "template": g.template, **section_payload(g)}
        extra: dict[str, Any] = {} if g.prompts is not None else {"template": g.template}
        extra["guidance_scale"] = first.guidance
        if first.init is not None:
            extra["init_images"] = first.init

        def work() -> dict:
            return self.generate_images(self.classes(train), n, out, **extra)

        self.steps.run("samples-nostyle", payload, [out], work)
        return out

    # ---------------------------------------------------------------- training
    def train_one(self, mode: str, shots: int | None, seed: int, data_key: str, gen_key: str | None, train: Path,
                  test: Path, synthetic: Path | None, *, name: str | None = None, volume: int | None = None) -> Path:
        """One training run (skipped when finished under the same settings); `volume`: train on
        the synthetic images with image index < volume (see studies.py)."""
        from ..transfer import train as run_training

        name = name or f"{mode}-{'all' if shots is None else f'{shots}shot'}-seed{seed}"
        out = self.out / "train" / name
        config = train_config(self.exp, mode, shots, seed, real_train=train, real_test=test, synthetic=synthetic,
                              out=out, progress=self.progress)
        config.synthetic_per_class = volume
        payload = {"data": data_key, "synthetic": None if mode == "vanilla" else gen_key,
                   "config": config.record(keyed_only=True)}
        self.steps.run(f"train-{name}", payload, [out], lambda: {"test_top1": run_training(config)["test_top1"]})
        return out

    # ---------------------------------------------------------------- all
    def run(self) -> Path:
        from .measure import Measurements
        from .report import write_report

        (self.out / "experiment.resolved.yaml").write_text(yaml.safe_dump(self.exp.to_dict(), sort_keys=False))
        data_key, train, test = self.prepare_real()
        studies = Studies(self)
        stores = studies.make_stores(train, data_key) if self._needs_synthetic() else []
        nostyle = self.samples_without_style(train, data_key, stores)
        runs, points = studies.train_all(data_key, train, test)
        gap = Measurements(self, train, data_key).all(stores)
        report = write_report(self.exp, self.out, train=train, synthetic=stores[0].generated if stores else None,
                              nostyle=nostyle, runs=runs, timings=self._all_timings(), studies=(stores, points), gap=gap)
        self.log(f"report: {report}")
        return report

    def _all_timings(self) -> dict:
        timings = dict(self.timings)
        for name in ("style", "generate"):
            if name not in timings:
                path = self.out / ".steps" / f"{name}.done.json"
                if path.is_file():
                    timings[name] = json.loads(path.read_text()).get("result")
        return timings


def _report_dict(report: Any) -> dict:
    import dataclasses

    return dataclasses.asdict(report)


def run_experiment(exp: Experiment, *, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Runs (or resumes) the whole pipeline; returns the path of report.md."""
    return ExperimentRunner(exp, progress=progress, log=log).run()
