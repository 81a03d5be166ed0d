"""The miniature world (bridgedfast.world): the corpus, the tokenizer, `world build --quick`
through the CLI, and the committed weights loading with stock diffusers and timm."""
import json

import numpy as np
import pytest
import torch

from bridgedfast.cli import main as cli_main
from bridgedfast.world import WEIGHTS
from bridgedfast.world.corpus import DIGITS, LETTERS, STYLES, render, vocabulary


@pytest.fixture(scope="module")
def quick_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world") / "w"
    assert cli_main(["world", "build", "--out", str(out), "--quick", "--no-progress", "--seed", "3", "--fp16"]) == 0
    return out


def _generate(folder, prompts, steps, seed=0):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(folder), use_safetensors=True, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(seed)
    return pipe(prompts, num_inference_steps=steps, guidance_scale=4.0, height=32, width=32, output_type="np",
                generator=g).images


def _timm_from_card(folder):
    import timm
    from safetensors.torch import load_file

    card = json.loads((folder / "classifier.json").read_text())
    model = timm.create_model(card["timm_model"], pretrained=False, num_classes=len(card["classes"]))
    model.load_state_dict(load_file(str(folder / card["weights"])))  # strict: every key fits
    return model.eval(), card


def test_corpus_is_a_function_of_seed_and_index():
    a, b, c = render(5, 17), render(5, 17), render(6, 17)
    assert np.array_equal(a.image, b.image) and a.caption == b.caption
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (32, 32, 3) and a.image.dtype == np.uint8


def test_captions_match_what_was_rendered():
    samples = [render(0, i) for i in range(300)]
    for s in samples:
        assert s.caption.startswith(f"a photo of the {s.kind} {s.name}")
        assert (s.name in DIGITS) == (s.kind == "digit") and (s.name in LETTERS) == (s.kind == "letter")
        if " in the style of " in s.caption:
            assert s.caption.rsplit(" ", 1)[1] in s.styles  # the named style was applied
        else:
            assert s.caption == f"a photo of the {s.kind} {s.name}"
        assert np.array_equal(s.image[..., 0], s.image[..., 2])  # grey ink, RGB
    kinds = [s.kind for s in samples]
    assert 0.35 < kinds.count("digit") / len(kinds) < 0.65
    pixelated = [s for s in samples if "pixelated" in s.styles]
    assert 0.2 < len(pixelated) / len(samples) < 0.5
    styled = [s for s in samples if " in the style of " in s.caption]
    assert styled and len(styled) < len(samples)
    # dark ink on white: the border is paper, the darkest pixel is ink
    plain = [s.image[..., 0] for s in samples if not s.styles]
    assert np.median([np.median(np.concatenate([im[0], im[-1]])) for im in plain]) > 220
    assert np.median([im.min() for im in plain]) < 60


def test_tokenizer_makes_every_caption_word_one_token(quick_world):
    from transformers import CLIPTokenizer

    folder = quick_world / "sd" / "tokenizer"
    tok = CLIPTokenizer.from_pretrained(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text())  # the byte-level BPE files, beside tokenizer.json
    assert len(vocab) == len(tok) and (folder / "merges.txt").is_file()
    for word in vocabulary() + [w.upper() for w in STYLES]:
        ids = tok(word, add_special_tokens=False).input_ids
        assert len(ids) == 1, (word, tok.convert_ids_to_tokens(ids))
        assert ids[0] == vocab[word.lower() + "</w>"]
    caption = "a photo of the digit seven in the style of pixelated"
    assert len(tok(caption, add_special_tokens=False).input_ids) == len(caption.split())
    unknown = tok("xylophone qq", add_special_tokens=False).input_ids
    assert len(unknown) > 2 and tok.decode(unknown).strip() == "xylophone qq"


def test_quick_build_loads_with_stock_diffusers_and_timm(quick_world):
    from bridgedfast.transfer.models import create_model

    images = _generate(quick_world / "sd", ["a photo of the digit seven"], steps=2)
    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()
    model, card = _timm_from_card(quick_world / "classifier")
    assert card["classes"] == LETTERS and card["image_size"] == 32
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 26)
    # what `bridgedfast train --model NAME --pretrained FILE` does: the backbone loads, a new head
    ours = create_model(card["timm_model"], 10, str(quick_world / "classifier" / card["weights"]))
    assert torch.equal(ours.state_dict()["conv1.0.weight"] if "conv1.0.weight" in ours.state_dict()
                       else next(iter(ours.state_dict().values())), next(iter(model.state_dict().values())))
    record = json.loads((quick_world / "world.json").read_text())
    assert record["quick"] is True and record["seed"] == 3 and record["sd_dtype"] == "float16"
    from safetensors import safe_open

    with safe_open(str(quick_world / "sd" / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())


def test_build_refuses_a_foreign_folder_and_bad_seed(tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    assert cli_main(["world", "build", "--out", str(foreign), "--quick", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a previous world build" in err
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
    assert cli_main(["world", "build", "--out", str(tmp_path / "new"), "--seed", "-1"]) == 2
    assert "--seed" in capsys.readouterr().err and not (tmp_path / "new").exists()


def _digits_reference():
    """A classifier of the real handwritten digits, on sklearn's own 8x8 images (the generator never
    saw any of them, so every real image may train this independent judge)."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    return LogisticRegression(max_iter=2000).fit(digits.data / 16.0, digits.target)


def test_committed_weights_generate_digits_a_real_digit_classifier_recognises():
    import torch.nn.functional as F

    assert (WEIGHTS / "sd" / "model_index.json").is_file() and (WEIGHTS / "classifier" / "classifier.json").is_file()
    model, card = _timm_from_card(WEIGHTS / "classifier")
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, len(card["classes"]))
    prompts = [f"a photo of the digit {d} in the style of pixelated" for d in DIGITS] * 4
    images = torch.from_numpy(_generate(WEIGHTS / "sd", prompts, steps=10)).permute(0, 3, 1, 2).mean(1, keepdim=True)
    # back to sklearn's form: 8x8, ink = 16, paper = 0
    small = F.adaptive_avg_pool2d(images, 8).flatten(1).numpy()
    pred = _digits_reference().predict((1.0 - small).clip(0, 1))
    accuracy = float((pred == np.tile(np.arange(10), 4)).mean())
    # chance is 0.1 (P(>= 8 of 40) = 0.04 by chance); the build's check on 200 images at 20 steps measured 0.36
    assert accuracy >= 0.2, accuracy
