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
    from ..invert.config import InvertConfig

    p.add_argument("--model", required=True, help="Stable Diffusion: a local diffusers folder or a hub id")
    p.add_argument("--data", required=True, help="the real images: an ImageStore or a folder of class sub-folders")
    p.add_argument("--out", required=True, help="the embedding file to write (.safetensors)")
    InvertConfig.add_arguments(p)
    p.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="resume from this checkpoint (default: OUT-stem.ckpt.safetensors when it exists)")
    p.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")


def run(args: argparse.Namespace) -> int:
    from . import CLIError, check_output
    from ..invert import invert_style
    from ..sd import check_model_source
    from ..invert.config import InvertConfig
    from ..options import flag_name

    if args.resume is not None and args.no_resume:
        raise CLIError("--resume and --no-resume exclude each other")
    resume = False if args.no_resume else (args.resume if args.resume is not None else True)
    cfg = InvertConfig.from_args(args).validate(flag_name)
    check_output(args.out, "--out", folder=False)
    if cfg.cache_dir is not None:
        check_output(cfg.cache_dir, "--cache-dir", folder=True)
    check_model_source(args.model, cfg.allow_pickle)  # a model folder's missing part, before the data is read
    if not cfg.progress:
        import diffusers.utils.logging
        import transformers.utils.logging

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
    out = invert_style(args.model, args.data, args.out, resume=resume, **cfg.values())
    print(f"wrote {out} (token {cfg.token}); load it with pipe.load_textual_inversion({str(out)!r}, token={cfg.token!r})")
    return 0
