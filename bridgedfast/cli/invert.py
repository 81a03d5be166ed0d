"""`bridgedfast invert`: learn the dataset's style token (dataset style inversion)."""
from __future__ import annotations

import argparse

HELP = "learn ONE style token from all real images (textual inversion), written as a diffusers embedding file"

DESCRIPTION = (
    "Dataset style inversion: textual inversion of one new token from all images of a dataset, with "
    "Stable Diffusion frozen. Writes OUT, a diffusers textual-inversion .safetensors file that stock "
    "`pipe.load_textual_inversion(OUT, token=TOKEN)` loads; generation prompts then read e.g. "
    "'a photo of a {class} in the style of <dataset-style>'. Beside OUT (say style.safetensors): "
    "style.ckpt.safetensors (checkpoint; re-running the same command resumes from it), style.loss.png, "
    "style.report.json and the latent cache bridgedfast-latents/ (images are VAE-encoded once, reused across runs)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="Stable Diffusion: a local diffusers folder or a hub id")
    p.add_argument("--data", required=True, help="the real images: an ImageStore or a folder of class sub-folders")
    p.add_argument("--out", required=True, help="the embedding file to write (.safetensors)")
    p.add_argument("--token", default="<dataset-style>", help="the new token; must not be in the vocabulary")
    p.add_argument("--init-word", default="photo", help="word whose embedding the token starts from")
    p.add_argument("--steps", type=int, default=3000, help="optimisation steps")
    p.add_argument("--lr", type=float, default=5e-4, help="base learning rate (multiplied by the batch size unless --no-scale-lr)")
    p.add_argument(
        "--scale-lr",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="use lr * batch-size, as diffusers' --scale_lr (default: 5e-4 * 4 = 2e-3)",
    )
    p.add_argument("--batch-size", type=int, default=4, help="images per step")
    p.add_argument("--resolution", type=int, default=512, help="training size in pixels (shorter side resized, then center crop)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (images, flips, templates, timesteps, noise)")
    p.add_argument(
        "--templates",
        nargs="+",
        default=None,
        metavar="TEMPLATE",
        help="prompt templates with {token} and optionally {class} (default: 6 class-agnostic + 6 class-aware ones)",
    )
    p.add_argument("--flip-p", type=float, default=0.5, help="probability of a horizontal flip")
    p.add_argument("--weight-decay", type=float, default=1e-2, help="AdamW weight decay")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant", help="learning-rate schedule")
    p.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up steps")
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints")
    p.add_argument(
        "--resume",
        default=None,
        metavar="CHECKPOINT",
        help="resume from this checkpoint (default: OUT-stem.ckpt.safetensors when it exists)",
    )
    p.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), fp32, fp16 or bf16")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute UNet activations in backward (less memory)")
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    p.add_argument("--cache-dir", default=None, help="latent cache folder (default: bridgedfast-latents/ beside OUT)")
    p.add_argument("--encode-batch-size", type=int, default=16, help="images per VAE encoder call when filling the cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from . import CLIError
    from ..invert import invert_style

    if args.resume is not None and args.no_resume:
        raise CLIError("--resume and --no-resume exclude each other")
    resume = False if args.no_resume else (args.resume if args.resume is not None else True)
    if args.quiet:
        import diffusers.utils.logging
        import transformers.utils.logging

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
    out = invert_style(
        args.model,
        args.data,
        args.out,
        token=args.token,
        init_word=args.init_word,
        steps=args.steps,
        lr=args.lr,
        scale_lr=args.scale_lr,
        batch_size=args.batch_size,
        resolution=args.resolution,
        seed=args.seed,
        templates=args.templates,
        flip_p=args.flip_p,
        weight_decay=args.weight_decay,
        lr_schedule=args.lr_schedule,
        warmup_steps=args.warmup_steps,
        checkpoint_every=args.checkpoint_every,
        resume=resume,
        device=args.device,
        dtype=args.dtype,
        gradient_checkpointing=args.gradient_checkpointing,
        compile=args.compile,
        cache_dir=args.cache_dir,
        encode_batch_size=args.encode_batch_size,
        progress=not args.quiet,
    )
    print(f"wrote {out} (token {args.token}); load it with pipe.load_textual_inversion({str(out)!r}, token={args.token!r})")
    return 0
