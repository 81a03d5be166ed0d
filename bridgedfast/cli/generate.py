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
    "reproduces it. Several --template flags: image i uses template i mod T; --prompts FILE (YAML or JSON, class "
    "name -> list of prompts): image i of class c uses its class's prompt i mod n. With --init-images (img2img), "
    "image i of class c starts from real image i mod n_c of its class (store or folder order), prepared by "
    "bridgedfast.generate.init_image (resized to cover HEIGHTxWIDTH, centre crop) and noised to --strength, as "
    "diffusers' StableDiffusionImg2ImgPipeline does. Re-running the same command resumes after an interruption "
    "(--per-class may grow: only the new images are made); other options against an existing OUT are refused. Under `torchrun --nproc_per_node=N -m bridgedfast generate ...` the ranks share "
    "the work and rank 0 writes the same store a single process would."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..generate.config import GenerateConfig, GeneratorConfig

    p.add_argument("--model", required=True, help="Stable Diffusion model: a local diffusers folder or a hub id")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--classes", help="comma-separated class names, e.g. 'cat,dog,boeing_737'")
    src.add_argument("--classes-from", metavar="STORE", help="take the class names from this image store")
    p.add_argument("--out", required=True, help="output image store folder (resumed when it exists)")
    GenerateConfig.add_arguments(p)
    GeneratorConfig.add_arguments(p)
    p.add_argument("--json", action="store_true", help="print the final report as one JSON object")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import CLIError, check_output
    from ..sd import check_model_source
    from ..generate.config import GenerateConfig, GeneratorConfig, check_device_settings
    from ..options import flag_name

    if args.classes is not None:
        classes: object = [c.strip() for c in args.classes.split(",") if c.strip()]
        if not classes:
            raise CLIError(f"--classes {args.classes!r} names no class")
    else:
        from ..data import ImageStore

        if not Path(args.classes_from).exists():
            raise FileNotFoundError(f"--classes-from store {args.classes_from!r} does not exist")
        classes = ImageStore(args.classes_from)
    # Everything that needs no model is checked before it is loaded.
    generate = GenerateConfig.from_args(args).validate(flag_name)
    model = GeneratorConfig.from_args(args).validate(flag_name)
    check_device_settings(model, flag_name)
    check_output(args.out, "--out", folder=True, store_ok=True)  # a store: re-running resumes it
    from ..generate.prepare import check_prompt_options
    from ..generate.prompts import check_template, class_names, read_style

    check_prompt_options(generate, class_names(classes))
    check_template(generate.template, read_style(generate.style, generate.style_token) if generate.style else None)
    check_model_source(args.model, model.allow_pickle)

    from ..distributed import env_rank, shutdown
    from ..generate import Generator
    from ..sd import quiet_loading

    try:
        with quiet_loading(not generate.progress):  # no diffusers notices or loading bars under --no-progress
            gen = Generator(args.model, **model.values())
        report = gen.generate(classes, out=args.out, **generate.values())
    finally:
        shutdown()
    if env_rank()[0] == 0:
        print(json.dumps(report.as_dict()) if args.json else f"bridgedfast generate: {report} -> {report.out}")
    return 0
