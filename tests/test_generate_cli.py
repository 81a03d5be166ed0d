"""`bridgedfast generate`: resume after kill -9, torchrun ranks equal one process, CLI options
and one-line errors (exit code 2, nothing written)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bridgedfast.cli import main

ROOT = Path(__file__).resolve().parents[1]
CLASSES = "cat,red_car,dog"
PER_CLASS = 3
TOTAL = 9


def args_for(model, out, *extra) -> list[str]:
    return ["generate", "--model", str(model), "--classes", CLASSES, "--per-class", str(PER_CLASS), "--out", str(out),
            "--steps", "2", "--height", "32", "--width", "32", "--batch-size", "2", "--device", "cpu", "--no-progress",
            *extra]


def run_cli(argv: list[str], *, env_extra: dict | None = None, launcher: list[str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env_extra or {})}
    cmd = [sys.executable, *(launcher or []), "-m", "bridgedfast", *argv]
    if any(key.startswith("BRIDGEDFAST_TEST_KILL") for key in env_extra or {}):  # crash points: tests/crashpoints.py
        cmd = [sys.executable, str(ROOT / "tests" / "crashpoints.py"), *argv]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def read_store(path):
    from bridgedfast.data import ImageStore

    store = ImageStore(path)
    return [store.image(i).numpy().copy() for i in range(len(store))], [store.meta(i) for i in range(len(store))]


@pytest.fixture(scope="module")
def uninterrupted(tiny_sd, tmp_path_factory):
    """One uninterrupted single-process run: the reference for resume and torchrun."""
    out = tmp_path_factory.mktemp("reference") / "out"
    proc = run_cli(args_for(tiny_sd, out, "--json"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["images"] == TOTAL and report["images/s"] > 0 and report["UNet it/s"] > 0
    return read_store(out)


def assert_same_output(got, want):
    images, metas = got
    ref_images, ref_metas = want
    assert [(m["class_index"], m["image_index"]) for m in metas] == [(m["class_index"], m["image_index"]) for m in ref_metas]
    assert metas == ref_metas
    for a, b in zip(images, ref_images):
        np.testing.assert_array_equal(a, b)


def test_resume_after_kill_9_gives_the_uninterrupted_result(tiny_sd, tmp_path, uninterrupted):
    out = tmp_path / "out"
    killed = run_cli(args_for(tiny_sd, out), env_extra={"BRIDGEDFAST_TEST_KILL_AFTER_BATCHES": "2"})
    assert killed.returncode == -9, killed.stderr
    partial, _ = read_store(out)
    assert 0 < len(partial) < TOTAL
    assert json.loads((out / "generation.json").read_text())["status"] == "running"
    resumed = run_cli(args_for(tiny_sd, out, "--json"))
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert report["skipped"] == len(partial) and report["images"] == TOTAL - len(partial)
    assert_same_output(read_store(out), uninterrupted)
    assert json.loads((out / "generation.json").read_text())["status"] == "complete"


def test_two_torchrun_ranks_equal_one_process(tiny_sd, tmp_path, uninterrupted):
    out = tmp_path / "out"
    proc = run_cli(args_for(tiny_sd, out), launcher=["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_output(read_store(out), uninterrupted)
    manifest = json.loads((out / "generation.json").read_text())
    assert manifest["runs"][-1]["world_size"] == 2 and manifest["status"] == "complete"


def test_cli_classes_from_a_store_and_json_report(tiny_sd, tmp_path, capsys):
    from bridgedfast.data import ImageStore, ImageStoreWriter

    with ImageStoreWriter(tmp_path / "real", ["airliner", "glider"]) as w:
        w.add(np.zeros((8, 8, 3), np.uint8), 0)
    argv = args_for(tiny_sd, tmp_path / "out", "--json", "--store-size", "16", "--template", "a picture of a {}")
    argv[argv.index("--classes"):argv.index("--classes") + 2] = ["--classes-from", str(tmp_path / "real")]
    argv[argv.index("--per-class") + 1] = "1"
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["images"] == 2 and report["batch_size"] == 2
    store = ImageStore(tmp_path / "out")
    assert store.classes == ["airliner", "glider"] and store.image(1).shape == (16, 16, 3)
    assert store.meta(1)["prompt"] == "a picture of a glider"


def test_cli_help_documents_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("--per-class", "--guidance-scale", "(default: 7.5)", "--steps", "(default: 25)", "--scheduler",
                   "dpmpp", "--backend", "tensorrt", "--batch-size", "auto", "--negative-prompt", "--style",
                   "--store-size", "--encoding", "torchrun"):
        assert needle in text, needle


@pytest.mark.parametrize("change,message", [
    ({"--per-class": "0"}, "--per-class must be a positive integer, got 0"),
    ({"--per-class": "-3"}, "--per-class must be a positive integer, got -3"),
    ({"--classes": " , "}, "names no class"),
    ({"--model": "/nonexistent/sd-model"}, "/nonexistent/sd-model"),
    ({"--scheduler": "warp-drive"}, "unknown scheduler 'warp-drive'"),
    ({"--height": "30"}, "multiples of 8"),
    ({"--template": "a photo"}, "template 'a photo'"),
    ({"--style": "nope.safetensors"}, "nope.safetensors"),
    ({"--classes-from": "/nonexistent/store"}, "/nonexistent/store"),
])
def test_cli_errors_are_one_line_exit_2_and_write_nothing(tiny_sd, tmp_path, capsys, change, message):
    argv = args_for(tiny_sd, tmp_path / "out")
    for key, value in change.items():
        if key == "--classes-from":
            i = argv.index("--classes")
            argv[i:i + 2] = [key, value]
        elif key in argv:
            argv[argv.index(key) + 1] = value
        else:
            argv += [key, value]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("bridgedfast generate: error:") and message in err[-1]
    assert sum("error" in line for line in err) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag,value", [("--batch-size", "0"), ("--batch-size", "many"), ("--store-size", "0x4"),
                                        ("--backend", "onnx"), ("--encoding", "png")])
def test_cli_rejects_bad_option_values(tiny_sd, tmp_path, capsys, flag, value):
    argv = args_for(tiny_sd, tmp_path / "out")
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert value in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_changed_configuration(tiny_sd, tmp_path, capsys):
    out = tmp_path / "out"
    argv = args_for(tiny_sd, out)
    argv[argv.index("--per-class") + 1] = "1"
    assert main(argv) == 0
    argv[argv.index("--steps") + 1] = "3"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "different configuration" in err and "steps (existing 2, now 3)" in err
