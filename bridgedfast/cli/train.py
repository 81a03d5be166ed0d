"""`bridgedfast train`: vanilla, mixed, bridged and bridged++ fine-tuning of a timm model, and
`bridgedfast train --compare DIR...` to tabulate finished runs."""
from __future__ import annotations

import argparse
import os

from . import CLIError

HELP = "fine-tune a timm model on real (+ synthetic) image stores: vanilla, mixed, bridged or bridged++"

DESCRIPTION = """\
Fine-tune a timm model with bridged transfer (Li et al., arXiv 2403.19866) and write
OUT/results.json, OUT/curves.png, OUT/model.safetensors and a checkpoint each epoch.

Modes: vanilla = real images only; mixed = real + synthetic in one stage; bridged = stage 1 on
synthetic images only, then stage 2 on real images only, keeping the head; bridged++ = bridged
with Mixup/CutMix in stage 1 and the classifier head re-initialised before stage 2.

Stage 1 is the synthetic-only stage (bridged, bridged++). Stage 2 is the stage that trains on
real images, in every mode: the --stage2-* options are the real fine-tuning of every mode, so
runs that differ only in --mode compare fairly. --stage1-*/--stage2-* override the general
option of the same name for that stage.

Re-running the same command resumes from the last checkpoint, or just prints the results of a
finished run; a different configuration against an existing --out is refused. Under
`torchrun --nproc_per_node=N -m bridgedfast train ...` the batch is split across processes.
"""

STAGE_OPTIONS = [
    # (option suffix, StageConfig field, type, help)
    ("epochs", "epochs", int, "epochs (default: --epochs)"),
    ("steps-per-epoch", "steps_per_epoch", int, "optimiser steps per epoch (default: one pass over the data)"),
    ("batch-size", "batch_size", int, "global batch size (default: --batch-size)"),
    ("optimizer", "optimizer", str, "sgd or adamw (default: --optimizer)"),
    ("lr", "lr", float, "backbone learning rate (default: --lr)"),
    ("head-lr", "head_lr", float, "classifier learning rate (default: 10 x the backbone lr)"),
    ("weight-decay", "weight_decay", float, "weight decay (default: --weight-decay)"),
    ("momentum", "momentum", float, "SGD momentum (default: 0.9, nesterov)"),
    ("warmup-epochs", "warmup_epochs", float, "linear warmup epochs before the cosine decay (default: --warmup-epochs)"),
    ("min-lr-ratio", "min_lr_ratio", float, "final lr of the cosine as a fraction of the lr (default: 0)"),
    ("label-smoothing", "label_smoothing", float, "label smoothing (default: --label-smoothing)"),
    ("mixup-alpha", "mixup_alpha", float, "Mixup alpha; 0 = off (default: 0.8 in bridged++ stage 1, else 0)"),
    ("cutmix-alpha", "cutmix_alpha", float, "CutMix alpha; 0 = off (default: 1.0 in bridged++ stage 1, else 0)"),
    ("mixup-prob", "mixup_prob", float, "probability of mixing a batch (default: 1.0)"),
    ("mixup-switch-prob", "mixup_switch_prob", float, "probability of CutMix instead of Mixup when both are on (default: 0.5)"),
]
# General options that apply to both stages unless a stage option overrides them.
SHARED = {"epochs", "batch_size", "optimizer", "lr", "weight_decay", "warmup_epochs", "label_smoothing", "steps_per_epoch"}


def _pair(kind: type):
    def parse(text: str):
        try:
            a, b = (kind(v) for v in text.split(","))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected two comma-separated numbers MIN,MAX, got {text!r}") from exc
        return a, b

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    g = p.add_argument_group("run")
    g.add_argument("--model", help="timm model name, e.g. resnet18, resnet50, vit_base_patch16_224")
    g.add_argument("--real-train", metavar="STORE", help="real training images (an ImageStore from `bridgedfast pack`)")
    g.add_argument("--real-test", metavar="STORE", help="real test images: top-1/top-5 are measured on all of them")
    g.add_argument("--synthetic", metavar="STORE", help="synthetic images (classes matched to the real ones by name); "
                   "needed by mixed, bridged, bridged++")
    g.add_argument("--mode", choices=["vanilla", "mixed", "bridged", "bridged++"], help="training recipe (see above)")
    g.add_argument("--out", metavar="DIR", help="output folder (results.json, curves.png, checkpoints)")
    g.add_argument("--shots", type=int, metavar="K", help="use K real training images per class (seeded split, saved to OUT/split.json)")
    g.add_argument("--split-seed", type=int, metavar="SEED", help="seed of the few-shot split (default: --seed)")
    g.add_argument("--pretrained", default="timm", metavar="timm|none|FILE",
                   help="timm = timm's ImageNet weights (hub or local cache), none = random init, or a local "
                   ".safetensors/.pt/.pth state dict (default: timm)")
    g.add_argument("--seed", type=int, metavar="N", default=0, help="seed of everything random in the run (default: 0)")
    g.add_argument("--compare", nargs="+", metavar="DIR",
                   help="instead of training: tabulate finished runs under these folders (mode, shots, seed; "
                   "top-1 mean +- std over seeds)")

    g = p.add_argument_group("optimisation (both stages unless a --stage1-/--stage2- option overrides)")
    g.add_argument("--epochs", type=int, metavar="N", default=10, help="epochs of each stage (default: 10)")
    g.add_argument("--steps-per-epoch", type=int, metavar="N", help="optimiser steps per epoch (default: one pass over the data)")
    g.add_argument("--batch-size", type=int, metavar="N", default=64, help="global batch size, split across processes (default: 64)")
    g.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd",
                   help="sgd = SGD momentum 0.9 nesterov; adamw = AdamW (default: sgd)")
    g.add_argument("--lr", type=float, metavar="X", help="backbone learning rate; the head gets 10x (default: 0.01 sgd, 1e-4 adamw)")
    g.add_argument("--weight-decay", type=float, metavar="X", help="weight decay, not on biases/norms (default: 1e-4 sgd, 0.05 adamw)")
    g.add_argument("--warmup-epochs", type=float, metavar="X", default=1.0, help="linear warmup epochs, then cosine decay (default: 1)")
    g.add_argument("--label-smoothing", type=float, metavar="X", default=0.1, help="label smoothing (default: 0.1)")
    g.add_argument("--synthetic-fraction", type=float, metavar="X", help="mixed mode: each batch's synthetic share in (0, 1) "
                   "(default: proportional to the stores' sizes)")

    for k, what in ((1, "stage 1: synthetic images only (bridged, bridged++)"), (2, "stage 2: real images (every mode)")):
        g = p.add_argument_group(what)
        for suffix, field, kind, text in STAGE_OPTIONS:
            extra = {"choices": ["sgd", "adamw"]} if field == "optimizer" else {}
            if field != "optimizer":
                extra = {"metavar": "N" if kind is int else "X"}
            g.add_argument(f"--stage{k}-{suffix}", dest=f"stage{k}_{field}", type=kind, help=text, **extra)

    g = p.add_argument_group("data and speed")
    g.add_argument("--image-size", type=int, metavar="N", help="training/eval crop size (default: the model's input size)")
    g.add_argument("--train-scale", type=_pair(float), default=(0.08, 1.0), metavar="MIN,MAX",
                   help="random-resized-crop area range (default: 0.08,1)")
    g.add_argument("--train-ratio", type=_pair(float), default=(3 / 4, 4 / 3), metavar="MIN,MAX",
                   help="random-resized-crop aspect range (default: 0.75,1.333)")
    g.add_argument("--hflip", type=float, metavar="P", default=0.5, help="horizontal flip probability (default: 0.5)")
    g.add_argument("--crop-pct", type=float, metavar="X", help="eval centre-crop fraction (default: the model's, e.g. 0.875)")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    g.add_argument("--workers", type=int, metavar="N", help="loader worker threads (default: the loader's)")
    g.add_argument("--cache-on-device", choices=["no", "yes", "auto"], default="no",
                   help="loader keeps the decoded stores on the device (auto: on CUDA when they fit in half its free memory)")
    g.add_argument("--amp", choices=["auto", "bf16", "fp16", "none"], default="auto",
                   help="mixed precision: auto = bf16 on CUDA (fp16 with a grad scaler without bf16), none on CPU")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (default: on CUDA)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes under torchrun")
    g.add_argument("--eval-every", type=int, metavar="N", default=1, help="test accuracy every N epochs and at each stage's end (default: 1)")
    g.add_argument("--eval-batch-size", type=int, metavar="N", help="eval batch per process (default: 2 x --batch-size)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars or per-epoch lines")


def build_config(args: argparse.Namespace):
    from ..transfer import StageConfig, TrainConfig

    missing = [opt for opt in ("model", "real_train", "real_test", "mode", "out") if not getattr(args, opt)]
    if missing:
        raise CLIError("missing " + ", ".join(f"--{m.replace('_', '-')}" for m in missing)
                       + " (or use --compare DIR... to tabulate finished runs)")
    if args.mode in ("vanilla", "mixed"):
        given = [f"--stage1-{s}" for s, f, _, _ in STAGE_OPTIONS if getattr(args, f"stage1_{f}") is not None]
        if given:
            raise CLIError(f"{', '.join(given)}: mode {args.mode} has no synthetic stage 1; its one stage is stage 2 "
                           "(use --stage2-... or the general options)")
    stages = {}
    for k in (1, 2):
        kw = {}
        for _, field, _, _ in STAGE_OPTIONS:
            value = getattr(args, f"stage{k}_{field}")
            if value is None and field in SHARED and field not in ("epochs", "batch_size", "lr"):
                value = getattr(args, field)
            if value is not None:
                kw[field] = value
        stages[k] = StageConfig(**kw)
    return TrainConfig(
        model=args.model, real_train=args.real_train, real_test=args.real_test, out=args.out, mode=args.mode,
        synthetic=args.synthetic, shots=args.shots, split_seed=args.split_seed, pretrained=args.pretrained,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, image_size=args.image_size, device=args.device,
        seed=args.seed, workers=args.workers, cache_on_device={"no": False, "yes": True, "auto": "auto"}[args.cache_on_device], synthetic_fraction=args.synthetic_fraction, stage1=stages[1], stage2=stages[2],
        amp=args.amp, channels_last=args.channels_last, compile=args.compile, sync_bn=args.sync_bn,
        train_scale=args.train_scale, train_ratio=args.train_ratio, hflip=args.hflip, crop_pct=args.crop_pct,
        eval_batch_size=args.eval_batch_size, eval_every=args.eval_every, progress=args.progress,
    )


def summary(results: dict) -> str:
    lines = [f"{results['model']} {results['mode']}" + (f", {results['shots']} shots" if results.get("shots") else "")
             + f", seed {results['seed']}"]
    for s in results["stages"]:
        lines.append(f"  {s['name']} ({s['data']}): {s['epochs']} epochs, final train loss {s['final_train_loss']:.4f}, "
                     f"test top-1 {100 * s['test_top1']:.2f}%, head {s['head']}")
    parts = [f"{what} {results[key]:.4f}" for key, what in (("leep_pretrained", "pretrained"), ("leep", "after stage 1"))
             if results.get(key) is not None]
    leep = f"  LEEP {', '.join(parts)}" if parts else ""
    lines.append(f"test top-1 {100 * results['test_top1']:.2f}%  top-5 {100 * results['test_top5']:.2f}%{leep}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.compare:
        from ..transfer import compare_runs, format_comparison

        runs, groups = compare_runs(args.compare)
        print(format_comparison(runs, groups))
        return 0
    config = build_config(args)
    from ..transfer import train

    results = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(summary(results))
        print(f"results: {os.path.join(config.out, 'results.json')}")
    return 0
