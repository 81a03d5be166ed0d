"""`bridgedfast run` / `bridgedfast demo`: the whole pipeline on tiny inputs, resume and
skip-or-rerun bookkeeping, and YAML validation before any work."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bridgedfast.cli import main as cli_main
from bridgedfast.experiment import ExperimentError, load_experiment, parse_experiment, run_experiment

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> Path:
    """The demo in its reduced form, run as a user would: a subprocess of the CLI."""
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [sys.executable, "-m", "bridgedfast", "demo", "--quick", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, env=_env(), timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _ran(log: list[str]) -> list[str]:
    return [line.split("] ", 1)[1].split(":")[0] for line in log if line.startswith(("[run]", "[redo]", "[resume]"))]


def _skipped(log: list[str]) -> list[str]:
    return [line.split("] ", 1)[1].split(":")[0] for line in log if line.startswith("[skip]")]


def test_demo_writes_every_artefact(demo_out):
    from bridgedfast.data import ImageStore

    for name in ("experiment.yaml", "report.md", "report.html", "samples.png", "style/style.safetensors"):
        assert (demo_out / name).is_file(), name
    synthetic = ImageStore(demo_out / "synthetic")
    real = ImageStore(demo_out / "data" / "real-train")
    assert synthetic.classes == real.classes
    cfg = yaml.safe_load((demo_out / "experiment.yaml").read_text())
    assert len(synthetic) == cfg["generation"]["per_class"] * len(real.classes)
    name = synthetic.classes[synthetic.meta(0)["class_index"]]
    assert synthetic.meta(0)["prompt"] == f"a photo of the digit {name} in the style of <dataset-style>"
    # the world's pieces: its generator and its letters-pretrained classifier, copied beside the run
    assert cfg["generation"]["model"] == "inputs/world/sd" and (demo_out / "inputs/world/sd/model_index.json").is_file()
    assert cfg["training"]["pretrained"] == "inputs/world/classifier/model.safetensors"
    report = (demo_out / "report.md").read_text()
    for mode in ("vanilla", "mixed", "bridged", "bridged++"):
        results = json.loads((demo_out / "train" / f"{mode}-all-seed0" / "results.json").read_text())
        assert results["mode"] == mode and 0.0 <= results["test_top1"] <= 1.0
        assert (demo_out / "train" / f"{mode}-all-seed0" / "curves.png").is_file()
        assert f"| {mode} | all | 0 | {100 * results['test_top1']:.2f} |" in report
        assert f"train/{mode}-all-seed0/curves.png" in report
    assert "miniature world" in report and "not evidence about Stable Diffusion 1.5" in report  # what it is and is not
    assert "meaningless" not in report
    assert "images/s" in report and "```yaml" in report
    assert "<table>" in (demo_out / "report.html").read_text()


def test_rerun_is_a_no_op(demo_out):
    exp = load_experiment(demo_out / "experiment.yaml")
    before = {p: p.stat().st_mtime_ns for p in (demo_out / "train").rglob("results.json")}
    log: list[str] = []
    run_experiment(exp, progress=False, log=log.append)
    assert _ran(log) == []
    assert set(_skipped(log)) >= {"data", "style", "generate", "train-vanilla-all-seed0", "train-bridged++-all-seed0"}
    assert before == {p: p.stat().st_mtime_ns for p in (demo_out / "train").rglob("results.json")}


def test_changing_the_training_seed_reruns_only_training(demo_out):
    raw = yaml.safe_load((demo_out / "experiment.yaml").read_text())
    raw["training"]["seeds"] = [7]
    raw["training"]["modes"] = ["vanilla", "bridged++"]
    log: list[str] = []
    run_experiment(parse_experiment(raw, base=demo_out), progress=False, log=log.append)
    # The measurements that depend on the first seed's runs (faithfulness: its vanilla classifier;
    # KID: the pretrained 'none' model is its initialisation) are measured again, nothing else.
    assert [s for s in _ran(log) if not s.startswith(("kid", "faithfulness"))] == [
        "train-vanilla-all-seed7", "train-bridged++-all-seed7"]
    assert {"data", "style", "generate", "samples-nostyle"} <= set(_skipped(log))
    assert "| vanilla | all | 7 |" in (demo_out / "report.md").read_text()


@pytest.mark.parametrize("hook, value", [("BRIDGEDFAST_TEST_KILL_AFTER_BATCHES", "1"),
                                         ("BRIDGEDFAST_TEST_KILL_AT_STEP", "10")])
def test_kill_9_then_rerun_equals_the_uninterrupted_run(demo_out, tmp_path, hook, value):
    """SIGKILL the demo during generation (or during training), run it again: the outputs equal
    the uninterrupted run's (the module's demo, same inputs and settings)."""
    from bridgedfast.data import ImageStore
    from safetensors.torch import load_file

    cmd = [sys.executable, "-m", "bridgedfast", "demo", "--quick", "--out", str(tmp_path), "--no-progress"]
    crash = [sys.executable, str(ROOT / "tests" / "crashpoints.py"), *cmd[3:]]  # the kill hooks live in the tests
    killed = subprocess.run(crash, capture_output=True, text=True, env=dict(_env(), **{hook: value}), timeout=900)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "report.md").exists()
    resumed = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "[resume]" in resumed.stdout
    ours, reference = ImageStore(tmp_path / "synthetic"), ImageStore(demo_out / "synthetic")
    assert len(ours) == len(reference)
    assert [ours.meta(i)["seed"] for i in range(len(ours))] == [reference.meta(i)["seed"] for i in range(len(ours))]
    assert all(torch.equal(ours.image(i), reference.image(i)) for i in range(len(ours)))
    for run in ("vanilla-all-seed0", "bridged++-all-seed0"):
        a = load_file(str(tmp_path / "train" / run / "model.safetensors"))
        b = load_file(str(demo_out / "train" / run / "model.safetensors"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), run


def test_changing_generation_reruns_what_depends_on_it(demo_out):
    raw = yaml.safe_load((demo_out / "experiment.yaml").read_text())
    raw["generation"]["guidance_scale"] = 3.0
    raw["training"]["modes"] = ["vanilla", "bridged"]
    log: list[str] = []
    run_experiment(parse_experiment(raw, base=demo_out), progress=False, log=log.append)
    assert "generate" in _ran(log) and "samples-nostyle" in _ran(log)
    assert "train-bridged-all-seed0" in _ran(log)
    assert {"data", "style", "train-vanilla-all-seed0"} <= set(_skipped(log))
    from bridgedfast.data import ImageStore

    assert ImageStore(demo_out / "synthetic").meta(0)["guidance_scale"] == 3.0


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r["generation"].update(per_clas=3), "unknown key 'generation.per_clas' (did you mean 'per_class'?)"),
        (lambda r: r["generation"].update(per_class="many"), "generation.per_class must be an integer"),
        (lambda r: r["data"].update(real="no/such/folder"), "data.real: 'no/such/folder' does not exist"),
        (lambda r: r["training"].update(modes=["bridged+"]), "training.modes[0] must be"),
        (lambda r: r["style"].update(steps=0), "style.steps must be positive"),
        (lambda r: r.update(extra=1), "unknown key 'extra'"),
        (lambda r: r["training"].update(options={"stage1": {"mixup_alpah": 0.2}}),
         "unknown key 'training.options.stage1.mixup_alpah' (did you mean 'mixup_alpha'?)"),
        (lambda r: r["training"].update(options={"optimiser": "sgd"}), "unknown key 'training.options.optimiser'"),
        (lambda r: r["training"].update(options={"seed": 3}), "set it as training.seed"),
        (lambda r: r["training"].update(options={"train_scale": [0.5]}), "training.options.train_scale must be"),
        (lambda r: r["generation"].update(model="./models/sd15"), "generation.model: './models/sd15' is neither"),
        # Refused by a step only when it starts (training after generation): checked up front too.
        (lambda r: r["training"].update(model="resnet-50"), "training.model: unknown timm model 'resnet-50'"),
        (lambda r: r["generation"].update(scheduler="dpm++"), "generation.scheduler: unknown scheduler 'dpm++'"),
        (lambda r: r["generation"].update(device="gpu"), "generation.device: unknown device 'gpu'"),
        (lambda r: r["training"].update(device="tpu"), "training.device: unknown device 'tpu'"),
        (lambda r: r.update(report={"samples_per_class": 0}), "report.samples_per_class must be positive"),
        (lambda r: r["training"].update(model="coatnet_0_224"), "training.pretrained: timm has no pretrained weights"),
        (lambda r: r["generation"].update(height=500), "generation.height must be a multiple of 8"),
        (lambda r: r["style"].update(token="dataset style"), "style.token must be"),
        (lambda r: r["training"].update(options={"stage2": {"lr": -1.0}}), "training (vanilla): stage2-lr must be >= 0"),
        (lambda r: r["training"].update(batch_size=63, options={"stage1": {"mixup_alpha": 0.5}}),
         "stage1 uses Mixup/CutMix, which needs an even batch size"),
    ],
)
def test_bad_yaml_is_refused_before_any_work(tmp_path, mutate, message, capsys):
    real = tmp_path / "real"
    (real / "a").mkdir(parents=True)
    raw = {
        "out": "out", "data": {"real": "real", "test": "real"},
        "generation": {"model": "org/some-model"}, "style": {}, "training": {"modes": ["vanilla", "bridged"]},
    }
    mutate(raw)
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cli_main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_not_yaml_and_missing_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    assert cli_main(["run", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert cli_main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ExperimentError, match="must be a mapping"):
        parse_experiment(["a", "list"])


def test_split_store_is_stratified_and_copies_bytes(tmp_path):
    from bridgedfast.data import ImageStore, pack
    from bridgedfast.data import split_store
    from bridgedfast.testing import image_folder

    src = pack(image_folder(tmp_path / "src", {"a": 5, "b": 10}), tmp_path / "all", progress=False)
    split_store(src, tmp_path / "train", tmp_path / "test", test_fraction=0.2, seed=3)
    train, test = ImageStore(tmp_path / "train"), ImageStore(tmp_path / "test")
    assert (test.labels == 0).sum() == 1 and (test.labels == 1).sum() == 2
    assert len(train) + len(test) == len(src)
    pixels = {src.image(i).numpy().tobytes() for i in range(len(src))}
    assert {train.image(i).numpy().tobytes() for i in range(len(train))} | {
        test.image(i).numpy().tobytes() for i in range(len(test))} == pixels


def test_bench_runs_scripts_and_writes_summary(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bridgedfast", "bench", "--only", "invert", "--quick", "--results-dir", str(tmp_path)],
        capture_output=True, text=True, env=_env(), timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "invert-cpu.json").read_text())["rows"]
    summary = (tmp_path / "summary-cpu.md").read_text()
    assert rows and all(r["ratio"] > 0 for r in rows)
    assert f"{rows[0]['ratio']:.2f}x" in summary and rows[0]["peer"]["name"] in summary


def test_bench_rejects_unknown_benchmark(capsys):
    assert cli_main(["bench", "--only", "nonsense"]) == 2
    assert "unknown benchmark(s) nonsense" in capsys.readouterr().err


@pytest.mark.parametrize("lost", [["real-test"], ["real-train", "real-test"]])
def test_split_of_real_data_resumes_after_a_kill(tmp_path, lost):
    """Without `data.test` the real images are packed into data/real-all and split: a kill -9
    after the pack (or between the two split outputs), before the step is recorded as done,
    must resume and give the same stores."""
    import shutil

    from bridgedfast.data import ImageStore
    from bridgedfast.experiment.runner import ExperimentRunner
    from bridgedfast.testing import image_folder

    image_folder(tmp_path / "photos", {"ant": 5, "bee": 6})
    raw = {"out": "run", "data": {"real": "photos", "test_fraction": 0.4}, "training": {"modes": ["vanilla"]}}

    def prepare() -> tuple[list, list]:
        runner = ExperimentRunner(parse_experiment(raw, base=tmp_path), progress=False, log=lambda _: None)
        _, train, test = runner.prepare_real()
        return [[(int(s.labels[i]), s.image(i).numpy().tobytes()) for i in range(len(s))]
                for s in (ImageStore(train), ImageStore(test))]

    reference = prepare()
    data = tmp_path / "run" / "data"
    for name in lost:  # what the kill left unwritten
        shutil.rmtree(data / name)
    (tmp_path / "run" / ".steps" / "data.done.json").unlink()
    assert prepare() == reference


@pytest.mark.parametrize("argv, message", [
    (["--device", "gpu"], "--device 'gpu'"),
    (["--threads", "0"], "--threads"),
])
def test_bench_rejects_bad_device_and_threads_before_running_anything(tmp_path, capsys, argv, message):
    results = tmp_path / "results"
    assert cli_main(["bench", "--only", "invert", "--quick", "--results-dir", str(results), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) <= 2
    assert not results.exists()


def test_demo_with_a_bad_device_writes_nothing(tmp_path, capsys):
    assert cli_main(["demo", "--device", "gpu", "--out", str(tmp_path / "demo"), "--no-progress"]) == 2
    assert "--device 'gpu'" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()
