"""Images/s of the embed stage against a bare torch inference loop on the same model, same process.

- bare: ``trainables.encoders.create_encoder("resnet18", 64)`` in channels_last, fed pre-made random
  float tensors (B, 3, 64, 64) channels_last under ``torch.inference_mode``: model forward only.
- ours: ``trainables.embed.run_encoder(cohort.instances, "resnet18", "grayscale_norm", input_size=64,
  batch_size=B, progress=False)`` on a synthetic cohort: model creation, DICOM decoding (pydicom,
  modality LUT), preprocessing (robust min-max, resize check, stacking) on the background loader
  thread, and the same forward passes.

Same number of images (the cohort's instance count, in batches of B with the same last partial
batch), same input size, batch size and torch thread count, on the same machine in the same process.
The synthetic cohort is generated beforehand into a temporary folder (excluded; its files are then
in the OS page cache, as on any second read). One untimed warm-up of each, then the two are
alternated (bare, ours, bare, ours, ...) and the medians compared. Target: ours/bare >= 0.80.
``--profile`` adds a serial, single-threaded-loader breakdown of ours by stage.

Run (from anywhere; about 2-5 minutes on 2 cores at the defaults)::

    /work/venv/bin/python /work/main/benchmarks/bench_embed.py            # 60 patients, batch 128, 5 repeats
    /work/venv/bin/python /work/main/benchmarks/bench_embed.py --smoke    # 8 patients: checks the script

Flags: ``--patients`` (60), ``--batch`` (128), ``--repeats`` (5, at least 3), ``--threads`` (torch
threads, default torch's own default), ``--profile``, ``--smoke``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ["HF_HUB_OFFLINE"] = "1"

ENCODER, PREPROCESSING, SIZE = "resnet18", "grayscale_norm", 64
TARGET = 0.80


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--patients", type=int, default=60)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    p.add_argument("--profile", action="store_true", help="also time ours stage by stage, serially")
    p.add_argument("--smoke", action="store_true", help="8 patients: check that the script works")
    a = p.parse_args(argv)
    if a.smoke:
        a.patients = 8
    a.repeats = max(3, a.repeats)
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    import torch

    from trainables.data import synthetic
    from trainables.data.images import read_slice
    from trainables.embed import run_encoder
    from trainables.encoders import Preprocessor, create_encoder

    if a.threads:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    tmp = Path(tempfile.mkdtemp(prefix="bench_embed_"))
    try:
        t0 = time.perf_counter()
        cohort = synthetic.load(tmp / "cohort", n_patients=a.patients)  # generated here (excluded)
        gen_s = time.perf_counter() - t0
        inst = cohort.instances
        n = len(inst)
        sizes = [min(a.batch, n - s) for s in range(0, n, a.batch)]

        model, dim = create_encoder(ENCODER, SIZE)
        model = model.to(memory_format=torch.channels_last)
        gen = torch.Generator().manual_seed(0)
        xs = [torch.rand(b, 3, SIZE, SIZE, generator=gen).contiguous(memory_format=torch.channels_last) for b in sizes]

        def bare() -> tuple[float, float]:
            t, c = time.perf_counter(), time.process_time()
            with torch.inference_mode():
                for x in xs:
                    model(x)
            wall = time.perf_counter() - t
            return n / wall, (time.process_time() - c) / wall

        def ours() -> tuple[float, float]:
            t, c = time.perf_counter(), time.process_time()
            emb = run_encoder(inst, ENCODER, PREPROCESSING, input_size=SIZE, batch_size=a.batch, progress=False)
            wall = time.perf_counter() - t
            assert emb.shape == (n, dim)
            return n / wall, (time.process_time() - c) / wall

        # untimed warm-up of both (allocator, oneDNN primitives, lazy imports, file cache)
        with torch.inference_mode():
            model(xs[0])
        run_encoder(inst.head(min(n, a.batch)), ENCODER, PREPROCESSING, input_size=SIZE, batch_size=a.batch,
                    progress=False)

        rb, ro = [], []
        for _ in range(a.repeats):
            rb.append(bare())
            ro.append(ours())

        prof = None
        if a.profile:  # serial stage breakdown of ours (one thread does everything, so stages add up)
            pre = Preprocessor(PREPROCESSING, SIZE)
            paths, frames = inst["path"].tolist(), inst["frame"].tolist()
            t = time.perf_counter()
            m2, _ = create_encoder(ENCODER, SIZE)
            t_create = time.perf_counter() - t
            t = time.perf_counter()
            raw = [read_slice(p, f) for p, f in zip(paths, frames)]
            t_read = time.perf_counter() - t
            t = time.perf_counter()
            sl = [pre.slice(r) for r in raw]
            t_slice = time.perf_counter() - t
            t = time.perf_counter()
            bs = [pre.batch(sl[s:s + a.batch]) for s in range(0, n, a.batch)]
            t_batch = time.perf_counter() - t
            t = time.perf_counter()
            with torch.inference_mode():
                for x in bs:
                    model(x)
            t_model = time.perf_counter() - t
            prof = {"create_encoder": t_create, "read_slice (DICOM decode + LUT)": t_read,
                    "Preprocessor.slice (grayscale_norm)": t_slice, "Preprocessor.batch (resize/stack)": t_batch,
                    "model forward": t_model}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    mb, mo = statistics.median(r for r, _ in rb), statistics.median(r for r, _ in ro)
    print(f"bench_embed: encoder {ENCODER}, input {SIZE}x{SIZE}, batch {a.batch}, torch threads {threads}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}, device cpu")
    print(f"cohort: synthetic, {cohort.samples['patient_id'].nunique()} patients, {n} images (64x64 16-bit DICOM), "
          f"{len(sizes)} batches (generated beforehand in {gen_s:.1f}s, excluded)")
    print(f"repeats: {a.repeats} each, alternated bare/ours after one untimed warm-up of each")
    print(f"bare images/s: {' '.join(f'{r:.0f}' for r, _ in rb)}  (median {mb:.0f})")
    print(f"ours images/s: {' '.join(f'{r:.0f}' for r, _ in ro)}  (median {mo:.0f})")
    print(f"cores used by this process (CPU s / wall s; at most {threads} for bare if nothing else ran, ours adds a "
          f"loader thread): bare {' '.join(f'{u:.2f}' for _, u in rb)}, ours {' '.join(f'{u:.2f}' for _, u in ro)}")
    if prof:
        tot = sum(prof.values())
        print(f"profile of ours, serial, {n} images ({tot:.2f}s total):")
        for k, v in prof.items():
            print(f"  {k:<38} {v:7.2f}s  {1e3 * v / n:6.3f} ms/img  {100 * v / tot:5.1f}%")
    print(f"ratio ours/bare: {mo / mb:.2f} (target >= {TARGET:.2f}: {'met' if mo / mb >= TARGET else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
