"""benchmarks/gpu_check.sh: the dry run (every step's plumbing on the CPU) writes a complete
gpu-check.md; a step past its time limit is cut off and reported; the wheels step installs only
what is missing."""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
STEPS = ["info", "wheels", "build-ext", "cmake-build", "ctest", "sd-model", "pytest-cuda", "bench-augment",
         "bench-loader", "bench-train", "bench-generate", "bench-invert", "bench-generate-compile"]


def make_wheel(folder: Path, dist: str, version: str, module_text: str) -> Path:
    """A minimal pure-Python wheel (what `pip download` brings, without the network)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": module_text,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


def gpu_check(tmp_path: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("PYTHONPATH", None)
    return subprocess.run(["bash", str(SCRIPT), "--dry-run", "--out", str(tmp_path / "out"), "--work",
                           str(tmp_path / "work"), *args], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=timeout)


def step_rows(report: str) -> dict[str, list[str]]:
    section = report.split("## Steps", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in STEPS:
            rows[cells[0]] = cells
    return rows


@pytest.mark.slow
def test_dry_run_runs_every_step_and_writes_the_report(tmp_path):
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "gpucheckprobe", "1.0", "VALUE = 42\n")
    numpy_version = importlib.metadata.version("numpy")  # installed at this version: not needed
    make_wheel(wheels, "numpy", numpy_version, "raise ImportError('the carried numpy must not be installed')\n")
    result = gpu_check(tmp_path, "--wheels", str(wheels))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "out"
    report = (out / "gpu-check.md").read_text()
    for section in ("# GPU check: dry run", "## Machine", "## Steps", "## Tests", "## Ours vs peers"):
        assert section in report
    assert "Result: **PASS**" in report
    # Progress lines carry a timestamp and the elapsed seconds.
    assert re.search(r"^\[\d\d:\d\d:\d\d \+ *\d+s\] info: pass", result.stdout, re.M), result.stdout[:2000]

    rows = step_rows(report)
    assert sorted(rows) == sorted(STEPS)
    for name, cells in rows.items():
        assert cells[1] in ("pass", "skipped"), cells
        float(cells[2])  # seconds
    assert rows["bench-generate-compile"][1] == "skipped" and "needs a GPU" in rows["bench-generate-compile"][4]
    for name in ("info", "build-ext", "pytest-cuda", "bench-augment", "bench-loader", "bench-train", "bench-generate",
                 "bench-invert", "sd-model"):
        assert rows[name][1] == "pass", rows[name]

    # The carried wheel went into WORK/site; one already installed (numpy) did not.
    assert "installed 1 wheel(s)" in rows["wheels"][4] and "gpucheckprobe" in rows["wheels"][4]
    assert (tmp_path / "work" / "site" / "gpucheckprobe" / "__init__.py").exists()
    assert not (tmp_path / "work" / "site" / "numpy").exists()

    # Every CUDA test case was collected and skipped (no GPU here).
    counts = re.search(r"`pytest -m cuda`: 0 passed, 0 failed, 0 errors, (\d+) skipped \(of (\d+)\)", report)
    assert counts and counts.group(1) == counts.group(2) and int(counts.group(2)) > 0, report

    # The ratio table holds exactly the rows the benchmark scripts saved, with their ratios.
    saved = []
    for path in sorted((out / "results").glob("*/*.json")):
        saved += [(path.parent.name, row) for row in json.loads(path.read_text())["rows"]]
    assert {step for step, _ in saved} == {"bench-augment", "bench-loader", "bench-train", "bench-generate",
                                           "bench-invert"}
    table = report.split("## Ours vs peers", 1)[1]
    shown = sorted((step, ratio) for ratio, step in re.findall(r"\| ([0-9.]+)x \|  \| (bench-[a-z-]+) \|", table))
    assert shown == sorted((step, f"{row['ratio']:.2f}") for step, row in saved)

    machine = json.loads((out / "machine.json").read_text())
    assert machine["gpus"] == [] and machine["torch"]


def test_a_step_past_its_limit_is_cut_off_and_reported(tmp_path):
    result = gpu_check(tmp_path, "--only", "info,bench-augment", "--limit", "bench-augment=1", timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    report = (tmp_path / "out" / "gpu-check.md").read_text()
    rows = step_rows(report)
    assert sorted(rows) == ["bench-augment", "info"]
    assert rows["info"][1] == "pass"
    assert rows["bench-augment"][1] == "TIMEOUT" and float(rows["bench-augment"][2]) < 15
    assert "Result: **FAIL (bench-augment timeout)**" in report
    assert "### bench-augment: timeout" in report and "killed after the step's 1s limit" in report
    assert re.search(r"bench-augment: timeout", result.stdout)


def test_steps_past_the_budget_are_skipped_and_the_report_still_written(tmp_path):
    result = gpu_check(tmp_path, "--only", "info,pytest-cuda", "--budget", "0", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = step_rows((tmp_path / "out" / "gpu-check.md").read_text())
    assert rows["info"][1] == "skipped" and "out of time" in rows["info"][4]
    assert rows["pytest-cuda"][1] == "skipped"


@pytest.mark.parametrize("args, message", [
    (["--limit", "pytest-cuda"], "--limit needs STEP=SECONDS"),
    (["--only", "bench-everything"], "unknown step 'bench-everything'"),
    (["--budget", "soon"], "--budget must be a whole number"),
    (["--frobnicate"], "unknown argument '--frobnicate'"),
])
def test_bad_arguments_are_one_line_and_exit_code_2(tmp_path, args, message):
    result = gpu_check(tmp_path, *args, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_stopped_run_still_writes_its_report_and_ends_its_steps(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("PYTHONPATH", None)
    out = tmp_path / "out"
    proc = subprocess.Popen(["bash", str(SCRIPT), "--dry-run", "--out", str(out), "--work", str(tmp_path / "work"),
                             "--only", "info,pytest-cuda"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=tmp_path)
    for line in proc.stdout:
        if "pytest-cuda: start" in line:
            break
    proc.terminate()  # SIGTERM to the script while pytest runs
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 1, rest
    rows = step_rows((out / "gpu-check.md").read_text())
    assert rows["info"][1] == "pass"
    assert rows["pytest-cuda"][1] == "INTERRUPTED"
    assert "Result: **FAIL (pytest-cuda interrupted)**" in (out / "gpu-check.md").read_text()
    # The step's pytest (its command line names the junit file under OUT) was ended too.
    left = subprocess.run(["pgrep", "-f", str(out / "logs")], capture_output=True, text=True)
    assert left.stdout.strip() == ""
