"""Stable Diffusion generation: bridgedfast Generator vs stock diffusers StableDiffusionPipeline.

Same model, steps, guidance, scheduler (DPM-Solver++), prompts and dtype; each side at its best
batch from --batches (ours also writes every image into an ImageStore). Prints images/s, UNet
it/s (UNet calls per second of denoising; one call = one step of one batch, CFG halves
together) and the ratio ours/stock.

  python benchmarks/bench_generate.py                      # CPU: the tiny model, 32x32
  python benchmarks/bench_generate.py --device cuda        # GPU: SD-1.5-sized model, 512x512,
                                                           #   50 and 25 steps, every backend that runs
  python benchmarks/bench_generate.py --device cuda --model /path/to/stable-diffusion-v1-5
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Result, compare, save  # noqa: E402

CLASSES = ["airliner", "golden retriever", "daisy", "sports car", "pizza", "lighthouse", "tabby cat", "violin"]


def default_model(device: str, cache: Path) -> Path:
    from bridgedfast.testing import sd15_sized_stable_diffusion, tiny_stable_diffusion

    if device.startswith("cuda"):
        # The real SD 1.5 UNet/VAE/text-encoder configs with random weights: the same FLOPs.
        return sd15_sized_stable_diffusion(cache / "sd15-sized-random")
    return tiny_stable_diffusion(cache / "tiny-sd")


class StockRunner:
    """Stock diffusers: one `pipe(prompts, generator=[...])` call per batch."""

    def __init__(self, model: Path, device: str, dtype: torch.dtype):
        from diffusers import DPMSolverMultistepScheduler

        from bridgedfast.sd import load_pipeline

        # the keyword the installed diffusers takes (dtype or torch_dtype), safetensors, dtype checked
        self.pipe = load_pipeline(str(model), torch_dtype=dtype).to(device)
        self.pipe.scheduler = DPMSolverMultistepScheduler.from_config(self.pipe.scheduler.config)
        self.pipe.set_progress_bar_config(disable=True)
        self.device = device
        self.calls = 0
        unet_forward = self.pipe.unet.forward

        def counting_forward(*args, **kwargs):
            self.calls += 1
            return unet_forward(*args, **kwargs)

        self.pipe.unet.forward = counting_forward

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def run(self, images: int, batch: int, steps: int, guidance: float, size: int) -> tuple[float, float]:
        """(images/s, UNet it/s) for `images` images in batches of `batch`."""
        self.calls = 0
        denoise_end = []

        def on_step_end(pipe, i, t, kwargs):
            if i == pipe.num_timesteps - 1:
                self._sync()
                denoise_end.append(time.perf_counter())
            return kwargs

        denoise = 0.0
        self._sync()
        start = time.perf_counter()
        for s in range(0, images, batch):
            n = min(batch, images - s)
            prompts = [f"a photo of a {CLASSES[(s + k) % len(CLASSES)]}" for k in range(n)]
            gens = [torch.Generator("cpu").manual_seed(s + k) for k in range(n)]
            t0 = time.perf_counter()
            self.pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, height=size, width=size,
                      generator=gens, output_type="np", callback_on_step_end=on_step_end)
            denoise += denoise_end[-1] - t0
        self._sync()
        seconds = time.perf_counter() - start
        return images / seconds, self.calls / denoise


def run_ours(gen, images: int, batch: int | str, steps: int, guidance: float, size: int, workdir: Path):
    per_class = -(-images // len(CLASSES))
    out = workdir / f"ours-{time.monotonic_ns()}"
    report = gen.generate(CLASSES, per_class, out, steps=steps, guidance_scale=guidance, height=size, width=size,
                          batch_size=batch, progress=False)
    shutil.rmtree(out, ignore_errors=True)
    return report


def best(results: list[tuple[int | str, float, float]]) -> tuple[int | str, float, float]:
    return max(results, key=lambda r: r[1])


def bench(args: argparse.Namespace) -> list[dict]:
    from bridgedfast.optional import is_available
    from bridgedfast.generate import Generator
    from bridgedfast.devices import resolve_dtype

    device = args.device
    cuda = device.startswith("cuda")
    cache = Path(args.cache).expanduser()
    model = Path(args.model) if args.model else default_model(device, cache)
    dtype = resolve_dtype(args.dtype, torch.device(device))
    size = args.size or (512 if cuda else 32)
    steps_list = args.steps or ([50, 25] if cuda else [25])
    batches = args.batches or ([1, 4, 8, 16] if cuda else [1, 4, 16])
    ours_batches = [b if b == "auto" else int(b) for b in map(str, args.ours_batches or (["auto"] if cuda else batches))]
    backends = []
    for backend in args.backends or (["eager", "compile", "tensorrt"] if cuda else ["eager"]):
        if backend == "tensorrt" and not is_available("tensorrt"):
            print("tensorrt: not installed, skipped (pip install 'bridgedfast[tensorrt]')")
        elif backend != "eager" and not cuda:
            print(f"{backend}: needs CUDA, skipped")
        else:
            backends.append(backend)
    workdir = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    stock = StockRunner(model, device, dtype)
    gens = {name: Generator(model, backend=name, dtype=args.dtype, device=device, cache_dir=cache) for name in backends}
    rows = []
    for steps in steps_list:
        # Warm-ups: cuDNN autotuning, torch.compile / TensorRT engine builds at each grid batch.
        grid_batch = {}
        for b in batches:
            stock.run(b, b, steps, args.guidance, size)
        for name, gen in gens.items():
            for b in ours_batches:
                gb = gen.auto_batch_size(size, size, cfg=args.guidance > 1) if b == "auto" else b
                grid_batch[name, b] = run_ours(gen, gb, gb, steps, args.guidance, size, workdir).batch_size
        # Alternate the contenders over the repeats so that a busy machine penalises both alike.
        stock_results, ours_results = [], {name: [] for name in gens}
        for rep in range(args.repeats):
            for b in batches:
                ips, its = stock.run(max(b, args.images), b, steps, args.guidance, size)
                stock_results.append((b, ips, its))
                print(f"  [{rep}] stock diffusers      steps {steps} batch {b:>3}: {ips:8.2f} images/s  UNet {its:7.2f} it/s",
                      flush=True)
            for name, gen in gens.items():
                for b in ours_batches:
                    gb = grid_batch[name, b]
                    r = run_ours(gen, max(2 * gb, args.images), gb, steps, args.guidance, size, workdir)
                    ours_results[name].append((gb, r.images_per_s, r.unet_its))
                    print(f"  [{rep}] bridgedfast {name:<8} steps {steps} batch {gb:>3}: {r.images_per_s:8.2f} images/s  "
                          f"UNet {r.unet_its:7.2f} it/s", flush=True)
        sb, sips, sits = best(stock_results)
        peer = Result(f"diffusers StableDiffusionPipeline (batch {sb})", sips, extra=f"UNet {sits:.2f} it/s")
        title = f"generate {model.name} {size}x{size}, {steps} steps, cfg {args.guidance}, {str(dtype).replace('torch.', '')}"
        for name in gens:
            ob, oips, oits = best(ours_results[name])
            ours = Result(f"bridgedfast {name} (batch {ob})", oips, extra=f"UNet {oits:.2f} it/s")
            rows += compare(title, ours, [peer], device)
    shutil.rmtree(workdir, ignore_errors=True)
    return rows


# -- pytest-benchmark entry points (CPU, tiny model) ---------------------------------------------------
def _tiny(tmp_path_factory):
    from bridgedfast.testing import tiny_stable_diffusion

    return tiny_stable_diffusion(tmp_path_factory.getbasetemp() / "tiny-sd")


def test_generate_ours(benchmark, tmp_path_factory, tmp_path):
    from bridgedfast.generate import Generator

    gen = Generator(_tiny(tmp_path_factory), device="cpu")
    benchmark(lambda: run_ours(gen, 8, 8, 10, 7.5, 32, tmp_path))


def test_generate_stock(benchmark, tmp_path_factory):
    stock = StockRunner(_tiny(tmp_path_factory), "cpu", torch.float32)
    benchmark(lambda: stock.run(8, 8, 10, 7.5, 32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", help="a Stable Diffusion folder (default: tiny on CPU, SD-1.5-sized random on CUDA)")
    ap.add_argument("--dtype", default="auto", help="auto = fp16 on CUDA, fp32 on CPU")
    ap.add_argument("--size", type=int, help="image height and width (default 512 on CUDA, 32 on CPU)")
    ap.add_argument("--steps", type=int, nargs="+", help="sampling steps (default 50 25 on CUDA, 25 on CPU)")
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--batches", type=int, nargs="+", help="stock batch sizes to try (its best is reported)")
    ap.add_argument("--ours-batches", nargs="+", help="our batch sizes to try, or auto (default: auto on CUDA, "
                                                      "--batches on CPU)")
    ap.add_argument("--backends", nargs="+", choices=["eager", "compile", "tensorrt"])
    ap.add_argument("--images", type=int, default=32, help="images per timed run (at least two batches of ours)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per contender (best kept), interleaved")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default="~/.cache/bridgedfast", help="models built for the benchmark, TensorRT engines")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of a few seconds, not for quoting")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.images, args.repeats = [4], 8, 1
        args.batches, args.ours_batches = args.batches or [4], args.ours_batches or ["4"]
        args.backends = args.backends or ["eager"]
    torch.set_num_threads(args.threads)
    rows = bench(args)
    print("saved", save("generate", rows, args.device))


if __name__ == "__main__":
    main()
