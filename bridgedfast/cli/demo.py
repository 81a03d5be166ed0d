"""`bridgedfast demo`: the paper's study offline, on the miniature world, in minutes on a CPU."""
from __future__ import annotations

import argparse

HELP = "run the paper's study offline on the miniature world (trained models shipped with the package)"
DESCRIPTION = """Runs the same pipeline as `bridgedfast run` on the miniature world, which needs no
network: the real target task is scikit-learn's handwritten digits (upscaled to 32x32 RGB, split into
train and test), the generator is a small text-to-image Stable Diffusion trained on characters
rendered from matplotlib's fonts, and the pretrained classifier is a small timm model trained on
those fonts' letters only (see `bridgedfast world --help`). It learns the digits' style token on each
few-shot split, generates with and without it, and fine-tunes the classifier with vanilla, mixed,
bridged and bridged++ at 1, 4 and all shots over 3 seeds. It writes OUT/experiment.yaml (the
configuration it ran, a template for your own), OUT/report.md and OUT/report.html. Re-running resumes."""

NOTE = """This demo runs on a miniature world, not on the paper's. Its generator is a small Stable
Diffusion (about 2.5M parameters) trained in minutes on characters rendered from the fonts bundled with
matplotlib (digits and letters, clean or degraded: pixelated, blurry, bold, thin, faded, noisy), with
captions such as "a photo of the digit seven in the style of pixelated"; it has never seen a handwritten
digit. Its "ImageNet-pretrained" classifier is a small timm model trained on the same fonts' letters only.
The target task is scikit-learn's 1797 handwritten 8x8 digits. The font-vs-handwriting gap plays the
role of the paper's synthetic-real gap, so the study's mechanics (style inversion, bridged transfer,
few-shot splits, the gap and faithfulness measurements) run on real trained models and their numbers
mean something about this world. It is not evidence about Stable Diffusion 1.5, ImageNet models or
natural-image datasets: the models are tiny, the images 32x32 and grey, the run short. For a real run
use Stable Diffusion 1.5 and an ImageNet-pretrained model on a GPU, e.g. write experiment.yaml with
  data: {real: my_dataset/train, test: my_dataset/test, shots: [1, 5, null]}
  generation: {model: stable-diffusion-v1-5/stable-diffusion-v1-5, per_class: 1000, dtype: fp16}
  training: {model: resnet50, pretrained: timm, seeds: [0, 1, 2]}
and run `bridgedfast run experiment.yaml`."""

TEMPLATE = "a photo of the digit {}"
STYLE_TEMPLATE = "a photo of the digit {} in the style of {token}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo-out", help="output folder")
    p.add_argument("--quick", action="store_true", help="an even smaller run (a smoke test: used by the tests)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default on the CPU: 1; the world's 32x32 models at batch 8 train faster on one "
                        "thread than on two: 16 s vs 23 s for three runs on a 2-core machine)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def demo_config(quick: bool, device: str, classifier: str = "inputs/world/classifier/model.safetensors",
                model: str = "test_resnet") -> dict:
    return {
        "out": ".",
        "data": {"real": "inputs/digits/train", "test": "inputs/digits/test", "shots": [None] if quick else [1, 4, None]},
        "generation": {
            "model": "inputs/world/sd", "per_class": 8 if quick else 40, "template": TEMPLATE,
            "steps": 4 if quick else 15, "scheduler": "dpmpp", "guidance_scale": 4.0, "height": 32, "width": 32,
            "batch_size": 16 if quick else 80, "dtype": "fp32", "device": device, "seed": 0,
        },
        "style": {
            "enabled": True if quick else [True, False], "steps": 4 if quick else 150,
            # lr 5e-4 (x batch 8 = 4e-3), chosen on a validation split of the real train split (README):
            # 5e-3 pulled the images closest to the real ones but kept the class of only 16% of them
            "batch_size": 4 if quick else 8, "resolution": 32, "lr": 5e-4, "init_word": "photo",
            "template": STYLE_TEMPLATE, "dtype": "fp32", "device": device,
        },
        "training": {
            "model": model, "pretrained": classifier, "modes": ["vanilla", "mixed", "bridged", "bridged++"],
            "seeds": [0] if quick else [0, 1, 2], "epochs": 1, "batch_size": 32 if quick else 8,
            "image_size": 32, "min_steps": 0 if quick else 100,
            # one epoch per stage: warm up over its first fifth (the default, one epoch, would end
            # the stage at its peak learning rate, with no cosine decay)
            "options": {} if quick else {"stage1": {"warmup_epochs": 0.2}, "stage2": {"warmup_epochs": 0.2}},
            "lr": 0.01, "device": device,
        },
        "report": {"samples_per_class": 4, "max_classes": 10, **({"judge_steps": 20} if quick else {})},
    }


def _world_inputs(folder) -> tuple[str, str]:
    """Copies the shipped world weights into `folder` (once); returns (timm name, weights file)."""
    import json
    import shutil

    from ..world import WEIGHTS

    for part in ("sd", "classifier"):
        if not (WEIGHTS / part).is_dir():
            raise FileNotFoundError(f"the world's weights are missing ({WEIGHTS / part}); rebuild them with "
                                    f"`bridgedfast world build --out {WEIGHTS}`")
        if not (folder / part).is_dir():
            shutil.copytree(WEIGHTS / part, folder / f".{part}.copying", dirs_exist_ok=True)
            (folder / f".{part}.copying").rename(folder / part)
    card = json.loads((folder / "classifier" / "classifier.json").read_text())
    return card["timm_model"], card["weights"]


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from . import CLIError, check_output
    from ..experiment import parse_experiment, run_experiment
    from ..devices import resolve_device
    from ..testing import digits_dataset

    try:  # before anything is written
        device = resolve_device(args.device)
    except ValueError as exc:
        raise CLIError(f"--device {args.device!r}: {exc}") from None
    if args.threads is not None and args.threads < 1:
        raise CLIError(f"--threads must be at least 1, got {args.threads}")
    threads = args.threads or (1 if device.type == "cpu" else None)
    if threads:
        import torch

        torch.set_num_threads(threads)
    out = check_output(args.out, "--out", folder=True).resolve()
    (out / "inputs" / "world").mkdir(parents=True, exist_ok=True)
    print(f"demo: preparing inputs in {out / 'inputs'} (handwritten digits, the world's generator and classifier)")
    digits_dataset(out / "inputs" / "digits", size=32, per_class=60 if args.quick else None)
    model, weights = _world_inputs(out / "inputs" / "world")
    raw = demo_config(args.quick, args.device, classifier=f"inputs/world/classifier/{weights}", model=model)
    (out / "experiment.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (out / "NOTE.txt").write_text(NOTE + "\n")
    exp = parse_experiment(raw, base=out)
    report = run_experiment(exp, progress=not args.no_progress)
    print(f"\ndemo done: open {report} or {report.with_suffix('.html')}")
    return 0
