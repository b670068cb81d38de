"""GPU checks, for a machine with a CUDA GPU: prints ``RESULT <name> <value>`` lines.

Run from the repository root on the GPU machine (see README "GPU figures"):

    PYTHONPATH=$PWD python benchmarks/bench_gpu.py --out /tmp/gpu

Parts, each timed in the same process/run so ratios compare like with like:

1. ``embed_*``: the platform's embedding stage with resnet50 at 224 px, both ways it can run: in
   process (``trainables.embed.run_encoder``: one reader thread beside the model) and on Ray Data
   (``trainables.embed_ray``: reading and decoding in parallel tasks, the encoder in GPU actors),
   against a bare torch loop (bf16 autocast, channels_last, inference_mode) over tensors already on
   the GPU: the bare loop is the ceiling, the ratios show what reading and preprocessing cost.
2. ``frac_*``: the same quickstart sweep (8 trials) twice through Ray Tune on the GPU: four trials at
   a time with 0.25 GPU each, then one trial at a time with the whole GPU. Prints the trials-phase wall
   time of each, the largest number of trials that ran at once (from their own start/end times), and
   whether they trained on CUDA.
3. ``heavy_*``: slices heavy to decode (``--heavy-patients`` patients of 512-px JPEG 2000, generated
   in the run): what the auto engine chooses on this node, and the Ray Data stage as it chose (a
   reader per CPU) against the in-process stage, resnet50 at 224 px, images/s.
4. ``finetune_step_*``: one fine-tuning optimisation step of resnet50 at 224 px (bf16 autocast,
   batch 32 slices, AdamW), images per second.

Every part is independent: one failing prints ``RESULT <name> failed`` and the rest still run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def result(name: str, value) -> None:
    print(f"RESULT {name} {value}", flush=True)


def part(fn):
    def wrapped(*a, **k):
        t = time.perf_counter()
        try:
            fn(*a, **k)
        except Exception:  # noqa: BLE001 - a benchmark part reports and the others go on
            traceback.print_exc()
            result(f"{fn.__name__}", "failed")
        print(f"# {fn.__name__}: {time.perf_counter() - t:.1f} s", flush=True)

    return wrapped


@part
def env() -> None:
    import torch

    result("torch", torch.__version__)
    result("gpu", torch.cuda.get_device_name(0).replace(" ", "_") if torch.cuda.is_available() else "none")


@part
def embed(cohort_dir: Path, n_images: int, device: str = "cuda") -> None:
    import ray
    import timm
    import torch

    from trainables.data import synthetic
    from trainables.embed import run_encoder
    from trainables.embed_ray import run_encoder_ray

    cohort = synthetic.load(cohort_dir)
    inst = cohort.instances.iloc[:n_images].reset_index(drop=True)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    run_encoder(inst.iloc[:256], "resnet50", "grayscale_norm", input_size=224, batch_size=128, device=device, progress=False)
    sync()
    t = time.perf_counter()
    local = run_encoder(inst, "resnet50", "grayscale_norm", input_size=224, batch_size=256, device=device, progress=False)
    sync()
    ours = len(local) / (time.perf_counter() - t)
    result("embed_inprocess_img_per_s", f"{ours:.0f}")

    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        run_encoder_ray(inst.iloc[:512], "resnet50", "grayscale_norm", input_size=224, batch_size=256, progress=False)
        t = time.perf_counter()
        on_ray = run_encoder_ray(inst, "resnet50", "grayscale_norm", input_size=224, batch_size=256, progress=False)
        ray_rate = len(on_ray) / (time.perf_counter() - t)
    finally:
        ray.shutdown()
    result("embed_raydata_img_per_s", f"{ray_rate:.0f}")
    result("embed_raydata_max_abs_diff", f"{float(abs(on_ray - local).max()):.2e}")

    model = timm.create_model("resnet50", num_classes=0).to(device).eval().to(memory_format=torch.channels_last)
    x = torch.randn(256, 3, 224, 224, device=device).to(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16):
        for _ in range(3):
            model(x)
        sync()
        t = time.perf_counter()
        reps = max(4, n_images // 256)
        for _ in range(reps):
            model(x)
        sync()
    bare = reps * 256 / (time.perf_counter() - t)
    result("embed_bare_bf16_img_per_s", f"{bare:.0f}")
    result("embed_inprocess_over_bare", f"{ours / bare:.3f}")
    result("embed_raydata_over_bare", f"{ray_rate / bare:.3f}")
    result("embed_raydata_over_inprocess", f"{ray_rate / ours:.2f}")
    result("embed_n_images", len(local))


@part
def heavy(out: Path, patients: int, device: str = "cuda") -> None:
    """Slices heavy to decode (512-px JPEG 2000): the auto engine's choice on this node, and the Ray Data
    stage as it chose (a reader per CPU) against the in-process stage's one reader thread, resnet50 at
    224 px, images/s."""
    import ray

    from trainables.data import synthetic
    from trainables.embed import read_cost, run_encoder
    from trainables.embed_ray import run_encoder_ray, worth_it

    t = time.perf_counter()
    cohort = synthetic.load(out / "heavy", seed=0, n_patients=patients, size=512, compression="jpeg2000")
    inst = cohort.instances
    print(f"# heavy cohort: {len(inst)} slices of 512 px, JPEG 2000, ready in {time.perf_counter() - t:.0f} s", flush=True)
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        took = read_cost(inst, "resnet50", "grayscale_norm", 224)
        engine = worth_it(len(inst), lambda: took)
        print(f"# auto engine: {engine}", flush=True)
        result("heavy_read_ms", f"{took * 1000:.1f}")
        result("heavy_auto", "ray" if engine.ray else "in-process")
        run_encoder_ray(inst.iloc[:256], "resnet50", "grayscale_norm", input_size=224, progress=False,
                        readers=engine.readers)
        t = time.perf_counter()
        run_encoder_ray(inst, "resnet50", "grayscale_norm", input_size=224, batch_size=256, progress=False,
                        readers=engine.readers, read_parallelism=engine.blocks)
        ray_rate = len(inst) / (time.perf_counter() - t)
    finally:
        ray.shutdown()
    run_encoder(inst.iloc[:64], "resnet50", "grayscale_norm", input_size=224, device=device, progress=False)
    t = time.perf_counter()
    run_encoder(inst, "resnet50", "grayscale_norm", input_size=224, batch_size=256, device=device, progress=False)
    local_rate = len(inst) / (time.perf_counter() - t)
    result("heavy_raydata_img_per_s", f"{ray_rate:.0f}")
    result("heavy_inprocess_img_per_s", f"{local_rate:.0f}")
    result("heavy_raydata_over_inprocess", f"{ray_rate / local_rate:.2f}")


def _trial_spans(run_dir: Path) -> list[tuple[float, float]]:
    spans = []
    for d in sorted(run_dir.glob("trial_*")):
        rows = [json.loads(x) for x in (d / "result.json").read_text().splitlines() if x.strip()] if (d / "result.json").exists() else []
        if not rows:
            continue
        last = rows[-1]
        end = float(last["timestamp"])
        start = end - float(last["time_total_s"])
        spans.append((start, end))
    return spans


def _max_overlap(spans, slack: float = 1.5) -> int:
    """Most trials running at once; each span shrunk by ``slack`` s at both ends (Tune's timestamps are
    whole seconds, and a trial's actor starts as the previous one reports its end)."""
    spans = [(s + slack, e - slack) for s, e in spans if e - s > 2 * slack]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def _gpu_processes_poller(stop, seen: list[int]) -> None:
    """Every 0.5 s, how many processes hold a CUDA context (nvidia-smi), appended to ``seen``."""
    while not stop.is_set():
        try:
            out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10).stdout
            seen.append(len([x for x in out.splitlines() if x.strip()]))
        except (OSError, subprocess.SubprocessError):
            seen.append(-1)
        stop.wait(0.5)


@part
def fractional(home: Path, trials: int) -> None:
    env_ = {**os.environ, "SWEEPS_HOME": str(home), "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    # a local head that declares the GPU, joined with --address (the dashboard's extra packages are not needed)
    ray_bin = [sys.executable, "-m", "ray.scripts.scripts"]
    subprocess.run([*ray_bin, "start", "--head", "--num-gpus", "1", "--include-dashboard=false", "--disable-usage-stats"],
                   env=env_, check=True, capture_output=True, timeout=120)
    try:
        _fractional_runs(home, trials, env_)
    finally:
        subprocess.run([*ray_bin, "stop", "--force"], env=env_, capture_output=True, timeout=120)


def _fractional_runs(home: Path, trials: int, env_: dict) -> None:
    import threading

    for label, conc, gpus in (("frac4x025", 4, 0.25), ("frac1x1", 1, 1.0)):
        cmd = [sys.executable, "-m", "sweeps", "run", "quickstart", "--trials", str(trials), "--concurrency", str(conc),
               "--gpus-per-trial", str(gpus), "--cpus-per-trial", "2", "--name", label, "--no-progress", "--address", "auto"]
        stop, seen = threading.Event(), []
        poller = threading.Thread(target=_gpu_processes_poller, args=(stop, seen), daemon=True)
        poller.start()
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env_, capture_output=True, text=True, timeout=900)
        wall = time.perf_counter() - t
        stop.set()
        poller.join()
        result(f"{label}_max_gpu_processes", max(seen) if seen else -1)
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            result(f"{label}_rc", proc.returncode)
            continue
        spans = _trial_spans(home / "runs" / label)
        phase = max(e for _, e in spans) - min(s for s, _ in spans)
        result(f"{label}_command_s", f"{wall:.1f}")
        result(f"{label}_trials_phase_s", f"{phase:.1f}")
        result(f"{label}_trials_done", len(spans))
        result(f"{label}_max_concurrent", _max_overlap(spans))
        result(f"{label}_mean_trial_s", f"{sum(e - s for s, e in spans) / len(spans):.1f}")


@part
def finetune_step() -> None:
    import timm
    import torch

    model = timm.create_model("resnet50", num_classes=3).cuda().train().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(32, 3, 224, 224, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, 3, (32,), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    n = 20
    for _ in range(n):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / n
    result("finetune_step_ms", f"{dt * 1000:.1f}")
    result("finetune_step_img_per_s", f"{32 / dt:.0f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/bench_gpu")
    ap.add_argument("--images", type=int, default=8192, help="slices embedded in the embedding part")
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--skip", nargs="*", default=[], choices=["embed", "heavy", "fractional", "finetune"])
    ap.add_argument("--heavy-patients", type=int, default=20, help="patients of 512-px JPEG 2000 in the heavy part")
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the embedding part on a machine without a GPU")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    home = out / "home"
    env()
    from trainables.data import synthetic

    t = time.perf_counter()
    os.environ["SWEEPS_HOME"] = str(home)  # the sweeps below reuse this cohort (and its embeddings)
    cohort_dir = synthetic.ensure(seed=0)
    print(f"# cohort ready in {time.perf_counter() - t:.1f} s", flush=True)
    if "embed" not in a.skip:
        embed(cohort_dir, a.images, a.device)
    if "heavy" not in a.skip:
        heavy(out, a.heavy_patients, a.device)
    if "finetune" not in a.skip:
        finetune_step()
    if "fractional" not in a.skip:
        fractional(home, a.trials)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
