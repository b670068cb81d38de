import subprocess
import sys
import time

import pytest

from sweeps.cli import main
from trainables.pooling import POOLINGS
from trainables.heads import HEADS


def test_unknown_space_is_a_clear_error(capsys):
    assert main(["run", "quikstart"]) == 2
    err = capsys.readouterr().err
    assert "unknown search space 'quikstart'" in err and "Did you mean 'quickstart'?" in err


def test_a_typo_in_a_space_names_the_field(tmp_path, capsys):
    f = tmp_path / "typo.py"
    f.write_text("from ray import tune\nfrom sweeps.spec import SweepSpec\n"
                 "SPEC = SweepSpec(name='typo', space={'encoder': 'resnet18', "
                 "'pooling': tune.choice(['mean', 'atention']), 'head': 'logreg'})\n")
    assert main(["run", str(f)]) == 2
    err = capsys.readouterr().err
    assert "'atention'" in err and "typo.pooling" in err and "Did you mean 'attention'?" in err


def test_a_typo_in_a_component_parameter_names_it(tmp_path, capsys):
    f = tmp_path / "param.py"
    f.write_text("from sweeps.spec import SweepSpec\n"
                 "SPEC = SweepSpec(name='param', space={'encoder': 'resnet18', "
                 "'pooling': {'name': 'attention', 'attention': {'hiden_dim': 8}}, 'head': 'logreg'})\n")
    assert main(["run", str(f)]) == 2
    assert "Did you mean 'hidden_dim'?" in capsys.readouterr().err


def test_an_unknown_encoder_is_a_clear_error(tmp_path, capsys):
    f = tmp_path / "enc.py"
    f.write_text("from sweeps.spec import SweepSpec\n"
                 "SPEC = SweepSpec(name='enc', space={'encoder': 'resnet19', 'pooling': 'mean', 'head': 'logreg'})\n")
    assert main(["run", str(f)]) == 2
    assert "unknown encoder 'resnet19'" in capsys.readouterr().err


def test_gpu_request_without_gpus_fails_fast_with_a_clear_message(sweeps_home):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    t = time.time()
    proc = subprocess.run([sys.executable, "-m", "sweeps", "run", "quickstart", "--gpus-per-trial", "0.5"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "asks for 0.5 GPU" in proc.stderr and "--gpus-per-trial 0" in proc.stderr
    assert time.time() - t < 60, "the error comes before any data or Ray work"


def test_gpu_check_against_a_cluster_without_enough_gpus():
    from sweeps.runner import ResourceError, check_gpu_request

    check_gpu_request(0.25, available=1.0)
    with pytest.raises(ResourceError, match="cluster has 0.5 GPU"):
        check_gpu_request(1, available=0.5)
    with pytest.raises(ResourceError):
        check_gpu_request(1.5, available=4)


def test_list_shows_spaces_and_every_registered_component(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "quickstart" in out and "ERROR" not in out
    for name in [*POOLINGS, *HEADS]:
        assert name in out


def test_resume_of_an_unknown_run_names_it(sweeps_home, capsys):
    assert main(["resume", "no-such-run"]) == 2
    assert "no run 'no-such-run'" in capsys.readouterr().err


def test_storage_option_chooses_where_runs_are_looked_for(tmp_path, capsys):
    import os

    before = os.environ.pop("SWEEPS_RUNS", None)
    try:  # main() sets SWEEPS_RUNS for the process, as a CLI run does; undo it so no later test inherits it
        assert main(["resume", "gone", "--storage", str(tmp_path / "elsewhere")]) == 2
        assert str(tmp_path / "elsewhere") in capsys.readouterr().err
        assert main(["report", "gone", "--storage", str(tmp_path / "other")]) == 2
        assert str(tmp_path / "other") in capsys.readouterr().err
    finally:
        os.environ.pop("SWEEPS_RUNS", None)
        if before is not None:
            os.environ["SWEEPS_RUNS"] = before
