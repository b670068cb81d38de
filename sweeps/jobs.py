"""``run ... --dashboard`` / ``resume ... --dashboard``: the sweep's driver as a Ray job, so that
Ray's dashboard shows its log on the job's page.

Without ``--address`` a local Ray instance is started here (every listener on loopback, the dashboard
on ``--dashboard-host``, as ``sweeps.runner.start_ray`` starts one) and stopped when the command
ends; with ``--address`` the job goes to that cluster (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``;
the dashboard's URL is found from it). The job's entrypoint is the same command minus
``--dashboard`` (``python -m sweeps run ...`` with this interpreter, in this folder: the package must
be importable where the job runs, as it is on this machine); ``sweeps.runner.start_ray`` in the job
joins the cluster it was submitted to. Its log is streamed to this terminal and the command exits with the
driver's exit status (0, 2 for bad input, 130 when interrupted). Ctrl-C asks Ray to stop the job
with SIGINT, which the driver takes as its own Ctrl-C (Tune saves its state, the partial report is
written, ``resume`` continues the run); a second Ctrl-C leaves at once.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time

from .runner import JOB_ADDRESS_ENV  # the cluster the job's driver joins (runner.start_ray)

FLAG = "--dashboard"
# what the driver needs from this shell besides its arguments (the job's workers get them too)
FORWARD_PREFIXES = ("SWEEPS_", "HF_", "TUNE_", "RAY_AIR_", "TRANSFORMERS_")
FORWARD_NAMES = ("PYTHONPATH",)
# Ray stops a job with this signal, then SIGKILL after the wait: SIGINT is the driver's Ctrl-C,
# and the wait leaves time to save Tune's state and write the partial report
STOP_ENV = {"RAY_JOB_STOP_SIGNAL": "SIGINT", "RAY_JOB_STOP_WAIT_TIME_S": "120"}


def driver_args(args: list[str]) -> list[str]:
    """The job's ``python -m sweeps`` arguments: ``args`` (as typed after ``python -m sweeps``) minus
    ``--dashboard``."""
    return [tok for tok in args if tok != FLAG]


def entrypoint(args: list[str], cwd: str | None = None, python: str | None = None) -> str:
    """The job's shell command: this interpreter running ``python -m sweeps ARGS`` in ``cwd``."""
    cmd = [python or sys.executable, "-m", "sweeps", *args]
    return f"cd {shlex.quote(cwd or os.getcwd())} && exec {shlex.join(cmd)}"


def forwarded_env(environ: dict | None = None) -> dict[str, str]:
    """The variables the job gets from this shell (``FORWARD_*``) plus Ray's stop settings."""
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items()
           if (k in FORWARD_NAMES or k.startswith(FORWARD_PREFIXES)) and k != JOB_ADDRESS_ENV}
    return {**env, **STOP_ENV}


def submission_id(label: str) -> str:
    """``sweeps-<label>-<time>`` (label: the command and its space or run, a space path by its file
    name): readable in the dashboard's job list, unique per second."""
    label = "-".join(os.path.splitext(os.path.basename(w))[0] or w for w in label.split())
    return f"sweeps-{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)[:60]}-{time.strftime('%Y%m%d-%H%M%S')}"


def precheck(a) -> None:
    """What can be refused before Ray starts (a clear error, exit 2): an unknown space for ``run``,
    an unknown run for ``resume``, an unreachable cluster ``--address``. The rest the job's driver checks."""
    from .runner import check_address, no_run_message, runs_root

    if a.command == "run":
        from .spec import load_space

        load_space(a.space)
    elif a.command == "resume" and not (runs_root() / a.run / "sweep.json").exists():
        raise FileNotFoundError(no_run_message(a.run))
    if a.address and a.address.startswith(("http://", "https://")):
        from .runner import ResourceError

        raise ResourceError(f"--address {a.address}: with --dashboard give the cluster's address (HOST:PORT of its "
                            "head, auto, or ray://HOST:10001), not its dashboard's URL: the sweep's driver joins that "
                            "cluster, and a resumed run joins it again")
    if a.address:
        check_address(a.address)


def _client(address: str | None, dashboard_host: str):
    """``(JobSubmissionClient, started, cluster address)`` for ``address``, or for a local Ray instance
    started here (``started`` True: the caller stops it). The cluster address (GCS ``HOST:PORT``; None
    for ``auto`` and ``ray://``, which the driver resolves itself from its ``--address``) is handed to
    the job's driver (``JOB_ADDRESS_ENV``): Ray's own pick for a job's driver, when several Ray
    instances run on one machine, may be another one."""
    from ray.job_submission import JobSubmissionClient

    if address:
        from contextlib import nullcontext

        from .runner import loopback_node

        host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
        # Ray turns a loopback address into this machine's routable IP, where a loopback-bound cluster is not
        with loopback_node() if host in ("127.0.0.1", "localhost", "::1") else nullcontext():
            client = JobSubmissionClient(address)
        return client, False, None if address == "auto" or "://" in address else address
    import ray

    from .runner import start_ray

    ctx = start_ray(None, dashboard_host, None)
    gcs = ray.get_runtime_context().gcs_address
    if ctx is None:  # this process already runs Ray: submit there
        return JobSubmissionClient(gcs), False, gcs
    return JobSubmissionClient(f"http://{ctx.dashboard_url}"), True, gcs


def run_as_job(args: list[str], *, label: str = "sweep", address: str | None = None,
               dashboard_host: str = "127.0.0.1", out=None) -> int:
    """Submit ``python -m sweeps ARGS`` (``args`` as typed, ``--dashboard`` is dropped) as a Ray job,
    stream its log to ``out`` (stdout) and return the driver's exit status. A Ray instance started
    here is stopped before returning, whatever happens."""
    import logging

    logging.getLogger("ray.dashboard").setLevel(logging.WARNING)  # not Ray's "WebSocket closed" chatter
    out = out or sys.stdout
    started = False
    try:
        client, started, cluster = _client(address, dashboard_host)
        env = {**forwarded_env(), **({JOB_ADDRESS_ENV: cluster} if cluster else {})}
        job = _submit(client, entrypoint=entrypoint(driver_args(args)), submission_id=submission_id(label),
                      runtime_env={"env_vars": env})
        print(f"Ray job {job}: its log is on the dashboard at {client.get_address()}/#/jobs/{job}", file=sys.stderr,
              flush=True)
        presses = _follow(client, job, out)
        return _exit_status(client, job, presses)
    finally:
        if started:
            import ray

            ray.shutdown()


AGENT_WAIT_S = 120  # a Ray just started takes a while (longer on a busy machine) to start its job agent


def _submit(client, **job) -> str:
    """``client.submit_job(**job)``, retried while the head node's job agent is not up yet."""
    deadline = time.time() + AGENT_WAIT_S
    while True:
        try:
            return client.submit_job(**job)
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.time() > deadline:
                raise
            time.sleep(1)


def _follow(client, job: str, out) -> int:
    """Stream the job's log until it ends; the number of Ctrl-C presses (1: stop asked, 2: left)."""
    import asyncio
    import signal
    import threading

    presses = 0

    async def tail():
        written = 0
        try:
            async for lines in client.tail_job_logs(job):
                out.write(lines)
                out.flush()
                written += len(lines)
        except Exception as exc:  # noqa: BLE001 - the log stream broke off (Ray: RuntimeError; aiohttp errors)
            print(f"(the job's log stream broke off: {exc}; the rest comes when the job ends)", file=sys.stderr)
            while not client.get_job_status(job).is_terminal():
                await asyncio.sleep(1)
            out.write(client.get_job_logs(job)[written:])
            out.flush()

    async def main():
        nonlocal presses
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(tail())

        def on_sigint():
            nonlocal presses
            presses += 1
            if presses == 1:
                print(f"\nstopping Ray job {job} (the sweep saves its state and writes its partial report; "
                      "Ctrl-C again to leave now)", file=sys.stderr, flush=True)
                loop.run_in_executor(None, client.stop_job, job)
            else:
                task.cancel()

        handle = threading.current_thread() is threading.main_thread()
        if handle:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        try:
            await task
        except asyncio.CancelledError:
            pass
        finally:
            if handle:
                loop.remove_signal_handler(signal.SIGINT)

    asyncio.run(main())
    return presses


def _exit_status(client, job: str, presses: int) -> int:
    """The driver's exit status from the job's record: 0 when it succeeded, its exit code when it
    failed (1 when Ray has none: the job never ran), 130 when stopped (or left with a second Ctrl-C)."""
    from ray.job_submission import JobStatus

    deadline = time.time() + (0 if presses > 1 else 30)
    info = client.get_job_info(job)
    while not info.status.is_terminal() and time.time() < deadline:  # the log ends a moment before the status
        time.sleep(0.2)
        info = client.get_job_info(job)
    print(f"Ray job {job}: {info.status}", file=sys.stderr, flush=True)
    if info.status == JobStatus.SUCCEEDED:
        return 0
    if info.status == JobStatus.FAILED:
        if info.driver_exit_code is None:
            print(f"error: Ray job {job} failed before the sweep ran: {info.message}", file=sys.stderr)
        return info.driver_exit_code or 1
    return 130  # STOPPED (here, from the dashboard or `ray job stop`), or still stopping after a second Ctrl-C
