"""pack / `bridgedfast pack`: pixels round-trip against PIL's own decode; every bad-input path
gives one clear message naming the file, and never a half-written store."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from bridgedfast.data import ImageStore, pack

ROOT = Path(__file__).resolve().parents[1]


def smooth(h, w, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([yy * 200 // h, xx * 200 // w, (yy + xx) * 100 // (h + w)], -1) + rng.integers(0, 40, 3)
    return np.clip(img + rng.integers(-2, 3, (h, w, 3)), 0, 255).astype(np.uint8)


def make_source(root: Path) -> dict[str, tuple[str, str]]:
    """Two classes (created out of order) with jpg/png/webp/palette/gray/RGBA files and a nested
    folder; returns relative path -> class name."""
    files = {
        "b_dog/1.jpg": ("JPEG", "RGB"), "b_dog/2.png": ("PNG", "RGBA"), "b_dog/sub/3.webp": ("WEBP", "RGB"),
        "a_cat/x.png": ("PNG", "P"), "a_cat/y.jpeg": ("JPEG", "L"), "a_cat/z.PNG": ("PNG", "RGB"),
    }
    for k, (rel, (fmt_, mode)) in enumerate(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(smooth(24 + 3 * k, 40 - 2 * k, k))
        img = img.convert(mode) if mode != "P" else img.quantize(16)
        img.save(path, format=fmt_, **({"quality": 90} if fmt_ == "JPEG" else {}), **({"lossless": True} if fmt_ == "WEBP" else {}))
    (root / "a_cat" / ".DS_Store").write_bytes(b"junk")  # hidden: ignored
    return files


def pil_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.array(img.convert("RGB"))


EXPECTED_ORDER = ["a_cat/x.png", "a_cat/y.jpeg", "a_cat/z.PNG", "b_dog/1.jpg", "b_dog/2.png", "b_dog/sub/3.webp"]


@pytest.mark.parametrize("workers", [1, 3])
def test_pack_raw_round_trips_pil_pixels_exactly(tmp_path, workers):
    make_source(tmp_path / "src")
    store = pack(tmp_path / "src", tmp_path / "store", workers=workers, progress=False)
    assert isinstance(store, ImageStore) and store.classes == ["a_cat", "b_dog"]
    assert [store.meta(i)["path"] for i in range(len(store))] == EXPECTED_ORDER
    assert store.labels.tolist() == [0, 0, 0, 1, 1, 1]
    for i, rel in enumerate(EXPECTED_ORDER):
        assert np.array_equal(store.image(i).numpy(), pil_rgb(tmp_path / "src" / rel)), rel
    store.verify()
    assert json.loads((tmp_path / "store" / "pack.json").read_text())["images"] == 6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


@pytest.mark.parametrize("restart_markers", [False, True])
def test_pack_jpeg_keeps_jpeg_sources_and_encodes_others(tmp_path, restart_markers):
    from bridgedfast.ops import decode_jpegs_compiled

    make_source(tmp_path / "src")
    store = pack(tmp_path / "src", tmp_path / "store", encoding="jpeg", quality=95, progress=False,
                 restart_markers=restart_markers)
    markers = restart_markers and decode_jpegs_compiled()
    for i, rel in enumerate(EXPECTED_ORDER):
        source = tmp_path / "src" / rel
        data = store.encoded(i).numpy().tobytes()
        assert (b"\xff\xdd\x00\x04\x00\x01" in data) == markers  # DRI: a restart marker after every MCU
        if rel.endswith("1.jpg") and not markers:  # an RGB JPEG needing no resize is stored untouched
            assert data == source.read_bytes()
        elif rel.endswith("1.jpg"):  # ... or re-encoded losslessly: the same pixels
            assert np.array_equal(store.image(i).numpy(), pil_rgb(source))
        else:  # the others: exactly PIL's own JPEG round trip at that quality
            buf = io.BytesIO()
            Image.fromarray(pil_rgb(source)).save(buf, format="JPEG", quality=95)
            assert np.array_equal(store.image(i).numpy(), np.array(Image.open(buf).convert("RGB"))), rel
        out, ref = store.image(i).numpy().astype(int), pil_rgb(source).astype(int)
        assert out.shape == ref.shape
        assert np.abs(out - ref).mean() < 5 and np.abs(out - ref).max() < 60, rel


def test_pack_max_side_shrinks_like_antialiased_bicubic(tmp_path):
    make_source(tmp_path / "src")
    store = pack(tmp_path / "src", tmp_path / "store", max_side=16, progress=False)
    for i, rel in enumerate(EXPECTED_ORDER):
        ref = torch.from_numpy(pil_rgb(tmp_path / "src" / rel)).permute(2, 0, 1)
        h, w = ref.shape[1:]
        scale = 16 / max(h, w)
        size = [max(1, round(h * scale)), max(1, round(w * scale))]
        assert list(store.image(i).shape[:2]) == size and max(size) == 16
        expect = TF.resize(ref, size, interpolation=TF.InterpolationMode.BICUBIC, antialias=True).permute(1, 2, 0)
        assert (store.image(i).int() - expect.int()).abs().float().mean() < 1.5, rel


def test_pack_bad_image_stops_before_writing(tmp_path):
    make_source(tmp_path / "src")
    data = (tmp_path / "src" / "b_dog" / "1.jpg").read_bytes()
    (tmp_path / "src" / "b_dog" / "0_truncated.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"0_truncated\.jpg: cannot read image"):
        pack(tmp_path / "src", tmp_path / "store", progress=False)
    assert not (tmp_path / "store").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]


def test_pack_skip_bad_skips_and_lists(tmp_path):
    make_source(tmp_path / "src")
    (tmp_path / "src" / "a_cat" / "garbage.png").write_bytes(os.urandom(100))
    (tmp_path / "src" / "b_dog" / "notes.txt").write_text("hello")
    with pytest.warns(RuntimeWarning, match="skipped 2 file"):
        store = pack(tmp_path / "src", tmp_path / "store", skip_bad=True, progress=False)
    assert len(store) == 6 and [store.meta(i)["path"] for i in range(6)] == EXPECTED_ORDER
    skipped = json.loads((tmp_path / "store" / "pack.json").read_text())["skipped"]
    assert sorted(Path(s["path"]).name for s in skipped) == ["garbage.png", "notes.txt"]


@pytest.mark.parametrize(
    "setup, error, match",
    [
        (lambda s: None, FileNotFoundError, "does not exist"),
        (lambda s: s.write_text("x"), ValueError, "is not a folder"),
        (lambda s: s.mkdir(), ValueError, "has no class sub-folders"),
        (lambda s: (make_source(s), (s / "c_empty").mkdir()), ValueError, r"c_empty' is empty"),
        (lambda s: (make_source(s), (s / "a_cat" / "notes.txt").write_text("x")), ValueError, r"notes\.txt: not an image file"),
    ],
)
def test_pack_bad_source_messages(tmp_path, setup, error, match):
    setup(tmp_path / "src")
    with pytest.raises(error, match=match):
        pack(tmp_path / "src", tmp_path / "store", progress=False)
    assert not (tmp_path / "store").exists()


def test_pack_bad_arguments(tmp_path):
    make_source(tmp_path / "src")
    (tmp_path / "exists").mkdir()
    with pytest.raises(ValueError, match="already exists"):
        pack(tmp_path / "src", tmp_path / "exists", progress=False)
    with pytest.raises(ValueError, match="encoding must be"):
        pack(tmp_path / "src", tmp_path / "s", encoding="png", progress=False)
    with pytest.raises(ValueError, match="max_side must be a positive integer"):
        pack(tmp_path / "src", tmp_path / "s", max_side=0, progress=False)


def cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "bridgedfast", "pack", *map(str, args)], capture_output=True, text=True, env=env)


def test_cli_pack_and_bad_input(tmp_path):
    make_source(tmp_path / "src")
    ok = cli(tmp_path / "src", tmp_path / "store", "--encoding", "jpeg", "--workers", "2", "--max-side", "20")
    assert ok.returncode == 0, ok.stderr
    assert "packed 6 images in 2 classes" in ok.stdout and "img" in ok.stderr  # summary + progress bar
    store = ImageStore(tmp_path / "store")
    assert len(store) == 6 and max(store.sizes.max(1).values.tolist()) == 20

    (tmp_path / "src" / "b_dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    bad = cli(tmp_path / "src", tmp_path / "store2", "--no-progress")
    assert bad.returncode == 2 and not (tmp_path / "store2").exists()
    assert bad.stderr.strip().count("\n") == 0 and "broken.png: cannot read image" in bad.stderr



def test_cli_in_process_skip_bad_and_errors(tmp_path, capsys):
    from bridgedfast.cli import main as cli_main

    make_source(tmp_path / "src")
    (tmp_path / "src" / "b_dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    assert cli_main(["pack", str(tmp_path / "src"), str(tmp_path / "store"), "--skip-bad", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 file" in err and "broken.png" in err
    assert len(ImageStore(tmp_path / "store")) == 6
    for args, words in [((tmp_path / "nope", tmp_path / "s4"), "does not exist"), ((tmp_path / "src", tmp_path / "store"), "already exists")]:
        assert cli_main(["pack", *map(str, args), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert words in err and err.strip().count("\n") == 0
    with pytest.raises(SystemExit) as exc:
        cli_main(["pack", str(tmp_path / "src"), str(tmp_path / "s5"), "--max-side", "0"])
    assert exc.value.code == 2 and "--max-side" in capsys.readouterr().err


def test_pack_visits_each_real_folder_once_through_symlink_loops(tmp_path):
    make_source(tmp_path / "src")
    os.symlink(tmp_path / "src" / "b_dog", tmp_path / "src" / "b_dog" / "sub" / "loop")  # a link loop
    (tmp_path / "src" / "b_dog" / "notes.txt").write_text("x")  # a non-image: --skip-bad lists it once
    with pytest.warns(RuntimeWarning, match="skipped 1 file"):
        store = pack(tmp_path / "src", tmp_path / "s", skip_bad=True, progress=False)
    assert [m["path"] for m in store.metas()] == EXPECTED_ORDER  # each image once
    assert json.loads((tmp_path / "s" / "pack.json").read_text())["skipped"] == [
        {"path": str(tmp_path / "src" / "b_dog" / "notes.txt"), "why": "not an image file (extension '.txt')"}]


def test_next_pack_removes_what_a_killed_pack_left_behind(tmp_path):
    from bridgedfast.data import ImageStoreWriter
    from bridgedfast.data.pack import _remove_abandoned

    make_source(tmp_path / "src")
    # What a pack killed mid-way leaves: a hidden, partly written store whose lock nobody holds.
    dead = tmp_path / ".s.packing-deadbeef"
    with ImageStoreWriter(dead, ["a_cat", "b_dog"]) as w:
        w.add(smooth(8, 8, 0), 0)
    # A pack of the same destination still running: its writer holds the lock.
    running = ImageStoreWriter(tmp_path / ".s.packing-0123abcd", ["a_cat", "b_dog"])
    other = tmp_path / ".other.packing-deadbeef"  # another destination's: not ours to judge
    other.mkdir()
    try:
        assert _remove_abandoned(tmp_path / "s") == [dead]
        dead.mkdir()
        (dead / "LOCK").write_text("")
        pack(tmp_path / "src", tmp_path / "s", progress=False)
        assert not dead.exists() and (tmp_path / ".s.packing-0123abcd").is_dir() and other.is_dir()
        assert len(ImageStore(tmp_path / "s")) == 6
    finally:
        running.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.packing-deadbeef", ".s.packing-0123abcd", "s", "src"]
