"""Issue 11: the embedding stage on Ray Data, embeddings through the object store, a two-node cluster."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("size", [64, 96])  # 96: the 64-px slices are resized in the read tasks, finished in the actor
def test_ray_data_stage_gives_the_in_process_embeddings_and_quarantine(small_cohort, ray_session, tmp_path, size, caplog):
    import logging
    import re

    from trainables.embed import run_encoder
    from trainables.embed_ray import run_encoder_ray

    inst = small_cohort.instances.iloc[:150].reset_index(drop=True)
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"DICM not really")
    inst = pd.concat([inst.iloc[:70], pd.DataFrame([{**inst.iloc[0].to_dict(), "path": str(bad), "frame": 0}]),
                      inst.iloc[70:]], ignore_index=True)
    q_local, q_ray = {}, {}
    local = run_encoder(inst, "resnet18", "grayscale_norm", input_size=size, progress=False, quarantine=q_local)
    with caplog.at_level(logging.INFO, logger="sweeps.embed"):
        on_ray = run_encoder_ray(inst, "resnet18", "grayscale_norm", input_size=size, progress=False, quarantine=q_ray,
                                 read_parallelism=3)
    # the stage says how long it took and when its first embeddings came (the actors' start-up)
    said = re.search(r"ran on Ray Data: .*; ([0-9.]+) s, the first embeddings after ([0-9.]+) s", caplog.text)
    assert said and 0 < float(said.group(2)) <= float(said.group(1))
    assert q_local == q_ray and list(q_ray) == [70]
    assert local.shape == on_ray.shape == (150, 512)
    np.testing.assert_allclose(on_ray, local, rtol=0, atol=1e-5)


def test_the_encoder_actor_uses_every_cpu_of_its_node_as_the_in_process_model_does(ray_session):
    """Ray pins OMP_NUM_THREADS to an actor's 1 CPU; a 1-thread model ran the stage at a third of the
    in-process rate on 2 cores."""
    import ray

    from trainables.embed_ray import EncoderActor

    actor = ray.remote(num_cpus=1)(EncoderActor).remote("resnet18", "grayscale_norm", 64, None)

    def threads(_self):
        import torch

        return torch.get_num_threads()

    assert ray.get(actor.__ray_call__.remote(threads)) == 2  # the session's 2 CPUs
    ray.kill(actor)


def test_preprocessing_split_across_processes_is_the_batch_bit_for_bit():
    from trainables.encoders import Preprocessor, input_config

    rng = np.random.default_rng(0)
    imgs = [rng.random((64, 64), dtype=np.float32), rng.random((80, 70), dtype=np.float32)]
    for size in (64, 96):
        pre = Preprocessor("grayscale_norm+imagenet_norm", input_config("resnet18", size))
        x = pre.resize(pre.slices(imgs))  # what the read tasks send: (B, 1, S, S)
        assert tuple(x.shape) == (2, 1, size, size)
        assert pre.finish(x).equal(pre.batch(pre.slices(imgs)))


def test_ray_data_stage_raises_naming_the_file_without_quarantine(small_cohort, ray_session, tmp_path):
    from trainables.data.images import ImageReadError
    from trainables.embed_ray import run_encoder_ray

    bad = tmp_path / "empty.dcm"
    bad.write_bytes(b"")
    inst = pd.concat([small_cohort.instances.iloc[:4], pd.DataFrame([{**small_cohort.instances.iloc[0].to_dict(),
                                                                        "path": str(bad), "frame": 0}])], ignore_index=True)
    with pytest.raises(ImageReadError, match="empty.dcm"):
        run_encoder_ray(inst, "resnet18", "grayscale_norm", input_size=64, progress=False)


def test_auto_engine_keeps_the_in_process_path_for_light_slices_on_one_node(small_cohort, ray_session):
    from trainables.embed import read_cost
    from trainables.embed_ray import HEAVY_READ_S, worth_it

    assert not worth_it(100_000).ray  # nothing sampled: the path measured faster on one node
    took = read_cost(small_cohort.instances, "resnet18", "grayscale_norm")
    assert 0 < took < HEAVY_READ_S  # 64-px uncompressed slices: under a millisecond here
    engine = worth_it(100_000, lambda: took)
    assert not engine.ray and "one node, 2 CPUs" in engine.why and "ms to read and preprocess a slice" in engine.why


def test_read_cost_skips_unreadable_slices(small_cohort, tmp_path):
    from trainables.embed import read_cost

    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"DICM not really")
    inst = small_cohort.instances.iloc[:9].reset_index(drop=True).copy()
    inst.loc[[0, 4], "path"] = str(bad)  # two of the nine picks unreadable: the others are timed
    assert 0 < read_cost(inst, "resnet18", "grayscale_norm", k=8) < 0.1
    inst["path"] = str(bad)
    assert read_cost(inst, "resnet18", "grayscale_norm") == 0.0  # nothing readable: nothing to time
    assert read_cost(inst.iloc[:0], "resnet18", "grayscale_norm") == 0.0


def test_choose_runs_ray_data_on_one_node_only_where_reading_is_heavy_and_long():
    from trainables.embed_ray import HEAVY_READ_S, READER_BYTES, STARTUP_S, choose

    heavy = 4 * HEAVY_READ_S
    assert choose(2, 4, 0, 10, None).ray  # several nodes: reading spreads over the cluster, whatever it costs
    assert not choose(1, 16, 1, 10**6, None).ray  # one node, reading not sampled
    assert not choose(1, 16, 1, 10**6, HEAVY_READ_S / 2).ray  # light slices: one reader thread keeps up
    assert not choose(1, 1, 0, 10**6, heavy).ray  # one CPU: nothing to read in parallel
    n_even = 2 * STARTUP_S / (heavy * (1 - 1 / 16))  # where the reading saved is twice the start-up
    small, large = choose(1, 16, 1, int(n_even * 0.9), heavy), choose(1, 16, 1, int(n_even * 1.1) + 1, heavy)
    assert not small.ray and "start-up" in small.why
    assert large.ray and large.readers == 16 and "16 parallel readers" in large.why
    # blocks of about a second of reading each (at least MIN_BLOCK, at most READ_BATCH slices)
    assert large.blocks == -(-int(n_even * 1.1 + 1) // int(1.0 / heavy))
    cpu = choose(1, 2, 0, 10**5, 0.04)  # this machine's 512-px JPEG 2000 slices: two readers beside the CPU actor
    assert cpu.ray and cpu.readers == 2
    # a read worker holds about 420 MB of its own: at most half the node's free memory goes to readers
    assert choose(1, 64, 1, 10**6, heavy, free_bytes=8 * READER_BYTES).readers == 4
    assert not choose(1, 64, 1, 10**6, heavy, free_bytes=3 * READER_BYTES).ray


def test_auto_engine_reads_heavy_slices_on_ray_data_with_a_reader_per_cpu(ray_session, tmp_path, monkeypatch, caplog):
    """512-px JPEG 2000 slices take tens of ms each to decode: on one node of 2 CPUs the auto engine runs
    Ray Data with two readers and gives the in-process path's embeddings. (The cohort is small, so the
    start-up it is weighed against is lowered here; ``choose``'s own test covers that rule.)"""
    import logging

    from trainables import embed_ray
    from trainables.data import synthetic
    from trainables.embed import embed_cohort

    cohort = synthetic.load(tmp_path / "c", seed=0, n_patients=2, size=512, compression="jpeg2000")
    monkeypatch.setattr(embed_ray, "STARTUP_S", 0.2)
    with caplog.at_level(logging.INFO, logger="sweeps.embed"):
        auto = embed_cohort(cohort, "resnet18", cache_root=tmp_path / "auto", progress=False)
    assert "embedding stage: Ray Data path (one node, 2 CPUs" in caplog.text
    assert re.search(r"ran on Ray Data: \d+ read blocks, 2 at a time", caplog.text)
    assert auto.meta["engine"] == "ray"
    local = embed_cohort(cohort, "resnet18", cache_root=tmp_path / "local", progress=False, engine="local")
    assert local.meta["engine"] == "local"
    np.testing.assert_allclose(auto.embeddings, local.embeddings, rtol=0, atol=1e-5)


def test_trials_read_shared_bags_read_only_from_the_object_store(small_cohort, ray_session, tmp_path):
    import ray

    from trainables.embed import embed_cohort
    from trainables.trainable import DataHandle, share_bags, trial_data

    entry = embed_cohort(small_cohort, "resnet18", "grayscale_norm", cache_root=tmp_path / "cache", progress=False,
                         engine="local")
    s = small_cohort.samples
    handle = DataHandle(sample_ids=s["sample_id"].tolist(), y=np.zeros(len(s), int), groups=s["patient_id"].to_numpy(),
                        class_names=("a", "b"), modalities=small_cohort.modalities, tabular=None,
                        entries={"resnet18|grayscale_norm": str(entry.path)}, metric="f1_macro", mode="max", folds=5,
                        seed=0, arms={})
    share_bags(handle)
    os.rename(entry.path, tmp_path / "moved")  # the trial must not need the driver's files

    @ray.remote
    def in_a_worker(h):
        data = trial_data(h, "resnet18", "grayscale_norm")
        X, mask = next(iter(data.bags.values()))
        return X.shape, bool(X.flags.writeable), float(X.sum())

    shape, writeable, total = ray.get(in_a_worker.remote(handle))
    assert shape[0] == len(s) and not writeable and total != 0.0


def _tables(report: Path) -> str:
    """The report without its title, timestamps, timings and run names: what two equal sweeps share."""
    text = report.read_text()
    text = re.sub(r"^# Sweep report: .*$", "", text, flags=re.M)
    text = re.sub(r"Started .*?report written [0-9: -]+\.", "", text)
    text = re.sub(r"## Reproduce this run.*?(?=^## |\Z)", "", text, flags=re.S | re.M)  # names the address
    text = re.sub(r"\b[0-9a-f]{8}\b", "TRIAL", text)  # Tune's random trial ids
    return "\n".join(line for line in text.splitlines() if "versions" not in line.lower())


def test_two_node_cluster_runs_trials_on_the_second_node_without_the_driver_cache(smoke_embeddings, ray_session,
                                                                                   tmp_path, monkeypatch):
    """A head with 1 CPU and a worker node with 2: trials asking for 2 CPUs can only run on the worker
    node. The driver's embedding cache is moved away once the embedding stage is done: the trials read
    the object store, and the report equals a single-node run's (here, in the tests' one-node session)."""
    import shutil

    from sweeps import runner

    monkeypatch.setenv("SWEEPS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("SWEEPS_REPORTS", str(tmp_path / "reports"))
    # single node, 2 CPUs per trial as below, so torch uses as many threads and sums in the same order
    runner.run("quickstart", smoke_test=True, concurrency=1, cpus_per_trial=2, name="one_node", progress=False,
               test_fraction=0.0)  # no held-out refit on the driver: this test is about the trials
    home = tmp_path / "home"  # the two-node driver's own home: the session's cohort and cache, hard-linked
    for part in ("data", "cache"):
        shutil.copytree(smoke_embeddings / part, home / part, copy_function=os.link)
    env = {**os.environ, "SWEEPS_HOME": str(home), "SWEEPS_RUNS": str(home / "runs"),
           "SWEEPS_REPORTS": str(tmp_path / "reports"), "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    script = tmp_path / "two_node.py"
    script.write_text(TWO_NODE)
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["moved"] and out["trials_done"] == 2
    reports = tmp_path / "reports"
    assert _tables(reports / "two_node" / "report.md") == _tables(reports / "one_node" / "report.md")


TWO_NODE = r'''
import json, os, shutil, sys
from pathlib import Path
from ray.cluster_utils import Cluster
import sweeps.runner as runner

home = Path(os.environ["SWEEPS_HOME"])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
cluster.add_node(num_cpus=2)
cluster.wait_for_nodes()
real = runner.share
moved = []

def share_then_move_cache(*a, **kw):  # once the embeddings are in the object store, the driver's files go
    out = real(*a, **kw)
    shutil.move(str(home / "cache"), str(home / "cache-moved-away"))
    moved.append(True)
    return out

runner.share = share_then_move_cache
run = runner.run("quickstart", smoke_test=True, concurrency=1, cpus_per_trial=2, address=cluster.address,
                 name="two_node", progress=False, test_fraction=0.0)
done = sum(1 for d in (home / "runs" / "two_node").glob("trial_*") if list(d.glob("checkpoint_*/metrics.json")))
import ray
ray.shutdown()
cluster.shutdown()
print(json.dumps({"moved": bool(moved), "trials_done": done}))
'''
