"""The world's models, all stock classes with small configurations: diffusers' AutoencoderKL and
UNet2DConditionModel, a frozen random transformers CLIPTextModel, SD's scaled-linear noise
schedule, and a small timm classifier."""
from __future__ import annotations

import torch

IMAGE_SIZE = 32
LATENT_CHANNELS = 4
TEXT_WIDTH = 64
CLASSIFIER = "test_resnet"
# Stable Diffusion 1.x's noise schedule.
SD_BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def make_vae():
    """32x32x3 <-> 8x8x4 (two downsamplings)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, norm_num_groups=8, layers_per_block=1,
        block_out_channels=(16, 32, 64), sample_size=IMAGE_SIZE,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    )


def make_unet():
    """Epsilon prediction on 8x8x4 latents, cross-attention to the text at the two lower levels."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 4, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=16,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH, attention_head_dim=8,
    )


def make_text_encoder(tokenizer):
    """A random CLIP text transformer (2 layers, width 64): frozen, it still tells captions apart.
    Its token embeddings are drawn with std 1 (CLIP's init uses 0.02, as small as its position
    embeddings), so a caption's words, not their positions, dominate its hidden states."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH, num_hidden_layers=2,
        num_attention_heads=4, projection_dim=TEXT_WIDTH, max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = CLIPTextModel(config).eval().requires_grad_(False)
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, 1.0)
    return model


def training_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SD_BETAS, prediction_type="epsilon", clip_sample=False)


def sampling_scheduler():
    """What the saved pipeline loads: DPM-Solver++ with SD's betas (good in 10-20 steps)."""
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(**SD_BETAS, prediction_type="epsilon", algorithm_type="dpmsolver++",
                                       steps_offset=1)


def make_classifier(num_classes: int) -> torch.nn.Module:
    import timm

    return timm.create_model(CLASSIFIER, pretrained=False, num_classes=num_classes)


def classifier_norm(model: torch.nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean/std (0-1 scale) bridgedfast's training uses for this model (its pretrained config)."""
    from ..transfer.models import data_config

    cfg = data_config(model, IMAGE_SIZE)
    return cfg["mean"], cfg["std"]
