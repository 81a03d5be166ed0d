"""`bridgedfast demo`: the whole pipeline offline, on embedded defaults, in minutes on a CPU."""
from __future__ import annotations

import argparse

HELP = "run the whole pipeline offline on a bundled dataset and a tiny Stable Diffusion built locally"
DESCRIPTION = """Runs the same pipeline as `bridgedfast run` on embedded defaults that need no network:
scikit-learn's handwritten digits (upscaled to 32x32 RGB, split into train and test), a tiny
random-weight Stable Diffusion built locally, a small timm model trained from scratch, and all four
training modes. It writes OUT/experiment.yaml (the configuration it ran, a template for your own),
OUT/report.md and OUT/report.html. The tiny untrained generator makes the accuracy numbers
meaningless: the demo shows the system working, not the method's gains. Re-running resumes."""

NOTE = """This is the offline demo. Its Stable Diffusion is a tiny model with random weights, so the
"synthetic" images are noise, and the classifier is trained from scratch for a few epochs: the
accuracy numbers below say nothing about the method. For a real run use Stable Diffusion 1.5 and an
ImageNet-pretrained model on a GPU, e.g. write experiment.yaml with
  data: {real: my_dataset/train, test: my_dataset/test}
  generation: {model: stable-diffusion-v1-5/stable-diffusion-v1-5, per_class: 1000, dtype: fp16}
  training: {model: resnet50, pretrained: timm, seeds: [0, 1, 2]}
and run `bridgedfast run experiment.yaml`."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo-out", help="output folder")
    p.add_argument("--quick", action="store_true", help="an even smaller run (a smoke test: used by the tests)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def demo_config(quick: bool, device: str) -> dict:
    return {
        "out": ".",
        "data": {"real": "inputs/digits/train", "test": "inputs/digits/test", "shots": [None]},
        "generation": {
            "model": "inputs/tiny-sd", "per_class": 8 if quick else 40,
            "template": "a photo of the handwritten digit {}", "steps": 4 if quick else 10,
            "scheduler": "dpmpp", "height": 32, "width": 32,
            "batch_size": 16 if quick else 40, "dtype": "fp32", "device": device, "seed": 0,
        },
        "style": {
            "enabled": True, "steps": 4 if quick else 60, "batch_size": 4 if quick else 8, "resolution": 32,
            "lr": 5e-3, "template": "a photo of the handwritten digit {} in the style of {token}",
            "dtype": "fp32", "device": device,
        },
        "training": {
            "model": "test_resnet", "pretrained": "none", "modes": ["vanilla", "mixed", "bridged", "bridged++"],
            "seeds": [0], "epochs": 1 if quick else 4, "batch_size": 32, "image_size": 32, "lr": 0.05,
            "device": device,
        },
        "report": {"samples_per_class": 4, "max_classes": 10},
    }


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from . import CLIError
    from ..experiment import parse_experiment, run_experiment
    from ..devices import resolve_device
    from ..testing import digits_dataset, tiny_stable_diffusion

    try:  # before anything is written
        resolve_device(args.device)
    except ValueError as exc:
        raise CLIError(f"--device {args.device!r}: {exc}") from None
    out = Path(args.out).resolve()
    (out / "inputs").mkdir(parents=True, exist_ok=True)
    print(f"demo: preparing inputs in {out / 'inputs'} (digits dataset, tiny Stable Diffusion)")
    digits_dataset(out / "inputs" / "digits", size=32, per_class=60 if args.quick else None)
    tiny_stable_diffusion(out / "inputs" / "tiny-sd", image_size=32)
    raw = demo_config(args.quick, args.device)
    (out / "experiment.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (out / "NOTE.txt").write_text(NOTE + "\n")
    exp = parse_experiment(raw, base=out)
    report = run_experiment(exp, progress=not args.no_progress)
    print(f"\ndemo done: open {report} or {report.with_suffix('.html')}")
    return 0
