"""Bad input to every command: one line naming the problem on stderr, exit code 2, no traceback,
nothing written (issue 12 §4). One row per case: (command line, expected fragment of the message).

The command lines run in-process (`bridgedfast.cli.main`), as a user's shell would run them;
`{name}` in an argument is a path of the `world` fixture (or of the test's own folder, `{tmp}`)."""
from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import pytest
import torch

from bridgedfast.cli import main

SEED_MAX = 2**63 - 1
HUGE = "1" + "0" * 22  # 23 digits: wraps in int64


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height (no pixel data: PIL checks the size on open)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def world(tiny_sd, tmp_path_factory):
    """Inputs every case reads (never written by a case): images, a store, a file in the way,
    a model folder missing its VAE, a corrupt safetensors file, a prompts file with a duplicate key."""
    from bridgedfast.data import pack
    from bridgedfast.testing import image_folder

    root = tmp_path_factory.mktemp("bad-input")
    images = image_folder(root / "images", ["ant", "bee"], per_class=3, size_range=(16, 24))
    pack(images, root / "store", progress=False)
    (root / "blocker").write_text("a file where a folder would go\n")
    shutil.copytree(tiny_sd, root / "no-vae", ignore=lambda d, names: ["vae"] if Path(d) == Path(tiny_sd) else [])
    (root / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not safetensors")
    (root / "dup.yaml").write_text("ant: [a photo of an ant]\nbee: [a bee]\nant: [another ant]\n")
    mixed = root / "mixed" / "ant"
    mixed.mkdir(parents=True)
    shutil.copy(next((images / "ant").iterdir()), mixed / "a.png")
    (mixed / "notes.txt").write_text("not an image\n")
    (root / "bomb" / "ant").mkdir(parents=True)
    _png_header_only(root / "bomb" / "ant" / "huge.png", 60000, 60000)
    return {"root": root, "sd": tiny_sd, "images": images, "store": root / "store", "blocker": root / "blocker",
            "no_vae": root / "no-vae", "corrupt": root / "corrupt.safetensors", "dup": root / "dup.yaml",
            "mixed": root / "mixed", "bomb": root / "bomb"}


GEN = ["generate", "--model", "{sd}", "--classes", "ant,bee", "--per-class", "1", "--out", "{tmp}/out", "--steps", "1",
       "--height", "16", "--width", "16", "--device", "cpu", "--no-progress"]
INV = ["invert", "--model", "{sd}", "--data", "{images}", "--out", "{tmp}/style.safetensors", "--steps", "1",
       "--batch-size", "1", "--resolution", "16", "--device", "cpu", "--quiet"]
TRAIN = ["train", "--model", "test_resnet", "--real-train", "{store}", "--real-test", "{store}", "--mode", "vanilla",
         "--out", "{tmp}/run", "--pretrained", "none", "--epochs", "1", "--batch-size", "2", "--image-size", "16",
         "--device", "cpu", "--no-progress"]


def with_flags(base: list[str], **flags: str) -> list[str]:
    """`base` with each --flag set to a value (replaced where present, else appended)."""
    argv = list(base)
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


def experiment(out: str = "{tmp}/out", model: str = "org/some-model", generation: str = "", style: str = "",
               training: str = "", extra: str = "") -> list[str]:
    """`run FILE` with an experiment file written from these parts (`extra`: lines appended); the
    file's text travels as the last argument, after '<<'."""
    text = (f"out: {out}\n"
            "data: {real: {images}, test: {images}}\n"
            f"generation: {{model: {model}, device: cpu{generation}}}\n"
            f"style: {{device: cpu{style}}}\n"
            f"training: {{model: test_resnet, pretrained: none, modes: [vanilla, bridged], device: cpu{training}}}\n"
            + extra)
    return ["run", "{tmp}/experiment.yaml", "<<" + text]


CASES = [
    # -- output paths whose parent is a file (FileExistsError tracebacks before) and outputs in a store
    ("pack-dst-under-a-file", ["pack", "{images}", "{blocker}/store"], "'{blocker}' is a file, not a folder"),
    ("invert-out-under-a-file", with_flags(INV, out="{blocker}/style.safetensors"), "is a file, not a folder"),
    ("generate-out-under-a-file", with_flags(GEN, out="{blocker}/out"), "is a file, not a folder"),
    ("generate-out-inside-a-store", with_flags(GEN, out="{store}/more"), "lies inside '{store}', an image store"),
    ("train-out-under-a-file", with_flags(TRAIN, out="{blocker}/run"), "is a file, not a folder"),
    ("train-out-is-a-store", with_flags(TRAIN, out="{store}"), "--out '{store}' is an image store"),
    ("demo-out-is-a-store", ["demo", "--out", "{store}", "--quick", "--no-progress"], "--out '{store}' is an image store"),
    ("demo-out-in-a-store", ["demo", "--out", "{store}/demo", "--quick", "--no-progress"], "image store"),
    ("demo-zero-threads", ["demo", "--out", "{tmp}/demo", "--quick", "--threads", "0"], "--threads must be at least 1"),
    ("filter-out-under-a-file", ["filter", "{store}", "--out", "{blocker}/kept"], "is a file, not a folder"),
    ("bench-results-under-a-file", ["bench", "--results-dir", "{blocker}/results", "--only", "augment"],
     "--results-dir '{blocker}/results' cannot be created"),
    ("run-out-under-a-file", experiment(out="{blocker}/run"), "out '{blocker}/run' cannot be created"),
    # -- bad values that were accepted
    ("train-lr-inf", with_flags(TRAIN, lr="inf"), "lr must be a finite number, got inf"),
    ("train-seed-23-digits", with_flags(TRAIN, seed=HUGE), f"seed must be in [0, {SEED_MAX}], got {HUGE}"),
    ("train-seed-negative", with_flags(TRAIN, seed="-1"), f"seed must be in [0, {SEED_MAX}], got -1"),
    ("generate-seed-2**63", with_flags(GEN, seed=str(SEED_MAX + 1)), f"--seed must be in [0, {SEED_MAX}]"),
    ("invert-seed-negative", with_flags(INV, seed="-1"), f"--seed must be in [0, {SEED_MAX}], got -1"),
    ("generate-template-unknown-field", with_flags(GEN, template="a {foo} {}"), "has an unknown field {foo}"),
    ("invert-templates-unknown-field", with_flags(INV, templates="{token} {bogus}"), "has an unknown field {bogus}"),
    ("invert-init-word-two-words", with_flags(INV, init_word="two words"), "--init-word must be one word"),
    ("invert-non-image-file", with_flags(INV, data="{mixed}"), "notes.txt: not an image file (extension '.txt')"),
    ("generate-prompts-duplicate-key", with_flags(GEN, prompts="{dup}"), "duplicate key 'ant' (lines 1 and 3)"),
    ("run-duplicate-key", experiment(extra="training: {modes: [vanilla]}\n"), "duplicate key 'training'"),
    ("run-style-lr-inf", experiment(style=", lr: .inf"), "style.lr must be a finite number, got inf"),
    ("run-training-seed-huge", experiment(training=f", seeds: [{HUGE}]"), "training.seeds[0] must be an integer in"),
    ("run-style-template-unknown-field", experiment(style=", template: 'a {} by {token} {bogus}'"),
     "unknown field {bogus}"),
    # -- tracebacks from deep inside loading
    ("generate-model-without-vae", with_flags(GEN, model="{no_vae}"), "is missing the component 'vae'"),
    ("invert-model-without-vae", with_flags(INV, model="{no_vae}"), "is missing the component 'vae'"),
    ("run-model-without-vae", experiment(model="{no_vae}"), "generation.model: model folder"),
    ("invert-decompression-bomb", with_flags(INV, data="{bomb}"), "huge.png': DecompressionBombError"),
    ("train-pretrained-corrupt", with_flags(TRAIN, pretrained="{corrupt}"),
     "pretrained weights '{corrupt}' are not a readable safetensors file"),
    # -- cheap options checked before the model is loaded (the model folder here cannot be loaded)
    ("generate-style-before-model", with_flags(GEN, model="{no_vae}", style="{tmp}/nope.safetensors"),
     "nope.safetensors' does not exist"),
    # -- GPU-only settings on the CPU (hung before)
    ("generate-fp16-compile-on-cpu", with_flags(GEN, dtype="fp16", backend="compile"), "--dtype fp16 needs a CUDA GPU"),
    ("generate-tensorrt-on-cpu", with_flags(GEN, backend="tensorrt"), "tensorrt"),
    ("run-fp16-on-cpu", experiment(generation=", dtype: fp16"), "generation.dtype fp16 needs a CUDA GPU"),
]


def tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1) for p in sorted(root.rglob("*"))}


def fill(text: str, paths: dict[str, str]) -> str:
    """`{name}` -> the path `name` (other braces, e.g. a template's, stay)."""
    for name, path in paths.items():
        text = text.replace("{" + name + "}", path)
    return text


@pytest.mark.parametrize("argv, fragment", [pytest.param(a, f, id=i) for i, a, f in CASES] + [pytest.param(
    with_flags(GEN, backend="compile", device="auto"), "--backend compile needs a CUDA GPU", id="generate-compile-auto-on-cpu",
    marks=pytest.mark.skipif(torch.cuda.is_available(), reason="device auto is a GPU here"))])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(world, tmp_path, capsys, argv, fragment):
    paths = {k: str(v) for k, v in world.items()} | {"tmp": str(tmp_path)}
    argv, fragment = [fill(a, paths) for a in argv], fill(fragment, paths)
    if argv[-1].startswith("<<"):  # run: write the experiment file
        Path(argv[1]).write_text(argv.pop()[2:])
    before = tree(tmp_path), tree(world["root"])
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"bridgedfast {argv[0]}: error: ") and fragment in lines[0], lines[0]
    assert (tree(tmp_path), tree(world["root"])) == before  # nothing written, nothing half-written


def test_yaml_loader_refuses_duplicate_keys_at_any_depth_and_keeps_merge_keys(tmp_path):
    from bridgedfast.yamlfile import YAMLFileError, load_yaml

    f = tmp_path / "a.yaml"
    f.write_text("base: &b {lr: 0.1, epochs: 2}\nrun: {<<: *b, lr: 0.5}\n")  # a merged key may be overridden
    assert load_yaml(f) == {"base": {"lr": 0.1, "epochs": 2}, "run": {"lr": 0.5, "epochs": 2}}
    for text, message in [("a:\n  x: 1\n  y: 2\n  x: 3\n", "duplicate key 'x' (lines 2 and 4)"),
                          ("{a: 1, a: 2}", "duplicate key 'a' (lines 1 and 1)"),
                          ("a: [1\n", "is not valid YAML at line 2")]:
        f.write_text(text)
        with pytest.raises(YAMLFileError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            load_yaml(f)
