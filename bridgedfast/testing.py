"""Tiny models and data built locally, for the tests, the demo and the CPU benchmarks.

Nothing here downloads anything: the tiny Stable Diffusion is assembled from diffusers and
transformers classes with small configs and saved with `save_pretrained`, so loading it goes
through the same `from_pretrained` path as a user's real Stable Diffusion folder.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

SPECIAL_BOS = "<|startoftext|>"
SPECIAL_EOS = "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte maps to one printable unicode character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


# A handful of merges so common prompt words become few tokens, as in a real CLIP vocabulary.
_WORDS = ["a", "photo", "of", "the", "in", "style", "picture", "image", "digit", "rendering"]


def write_tiny_tokenizer(folder: str | Path) -> Path:
    """Writes a byte-level BPE `vocab.json` + `merges.txt` that `CLIPTokenizer` loads."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = list(_bytes_to_unicode().values())
    vocab: list[str] = alphabet + [c + "</w>" for c in alphabet]
    merges: list[str] = []
    for word in _WORDS:
        # Left-to-right merges building the whole word with its end-of-word marker.
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        while len(symbols) > 1:
            merges.append(f"{symbols[0]} {symbols[1]}")
            merged = symbols[0] + symbols[1]
            if merged not in vocab:
                vocab.append(merged)
            symbols = [merged] + symbols[2:]
    vocab += [SPECIAL_BOS, SPECIAL_EOS]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    return folder


def tiny_tokenizer(folder: str | Path):
    from transformers import CLIPTokenizer

    write_tiny_tokenizer(folder)
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)


def _sd15_scheduler():
    from diffusers import PNDMScheduler

    # Stable Diffusion v1.5's own scheduler configuration.
    return PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def _save_pipeline(folder: Path, unet, vae, text_encoder, tokenizer) -> Path:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_sd15_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def _build_stable_diffusion(folder: Path, seed: int, unet: dict, vae: dict, text_encoder: dict) -> Path:
    """Assembles random-weight UNet/VAE/CLIP text encoder from configs, with the byte-level
    tokenizer and SD 1.5's scheduler, and saves the pipeline to `folder` (kept if present)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if (folder / "model_index.json").exists():
        return folder
    tokenizer = tiny_tokenizer(folder / "_tokenizer_src")
    text_config = dict(text_encoder, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    text_config["vocab_size"] = max(text_config.get("vocab_size", 0), len(tokenizer))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        models = (UNet2DConditionModel(in_channels=4, out_channels=4, norm_num_groups=32, **unet),
                  AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32, **vae),
                  CLIPTextModel(CLIPTextConfig(**text_config)))
    unet_model, vae_model, text_model = (m.eval() for m in models)
    return _save_pipeline(folder, unet_model, vae_model, text_model, tokenizer)


def tiny_stable_diffusion(folder: str | Path, *, seed: int = 0, image_size: int = 32) -> Path:
    """Builds a tiny random-weight Stable Diffusion (UNet, VAE with 2x downsampling, CLIP text
    encoder, byte-level tokenizer, SD1.5's PNDM scheduler) and saves it as a diffusers folder.

    Generates `image_size` x `image_size` images by default; any multiple of 8 works.
    Returns the folder, loadable with `StableDiffusionPipeline.from_pretrained(folder)`.
    """
    return _build_stable_diffusion(
        Path(folder),
        seed,
        unet=dict(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=image_size // 2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, attention_head_dim=8,
        ),
        vae=dict(
            block_out_channels=(32, 64), sample_size=image_size,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        ),
        text_encoder=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                          projection_dim=32, layer_norm_eps=1e-5),
    )


def sd15_sized_stable_diffusion(folder: str | Path, *, seed: int = 0) -> Path:
    """A Stable-Diffusion-1.5-sized model (the real SD 1.5 UNet, VAE and CLIP ViT-L/14 text
    encoder configurations) with random weights: the same FLOPs as SD 1.5 for benchmarks when
    the real weights are not on disk. The tokenizer is the tiny byte-level one."""
    return _build_stable_diffusion(
        Path(folder),
        seed,
        unet=dict(
            sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=768, attention_head_dim=8,
        ),
        vae=dict(
            block_out_channels=(128, 256, 512, 512), layers_per_block=2, sample_size=512, scaling_factor=0.18215,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        ),
        text_encoder=dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                          num_attention_heads=12, projection_dim=768, hidden_act="quick_gelu"),
    )


def tiny_clip(folder: str | Path, *, seed: int = 0, image_size: int = 32) -> Path:
    """Builds a tiny random-weight CLIP (`CLIPModel`: text and vision towers of 2 layers, width
    32, 8-pixel patches) with a `CLIPProcessor` (the byte-level tokenizer, `image_size` inputs)
    and saves both to `folder` (safetensors), loadable with `CLIPModel.from_pretrained(folder)`
    and `CLIPProcessor.from_pretrained(folder)` as a real CLIP folder is. Kept if present."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    folder = Path(folder)
    if (folder / "config.json").exists() and (folder / "model.safetensors").exists():
        return folder
    tokenizer = tiny_tokenizer(folder / "_tokenizer_src")
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  image_size=image_size, patch_size=8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    model.save_pretrained(folder, safe_serialization=True)
    images = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def image_folder(
    root: str | Path,
    classes: dict[str, int] | list[str],
    *,
    per_class: int = 4,
    size_range: tuple[int, int] = (12, 40),
    seed: int = 0,
    fmt: str = "png",
) -> Path:
    """Writes a folder of class sub-folders with random-size images (smooth colour ramps plus
    noise, different per class) as PNG or JPEG files. `classes` is a list of names or a
    {name: count} dict. Returns `root`."""
    from PIL import Image

    root = Path(root)
    counts = classes if isinstance(classes, dict) else {c: per_class for c in classes}
    g = torch.Generator().manual_seed(seed)
    for ci, (name, count) in enumerate(sorted(counts.items())):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            h, w = (int(v) for v in torch.randint(size_range[0], size_range[1] + 1, (2,), generator=g))
            ys = torch.linspace(0, 1, h).view(h, 1, 1)
            xs = torch.linspace(0, 1, w).view(1, w, 1)
            base = torch.tensor([(ci * 67) % 256, (ci * 131 + 40) % 256, (ci * 29 + 90) % 256], dtype=torch.float32)
            img = base + 80 * ys * torch.tensor([1.0, -0.5, 0.3]) + 60 * xs * torch.tensor([-0.4, 0.8, 0.5])
            img = img + 20 * torch.rand(h, w, 3, generator=g)
            arr = img.clamp(0, 255).to(torch.uint8).numpy()
            options = {"quality": 95} if fmt in ("jpg", "jpeg") else {}
            Image.fromarray(arr).save(root / name / f"{name}_{i:04d}.{fmt}", **options)
    return root


DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def digits_dataset(
    root: str | Path, *, size: int = 32, test_fraction: float = 0.25, per_class: int | None = None, seed: int = 0
) -> tuple[Path, Path]:
    """scikit-learn's bundled handwritten digits (8x8 grey, 1797 images), upscaled to
    `size` x `size` RGB PNGs (dark ink on white), split per class into `root/train` and
    `root/test` folders of class sub-folders named "zero" ... "nine". `per_class` caps the
    images per class before the split. Works offline. Returns (train_dir, test_dir)."""
    import torch.nn.functional as F
    from PIL import Image
    from sklearn.datasets import load_digits

    root = Path(root)
    train_dir, test_dir = root / "train", root / "test"
    done = root / ".complete"
    if done.exists():
        return train_dir, test_dir
    digits = load_digits()
    images = torch.from_numpy(digits.images).float()  # values 0..16
    labels = torch.from_numpy(digits.target).long()
    g = torch.Generator().manual_seed(seed)
    for c, name in enumerate(DIGIT_NAMES):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        if per_class is not None:
            idx = idx[:per_class]
        n_test = max(1, round(len(idx) * test_fraction))
        for split_dir, part in ((test_dir, idx[:n_test]), (train_dir, idx[n_test:])):
            (split_dir / name).mkdir(parents=True, exist_ok=True)
            big = F.interpolate(images[part, None], size=(size, size), mode="bilinear", align_corners=False)
            ink = (255 - big.clamp(0, 16) * (255 / 16)).round().to(torch.uint8)[:, 0]
            for k, i in enumerate(part.tolist()):
                rgb = ink[k, :, :, None].expand(size, size, 3).contiguous().numpy()
                Image.fromarray(rgb).save(split_dir / name / f"{name}_{i:04d}.png")
    done.write_text("ok\n")
    return train_dir, test_dir
