"""End to end with the real ImageStore, MixedLoader and fused augmentation: every mode, the
CLI's errors, kill -9 and resume, torchrun DDP on 2 CPU processes, --pretrained, --compare."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bridgedfast.cli import main as cli_main
from bridgedfast.transfer import StageConfig, TrainConfig, few_shot_split, train
from bridgedfast.transfer.models import create_model, load_weights_file

data = pytest.importorskip("bridgedfast.data", reason="needs the image store and loader (branch data)")
pytest.importorskip("bridgedfast.augment", reason="needs the fused augmentation (branch augment)")
if not hasattr(data, "MixedLoader"):
    pytest.skip("needs MixedLoader (branch data)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
MODEL = "test_resnet"
CLASSES = ["ant", "bee", "cat"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from bridgedfast.testing import image_folder

    root = tmp_path_factory.mktemp("stores")
    out = {}
    for name, per_class, seed in (("real_train", 8, 1), ("real_test", 4, 2), ("synthetic", 10, 3)):
        folder = image_folder(root / f"{name}_images", CLASSES, per_class=per_class, size_range=(20, 40), seed=seed)
        data.pack(folder, root / name)
        out[name] = str(root / name)
    return out


def cfg(stores, out, mode="vanilla", **kw):
    base = dict(model=MODEL, real_train=stores["real_train"], real_test=stores["real_test"], out=str(out), mode=mode,
                synthetic=None if mode == "vanilla" else stores["synthetic"], pretrained="none", epochs=1, batch_size=8,
                image_size=32, device="cpu", progress=False, lr=0.05, min_steps=0)
    base.update(kw)
    return TrainConfig(**base)


def cli_args(stores, out, mode="vanilla", *extra):
    args = ["train", "--model", MODEL, "--real-train", stores["real_train"], "--real-test", stores["real_test"],
            "--mode", mode, "--out", str(out), "--pretrained", "none", "--epochs", "1", "--batch-size", "8",
            "--image-size", "32", "--device", "cpu", "--lr", "0.05", "--min-steps", "0", "--no-progress"]
    if mode != "vanilla":
        args += ["--synthetic", stores["synthetic"]]
    return args + list(extra)


def run_cli(args, env_extra=None, torchrun=None):
    """`python -m bridgedfast ARGS`; with a crash point in env_extra, through tests/crashpoints.py."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "bridgedfast", *args]
    if any(key.startswith("BRIDGEDFAST_TEST_KILL") for key in env_extra or {}):
        cmd = [sys.executable, str(ROOT / "tests" / "crashpoints.py"), *args]
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}",
               "-m", "bridgedfast", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.parametrize("mode", ["vanilla", "mixed", "bridged", "bridged++"])
def test_each_mode_end_to_end(stores, tmp_path, mode):
    res = train(cfg(stores, tmp_path / "out", mode))
    saved = json.loads((tmp_path / "out/results.json").read_text())
    assert saved == res
    assert {"mode", "model", "stages", "test_top1", "leep"} <= saved.keys()
    assert saved["mode"] == mode and saved["model"] == MODEL and 0 <= saved["test_top1"] <= 1
    assert (saved["leep"] is not None) == mode.startswith("bridged") and (saved["leep"] or -1) < 0
    for stage in saved["stages"]:
        assert {"data", "epochs", "final_train_loss"} <= stage.keys() and stage["epochs"] == 1
        real, synthetic = stage["images"]["real"], stage["images"]["synthetic"]
        # What the loader's is_synthetic said each stage saw.
        assert {"synthetic": (real, synthetic > 0), "real": (synthetic, real > 0),
                "real+synthetic": (0, real > 0 and synthetic > 0)}[stage["data"]] == (0, True)
    assert [s["data"] for s in saved["stages"]] == {"vanilla": ["real"], "mixed": ["real+synthetic"],
                                                    "bridged": ["synthetic", "real"], "bridged++": ["synthetic", "real"]}[mode]
    assert (tmp_path / "out/curves.png").stat().st_size > 1000
    assert (tmp_path / "out/checkpoint/state.json").is_file()


def test_bridged_pp_head_is_fresh_and_few_shot_split_is_recorded(stores, tmp_path):
    import timm

    from bridgedfast.transfer import head_reset_seed

    frozen = StageConfig(lr=0.0, head_lr=0.0)
    for mode in ("bridged", "bridged++"):
        train(cfg(stores, tmp_path / mode, mode, shots=3, stage2=frozen))
    kept, kept1 = weights(tmp_path / "bridged/model.safetensors"), weights(tmp_path / "bridged/model_stage1.safetensors")
    assert torch.equal(kept["fc.weight"], kept1["fc.weight"])
    final, stage1 = weights(tmp_path / "bridged++/model.safetensors"), weights(tmp_path / "bridged++/model_stage1.safetensors")
    fresh = timm.create_model(MODEL, num_classes=3)
    torch.manual_seed(head_reset_seed(0))
    fresh.reset_classifier(3)
    assert not torch.equal(final["fc.weight"], stage1["fc.weight"])
    assert torch.equal(final["fc.weight"], fresh.fc.weight) and torch.equal(final["fc.bias"], fresh.fc.bias)
    split = json.loads((tmp_path / "bridged++/split.json").read_text())
    assert [len(v) for v in split["per_class"].values()] == [3, 3, 3] and (split["shots"], split["split_seed"]) == (3, 0)
    assert split["indices"] == few_shot_split(data.ImageStore(stores["real_train"]).labels, 3, 0).tolist()
    assert split == json.loads((tmp_path / "bridged/split.json").read_text())
    res = json.loads((tmp_path / "bridged++/results.json").read_text())
    assert res["stages"][1]["images"] == {"real": 8, "synthetic": 0}  # 9 shots, batch 8, drop_last


def _hand_leep(model, store, size):
    from bridgedfast.augment import EvalAugment
    from bridgedfast.transfer import leep

    model.eval()
    aug = EvalAugment(size, resize=int(size / model.pretrained_cfg["crop_pct"]), mean=model.pretrained_cfg["mean"],
                      std=model.pretrained_cfg["std"])
    with torch.no_grad():
        probs = torch.softmax(model(aug([store.image(i) for i in range(len(store))], None)), dim=1)
    return leep(probs, store.labels, num_classes=len(store.classes))


def test_leep_of_the_pretrained_and_the_stage1_model(stores, tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = timm.create_model(MODEL, num_classes=10)  # a "pretrained" model with its own 10-class head
    save_file(source.state_dict(), str(tmp_path / "source.safetensors"))
    res = train(cfg(stores, tmp_path / "out", "bridged", pretrained=str(tmp_path / "source.safetensors")))
    real = data.ImageStore(stores["real_train"])
    assert res["leep_pretrained"] == pytest.approx(_hand_leep(source, real, 32), abs=1e-5)
    stage1 = timm.create_model(MODEL, num_classes=3)
    stage1.load_state_dict(weights(tmp_path / "out/model_stage1.safetensors"))
    assert res["leep"] == pytest.approx(_hand_leep(stage1, real, 32), abs=1e-5)
    assert weights(tmp_path / "out/model.safetensors")["fc.weight"].shape == (3, 96)


def test_resume_after_kill_9_matches_an_uninterrupted_run(stores, tmp_path):
    extra = ["--stage1-epochs", "2", "--stage2-epochs", "2"]
    full = run_cli(cli_args(stores, tmp_path / "full", "bridged++", *extra))
    assert full.returncode == 0, full.stderr
    # Stage 1: 30 synthetic / 8 = 3 steps per epoch; stage 2: 24 real / 8 = 3. Step 11 is mid stage-2 epoch 2.
    killed = run_cli(cli_args(stores, tmp_path / "cut", "bridged++", *extra), {"BRIDGEDFAST_TEST_KILL_AT_STEP": "11"})
    assert killed.returncode == -9, killed.stderr
    state = json.loads((tmp_path / "cut/checkpoint/state.json").read_text())
    assert (state["stage"], state["epoch"]) == (1, 1) and not (tmp_path / "cut/results.json").exists()
    resumed = run_cli(cli_args(stores, tmp_path / "cut", "bridged++", *extra))
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(tmp_path / "full/model.safetensors"), weights(tmp_path / "cut/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("full", "cut"))
    assert [h["train_loss"] for h in ra["history"]] == [h["train_loss"] for h in rb["history"]]
    assert ra["leep"] == rb["leep"] and ra["test_top1"] == rb["test_top1"]
    again = run_cli(cli_args(stores, tmp_path / "cut", "bridged++", *extra))
    assert again.returncode == 0 and "test top-1" in again.stdout  # finished: prints the results, trains nothing


def test_ddp_two_cpu_processes_match_one(stores, tmp_path):
    # No batch norm (test_vit) and no random crop/flip: the 2-process gradients are the 1-process ones.
    extra = ["--model", "test_vit", "--train-scale", "1,1", "--train-ratio", "1,1", "--hflip", "0", "--stage1-epochs", "1",
             "--stage2-epochs", "2"]
    single = run_cli(cli_args(stores, tmp_path / "one", "bridged", *extra))
    assert single.returncode == 0, single.stderr
    ddp = run_cli(cli_args(stores, tmp_path / "two", "bridged", *extra), torchrun=2)
    assert ddp.returncode == 0, ddp.stderr + ddp.stdout
    one, two = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two"))
    assert two["runtime"]["world_size"] == 2 and one["runtime"]["world_size"] == 1
    for h1, h2 in zip(one["history"], two["history"], strict=True):
        assert h1["images"] == h2["images"]
        assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=1e-3)
        assert h2["test_top1"] == pytest.approx(h1["test_top1"], abs=1e-6)
    assert two["leep"] == pytest.approx(one["leep"], rel=1e-3)


@pytest.mark.parametrize(
    "mode, extra, message",
    [
        ("vanilla", ["--model", "resnet_nope"], "unknown timm model 'resnet_nope'"),
        ("vanilla", ["--shots", "9"], "shots 9 is larger than class 'ant', which has only 8 images"),
        ("bridged", ["--synthetic", ""], "mode 'bridged' needs a synthetic store (--synthetic STORE)"),
        ("bridged", ["--synthetic", "/nonexistent/store"], "--synthetic store '/nonexistent/store' does not exist"),
        ("vanilla", ["--stage1-epochs", "3"], "--stage1-epochs: mode vanilla has no synthetic stage 1"),
        ("vanilla", ["--batch-size", "30"], "batch size 30 is larger than its 24 real training images"),
        ("bridged++", ["--batch-size", "7"], "even batch size"),
        ("mixed", ["--synthetic-fraction", "1.5"], "synthetic-fraction must be in (0, 1)"),
        ("mixed", ["--synthetic-fraction", "0.01"], "synthetic-fraction 0.01 of a batch of 8 per process gives 0"),
    ],
)
def test_bad_options_exit_2_with_one_clear_line(stores, tmp_path, capsys, mode, extra, message):
    assert cli_main(cli_args(stores, tmp_path / "out", mode) + extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bridgedfast train: error:") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_synthetic_classes_must_match_real_ones_by_name(stores, tmp_path):
    from bridgedfast.testing import image_folder

    odd = image_folder(tmp_path / "odd_images", ["ant", "bee", "dog"], per_class=2, seed=4)
    data.pack(odd, tmp_path / "odd")
    with pytest.raises(ValueError, match="synthetic store has classes that the real store lacks: 'dog'"):
        train(cfg(stores, tmp_path / "out", "bridged", synthetic=str(tmp_path / "odd")))


def test_changed_configuration_is_refused_and_rerun_is_a_noop(stores, tmp_path, capsys):
    first = train(cfg(stores, tmp_path / "out"))
    assert train(cfg(stores, tmp_path / "out")) == first
    assert cli_main(cli_args(stores, tmp_path / "out", "vanilla", "--seed", "1")) == 2
    assert "different configuration (seed: 0 -> 1" in capsys.readouterr().err


class Stop(Exception):
    pass


def test_resuming_against_a_store_that_changed_is_refused(stores, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(stores["synthetic"], tmp_path / "syn")
    config = cfg(stores, tmp_path / "out", "bridged", synthetic=str(tmp_path / "syn"), epochs=2)

    def stop(step):
        raise Stop

    with pytest.raises(Stop):
        train(config, on_step=stop)
    with data.ImageStoreWriter(tmp_path / "syn", CLASSES) as writer:
        writer.add(torch.zeros(8, 8, 3, dtype=torch.uint8), 0)
    with pytest.raises(ValueError, match="--synthetic store now holds 31 images, but the run in --out .* started with 30"):
        train(config)


def test_pretrained_file_loads_everything_but_a_mismatched_head(tmp_path):
    import timm
    from safetensors.torch import save_file

    source = timm.create_model(MODEL, num_classes=1000)
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": source.state_dict()}, tmp_path / "w.pth")
    for f in ("w.safetensors", "w.pth"):
        model = create_model(MODEL, 3, str(tmp_path / f))
        assert torch.equal(model.conv1[0].weight, source.conv1[0].weight)
        assert model.fc.weight.shape == (3, 96)
    with pytest.raises(ValueError, match="do not fit model"):
        load_weights_file(timm.create_model("test_vit", num_classes=3), tmp_path / "w.safetensors")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(ValueError, match="must be .safetensors, .pt, .pth or .bin"):
        create_model(MODEL, 3, str(tmp_path / "w.txt"))


def test_pretrained_timm_that_cannot_be_had_is_an_error_not_random_init(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    try:
        create_model(MODEL, 3, "timm")
    except FileNotFoundError as exc:
        assert "could not load timm's pretrained weights for 'test_resnet'" in str(exc) and "--pretrained" in str(exc)
    else:
        pytest.skip("timm's test_resnet weights are in the local cache")


def test_compare_prints_mean_and_std_over_seeds(tmp_path, capsys):
    for seed, top1 in ((0, 0.5), (1, 0.6), (2, 0.7)):
        run = tmp_path / f"pp{seed}"
        run.mkdir()
        run.joinpath("results.json").write_text(json.dumps(
            {"mode": "bridged++", "model": "resnet18", "shots": 4, "seed": seed, "test_top1": top1, "test_top5": 0.9, "leep": -1.0}))
    van = tmp_path / "van" / "s0"
    van.mkdir(parents=True)
    van.joinpath("results.json").write_text(json.dumps(
        {"mode": "vanilla", "model": "resnet18", "shots": 4, "seed": 0, "test_top1": 0.4, "test_top5": 0.8, "leep": None}))
    assert cli_main(["train", "--compare", str(tmp_path / "pp0"), str(tmp_path / "pp1"), str(tmp_path / "pp2"), str(tmp_path / "van")]) == 0
    out = capsys.readouterr().out
    group_lines = out.split("\n\n")[1].splitlines()
    assert "60.00 +- 10.00" in next(l for l in group_lines if l.startswith("bridged++")) and "0,1,2" in out
    assert "40.00 +- 0.00" in next(l for l in group_lines if l.startswith("vanilla"))
    assert cli_main(["train", "--compare", str(tmp_path / "nothing")]) == 2


def test_compare_never_averages_runs_of_different_settings_as_seeds(tmp_path, capsys):
    """Runs that differ in anything but the seed (here the synthetic store: with and without the
    style token, the paper's ablation) are separate groups, not one mean +- std over 'seeds'."""
    from bridgedfast.transfer import compare_runs

    for name, synthetic, seed, top1 in (("dsi-s0", "/s/dsi", 0, 0.7), ("dsi-s1", "/s/dsi", 1, 0.8),
                                        ("plain-s0", "/s/plain", 0, 0.5)):
        run = tmp_path / name
        run.mkdir()
        config = {"model": "resnet18", "mode": "bridged++", "synthetic": synthetic, "seed": seed, "split_seed": seed,
                  "out": str(run), "device": "cpu", "workers": None}
        run.joinpath("results.json").write_text(json.dumps(
            {"mode": "bridged++", "model": "resnet18", "shots": None, "seed": seed, "test_top1": top1, "test_top5": 1.0,
             "leep": None, "config": config}))
    _, groups = compare_runs([tmp_path])
    assert sorted((g["runs"], g["seeds"], round(g["top1_mean"], 6)) for g in groups) == [(1, [0], 0.5), (2, [0, 1], 0.75)]
    assert cli_main(["train", "--compare", str(tmp_path)]) == 0
    table = capsys.readouterr().out.split("\n\n")[1]
    assert "75.00 +- 7.07" in table and "50.00 +- 0.00" in table


@pytest.mark.parametrize("amp, expected", [("bf16", "bfloat16"), ("fp16", "float16")])
def test_amp_and_channels_last_paths_run_on_cpu_too(stores, tmp_path, amp, expected):
    res = train(cfg(stores, tmp_path / "out", "bridged++", amp=amp, channels_last=True))
    assert res["runtime"]["amp"] == expected and res["runtime"]["channels_last"]
    assert all(math.isfinite(h["train_loss"]) for h in res["history"])
    if amp == "fp16":  # the grad scaler's state is checkpointed with the optimiser
        assert json.loads((tmp_path / "out/checkpoint/state.json").read_text())["scaler"]["scale"] > 0


@pytest.mark.cuda
@pytest.mark.parametrize("amp, compile_", [("bf16", False), ("fp16", False), ("bf16", True)])
def test_cuda_bridged_pp_with_amp_and_channels_last(stores, tmp_path, amp, compile_):
    res = train(cfg(stores, tmp_path / "out", "bridged++", device="cuda", amp=amp, compile=compile_, epochs=2))
    assert res["runtime"]["amp"] == {"bf16": "bfloat16", "fp16": "float16"}[amp] and res["runtime"]["channels_last"]
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in res["history"])
    assert [s["head"] for s in res["stages"]] == ["initial", "reset"] and res["leep"] < 0
    assert res["stages"][0]["images"]["real"] == 0 and res["stages"][1]["images"]["synthetic"] == 0


@pytest.mark.cuda
def test_cuda_fp32_matches_cpu(stores, tmp_path):
    # Deterministic crops, no AMP: the same batches and arithmetic up to kernel rounding.
    same = dict(train_scale=(1.0, 1.0), train_ratio=(1.0, 1.0), hflip=0.0, amp="none", channels_last=False)
    cpu = train(cfg(stores, tmp_path / "cpu", "vanilla", **same))
    gpu = train(cfg(stores, tmp_path / "gpu", "vanilla", device="cuda", **same))
    assert gpu["history"][0]["train_loss"] == pytest.approx(cpu["history"][0]["train_loss"], rel=1e-3)
    assert gpu["test_top1"] == pytest.approx(cpu["test_top1"], abs=1 / 12 + 1e-9)  # at most one of 12 test images flips
