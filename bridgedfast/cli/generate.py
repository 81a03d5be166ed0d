"""`bridgedfast generate`: synthetic images per class with Stable Diffusion into an ImageStore."""
from __future__ import annotations

import argparse
import json

HELP = "generate synthetic images per class with Stable Diffusion into an image store (resumable)"

DESCRIPTION = (
    "Generate PER_CLASS images for each class with a Stable Diffusion model into the image store OUT "
    "(plus OUT/generation.json, the configuration). The prompt of class NAME is the template with {} -> NAME "
    "(underscores as spaces); with --style, the style token goes where the template says {style}, or "
    "' in the style of <token>' is appended. Image i of class c starts from "
    "torch.Generator('cpu').manual_seed(seed_for(SEED, c, i)), so a stock diffusers StableDiffusionPipeline "
    "reproduces it. Re-running the same command resumes after an interruption; other options against an "
    "existing OUT are refused. Under `torchrun --nproc_per_node=N -m bridgedfast generate ...` the ranks share "
    "the work and rank 0 writes the same store a single process would."
)


def _batch_size(text: str) -> int | str:
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {text!r}")
    return value


def _store_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be N or HxW, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"must be N or HxW with positive sizes, got {text!r}")
    return (values[0], values[-1])


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..generate.schedulers import SCHEDULERS

    p.add_argument("--model", required=True, help="Stable Diffusion model: a local diffusers folder or a hub id")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--classes", help="comma-separated class names, e.g. 'cat,dog,boeing_737'")
    src.add_argument("--classes-from", metavar="STORE", help="take the class names from this image store")
    p.add_argument("--per-class", type=int, required=True, help="images per class")
    p.add_argument("--out", required=True, help="output image store folder (resumed when it exists)")
    p.add_argument("--template", default="a photo of a {}", help="prompt template; {} is the class name")
    p.add_argument("--style", metavar="FILE", help="textual-inversion .safetensors file with the dataset-style token")
    p.add_argument("--style-token", help="token for --style; unset = the file's own token")
    p.add_argument("--negative-prompt", help="negative prompt for classifier-free guidance")
    p.add_argument("--guidance-scale", type=float, default=7.5, help="classifier-free guidance scale (<= 1: no CFG)")
    p.add_argument("--steps", type=int, default=25, help="sampling steps")
    p.add_argument("--height", type=int, default=512, help="image height (multiple of 8)")
    p.add_argument("--width", type=int, default=512, help="image width (multiple of 8)")
    p.add_argument("--seed", type=int, default=0, help="base seed; image (c, i) uses seed_for(seed, c, i)")
    p.add_argument("--scheduler", default="dpmpp",
                   help=f"sampler: {', '.join(SCHEDULERS)}, a diffusers scheduler class name, or 'model' to keep "
                        "the model's own")
    p.add_argument("--backend", default="eager", choices=["eager", "compile", "tensorrt"],
                   help="eager PyTorch; compile = torch.compile with CUDA graphs; tensorrt = fp16 TensorRT UNet engine "
                        "(cached under $BRIDGEDFAST_CACHE or ~/.cache/bridgedfast)")
    p.add_argument("--attention", default="auto", choices=["auto", "sdpa", "xformers"],
                   help="attention kernels: auto = xformers on CUDA when installed, else PyTorch SDPA "
                        "(always SDPA with --backend tensorrt)")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="model precision: auto = fp16 on CUDA, fp32 on CPU")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (under torchrun: each rank's GPU)")
    p.add_argument("--batch-size", type=_batch_size, default="auto",
                   help="images per batch, or auto: the largest that fits in GPU memory (8 on CPU)")
    p.add_argument("--store-size", type=_store_size, help="resize images to N or HxW before storing")
    p.add_argument("--encoding", default="raw", choices=["raw", "jpeg"], help="how the store keeps the pixels")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality for --encoding jpeg")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the final report as one JSON object")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import CLIError

    if args.classes is not None:
        classes: object = [c.strip() for c in args.classes.split(",") if c.strip()]
        if not classes:
            raise CLIError(f"--classes {args.classes!r} names no class")
    else:
        from ..data import ImageStore

        if not Path(args.classes_from).exists():
            raise FileNotFoundError(f"--classes-from store {args.classes_from!r} does not exist")
        classes = ImageStore(args.classes_from)
    if args.per_class <= 0:
        raise CLIError(f"--per-class must be a positive integer, got {args.per_class}")
    if not 1 <= args.quality <= 100:
        raise CLIError(f"--quality must be in 1..100, got {args.quality}")

    from ..generate import Generator

    gen = Generator(
        args.model,
        backend=args.backend,
        attention=args.attention,
        dtype=args.dtype,
        scheduler=None if args.scheduler == "model" else args.scheduler,
        device=args.device,
    )
    from ..distributed import env_rank, shutdown

    try:
        report = gen.generate(
            classes,
            args.per_class,
            args.out,
            template=args.template,
            style=args.style,
            style_token=args.style_token,
            negative_prompt=args.negative_prompt,
            guidance_scale=args.guidance_scale,
            steps=args.steps,
            height=args.height,
            width=args.width,
            seed=args.seed,
            batch_size=args.batch_size,
            store_size=args.store_size,
            encoding=args.encoding,
            quality=args.quality,
            progress=not args.no_progress,
        )
    finally:
        shutdown()
    if env_rank()[0] == 0:
        print(json.dumps(report.as_dict()) if args.json else f"bridgedfast generate: {report} -> {report.out}")
    return 0
