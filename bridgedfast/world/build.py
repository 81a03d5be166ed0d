"""`build_world`: the committed recipe that trains the world's generator and classifier from
scratch and writes them in their standard formats (a diffusers Stable Diffusion folder; timm
weights as safetensors plus a JSON card)."""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

MARKER = "world.json"
CLASSIFIER_WEIGHTS = "model.safetensors"
CLASSIFIER_CARD = "classifier.json"


@dataclass(frozen=True)
class Recipe:
    corpus: int = 12000  # rendered samples for the generator
    letters: int = 10000  # rendered letters-only samples for the classifier
    vae_steps: int = 200
    vae_batch: int = 32
    vae_lr: float = 2e-3
    unet_steps: int = 2500
    unet_batch: int = 32
    unet_lr: float = 1.5e-3
    cls_steps: int = 400
    cls_batch: int = 128
    cls_lr: float = 3e-3


QUICK = Recipe(corpus=64, letters=64, vae_steps=3, vae_batch=16, unet_steps=3, unet_batch=16, cls_steps=3,
               cls_batch=16)


def _stack(samples) -> torch.Tensor:
    import numpy as np

    return torch.from_numpy(np.stack([s.image for s in samples]))


def render_corpus(seed: int, count: int, progress: bool, **kwargs):
    from tqdm.auto import tqdm

    from .corpus import render

    return [render(seed, i, **kwargs) for i in tqdm(range(count), desc="world: rendering", disable=not progress)]


def _build_vae(out: Path, recipe: Recipe, seed: int, progress: bool) -> None:
    from .models import make_vae
    from .train import train_vae

    images = _stack(render_corpus(seed, recipe.corpus, progress))
    torch.manual_seed(seed)
    vae = make_vae()
    train_vae(vae, images, steps=recipe.vae_steps, batch=recipe.vae_batch, lr=recipe.vae_lr, seed=seed + 1,
              progress=progress)
    vae.save_pretrained(out / "vae", safe_serialization=True)


def _build_generator(out: Path, recipe: Recipe, seed: int, progress: bool) -> None:
    from diffusers import AutoencoderKL, StableDiffusionPipeline

    from .models import make_text_encoder, make_unet, sampling_scheduler
    from .tokenizer import world_tokenizer
    from .train import encode_captions, encode_latents, train_unet

    samples = render_corpus(seed, recipe.corpus, progress)
    images = _stack(samples)
    tokenizer = world_tokenizer(out / "_tokenizer_src")
    vae = AutoencoderKL.from_pretrained(str(out / "vae"), use_safetensors=True).eval()
    torch.manual_seed(seed + 5)
    unet, text_encoder = make_unet(), make_text_encoder(tokenizer)
    latents = encode_latents(vae, images)
    captions = sorted({s.caption for s in samples} | {""})
    text = encode_captions(text_encoder, tokenizer, captions)
    index = {c: i for i, c in enumerate(captions)}
    caption_ids = torch.tensor([index[s.caption] for s in samples])
    ema = train_unet(unet, latents, vae.config.scaling_factor, text, caption_ids, index[""],
                     steps=recipe.unet_steps, batch=recipe.unet_batch, lr=recipe.unet_lr, seed=seed + 2,
                     progress=progress)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=ema,
                                   scheduler=sampling_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out / "sd", safe_serialization=True)
    for name in ("vocab.json", "merges.txt"):  # the slow CLIPTokenizer's files (transformers 4 reads them)
        shutil.copy2(out / "_tokenizer_src" / name, out / "sd" / "tokenizer" / name)
    shutil.rmtree(out / "_tokenizer_src")


def _build_classifier(out: Path, recipe: Recipe, seed: int, progress: bool) -> None:
    from safetensors.torch import save_file

    from .corpus import LETTERS, SIZE
    from .models import CLASSIFIER, classifier_norm, make_classifier
    from .train import train_classifier

    samples = render_corpus(seed + 100, recipe.letters, progress, digit_share=0.0)
    images = _stack(samples)
    labels = torch.tensor([LETTERS.index(s.name) for s in samples])
    torch.manual_seed(seed + 3)
    model = make_classifier(len(LETTERS))
    mean, std = classifier_norm(model)
    train_classifier(model, images, labels, mean, std, steps=recipe.cls_steps, batch=recipe.cls_batch,
                     lr=recipe.cls_lr, seed=seed + 4, progress=progress)
    folder = out / "classifier"
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / CLASSIFIER_WEIGHTS), metadata={"format": "pt", "timm_model": CLASSIFIER})
    card = {"timm_model": CLASSIFIER, "classes": LETTERS, "image_size": SIZE, "mean": list(mean), "std": list(std),
            "source_task": "letters rendered from matplotlib's fonts (the world's 'ImageNet')",
            "weights": CLASSIFIER_WEIGHTS}
    (folder / CLASSIFIER_CARD).write_text(json.dumps(card, indent=2) + "\n")


_CLASSIFIER_FIELDS = ("letters", "cls_steps", "cls_batch", "cls_lr")
_VAE_FIELDS = ("corpus", "vae_steps", "vae_batch", "vae_lr")
_GENERATOR_FIELDS = _VAE_FIELDS + ("unet_steps", "unet_batch", "unet_lr")


def _run_stage(tmp: Path, stage: str, params: dict, build) -> None:
    """Runs one stage into `tmp/stage`, unless an interrupted build of the same parameters already
    finished it (its `tmp/stage.done` records them): a killed build resumes at the stage it lost."""
    done = tmp / f"{stage}.done"
    if done.is_file() and json.loads(done.read_text()) == params and (tmp / stage).is_dir():
        return
    done.unlink(missing_ok=True)
    shutil.rmtree(tmp / stage, ignore_errors=True)
    build()
    done.write_text(json.dumps(params) + "\n")


def store_half(folder: str | Path) -> None:
    """Rewrites the Stable Diffusion folder `folder` with float16 weights (half the size). Load it
    with `torch_dtype=torch.float32` (bridgedfast's `dtype: fp32`) to compute in float32."""
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), use_safetensors=True, torch_dtype=torch.float32)
    tmp = folder.with_name(f".{folder.name}.half")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.to(torch.float16).save_pretrained(tmp, safe_serialization=True)
    for name in ("vocab.json", "merges.txt"):
        if (folder / "tokenizer" / name).is_file():
            shutil.copy2(folder / "tokenizer" / name, tmp / "tokenizer" / name)
    shutil.rmtree(folder)
    tmp.rename(folder)


def is_world_build(path: str | Path) -> bool:
    return (Path(path) / MARKER).is_file()


def build_world(out: str | Path, *, quick: bool = False, seed: int = 0, progress: bool = True,
                recipe: Recipe | None = None, half: bool = False) -> Path:
    """Trains the world's models from scratch and writes `out/sd/` (a Stable Diffusion folder),
    `out/classifier/` (timm weights + card) and `out/world.json` (the recipe); `half`: the Stable
    Diffusion weights stored in float16 (`store_half`). Deterministic for a
    seed on a given machine. Builds in a temporary sibling folder and moves it into place, so an
    interrupted build leaves nothing half-written; a previous build at `out` is replaced, any
    other existing, non-empty `out` is refused."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not is_world_build(out))):
        raise ValueError(f"--out {str(out)!r} exists and is not a previous world build; choose a new folder")
    recipe = recipe or (QUICK if quick else Recipe())
    tmp = out.with_name(f".{out.name}.building")
    tmp.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        for stage, fields, fn in (("classifier", _CLASSIFIER_FIELDS, _build_classifier),
                                  ("vae", _VAE_FIELDS, _build_vae), ("sd", _GENERATOR_FIELDS, _build_generator)):
            _run_stage(tmp, stage, {k: getattr(recipe, k) for k in fields} | {"seed": seed},
                       lambda: fn(tmp, recipe, seed, progress))
    if half:
        store_half(tmp / "sd")
    record = {"seed": seed, "quick": quick, "sd_dtype": "float16" if half else "float32", "recipe": asdict(recipe), "seconds": round(time.perf_counter() - start, 1),
              "torch": torch.__version__, "command": f"bridgedfast world build --seed {seed}" + (" --quick" if quick else "") + (" --fp16" if half else "")}
    (tmp / MARKER).write_text(json.dumps(record, indent=2) + "\n")
    for marker in tmp.glob("*.done"):
        marker.unlink()
    shutil.rmtree(tmp / "vae")  # saved again inside sd/
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
