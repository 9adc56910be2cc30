"""Faults injected into real runs: signals at chosen points and kill -9 at a random moment
(then resume, bit for bit equal to an unbroken run), a full disk, non-finite losses and
gradients, unwritable places, resuming a finished run."""

import errno
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, dir_flags
from test_cli import SMALL, one_line_error, weights

import faults
from arguments import ConfigError
import trainer as trainer_module
import utils

TINY = [arg for arg in SMALL if not arg.startswith("--plot_freq")] + ["--plot_freq=0", "--epochs=3"]


def start(tmp, *args, fault=None):
    env = dict(os.environ)
    env.pop(faults.FAULT_ENV, None)
    if fault:
        env[faults.FAULT_ENV] = fault
    argv = [sys.executable, os.path.join(ROOT, "main.py"), *TINY, *args, *dir_flags(tmp)]
    # A test run in the background ignores SIGINT, and so would its children: not these.
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def finish(process):
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


def same_weights(a, b):
    a, b = weights(a), weights(b)
    assert a["epoch"] == b["epoch"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["optimizer"]["state"]:
        assert torch.equal(a["optimizer"]["state"][key]["exp_avg"], b["optimizer"]["state"][key]["exp_avg"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert torch.equal(a["rng"]["generators"][0], b["rng"]["generators"][0])


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("unbroken")
    code, _, err = finish(start(tmp, "--run_name=run"))
    assert code == 0, err
    return tmp / "ckpt" / "run" / "latest.pt"


def scalar_steps(log_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return [e.step for e in events.Scalars(tag)]


@pytest.mark.parametrize("fault,code,message", [
    ("train_step:6:SIGINT", 130, "stopped by SIGINT during epoch 2 (step 2 of 4)"),
    ("valid_step:2:SIGTERM", 143, "stopped by SIGTERM while validating epoch 1: no checkpoint was written yet"),
    ("save:2:SIGINT", 130, "stopped by SIGINT after epoch 2"),  # between latest.pt and best.pt
])
def test_a_signal_stops_cleanly_and_the_resumed_run_equals_an_unbroken_one(tmp_path, unbroken, fault, code,
                                                                           message):
    got, out, err = finish(start(tmp_path, "--run_name=run", fault=fault))
    assert got == code, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("main.py: " + message), last
    assert "Traceback" not in err
    run = tmp_path / "ckpt" / "run"
    assert not [name for name in os.listdir(run) if name.startswith(".tmp_")]
    resume = ["--resume=True"] if (run / "latest.pt").exists() else []
    if resume:
        assert "continue with the same command and --resume=True" in last
        assert weights(run / "latest.pt")["epoch"] == int(message.split("epoch ")[1][0]) - ("after" not in message)
    got, _, err = finish(start(tmp_path, "--run_name=run", *resume))
    assert got == 0, err
    same_weights(unbroken, run / "latest.pt")
    assert scalar_steps(tmp_path / "logs" / "run", "train/loss") == [1, 2, 3]


def test_kill_9_at_a_random_moment_then_resume_equals_an_unbroken_run(tmp_path, unbroken):
    delay = random.Random().uniform(0.0, 0.6)
    process = start(tmp_path, "--run_name=run")
    latest = tmp_path / "ckpt" / "run" / "latest.pt"
    while not latest.exists() and process.poll() is None:
        time.sleep(0.01)
    time.sleep(delay)
    process.kill()
    finish(process)
    got, out, err = finish(start(tmp_path, "--run_name=run", "--resume=True"))
    assert got == 0, (delay, err)
    run = tmp_path / "ckpt" / "run"
    assert not [name for name in os.listdir(run) if name.startswith(".tmp_")]
    same_weights(unbroken, latest)


def test_second_signal_stops_at_once_and_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with faults.SignalGuard(defer=True) as guard:
            os.kill(os.getpid(), signal.SIGINT)
            assert guard.signum == signal.SIGINT
            with pytest.raises(faults.Interrupted) as stop:
                os.kill(os.getpid(), signal.SIGTERM)
        assert stop.value.code == 143
        with pytest.raises(faults.Interrupted, match="stopped by SIGINT during"):
            guard.stop_if_asked("during the test")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        # Started under nohup: SIGINT ignored, and left so.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with faults.SignalGuard(defer=True) as guard:
            os.kill(os.getpid(), signal.SIGINT)
            assert guard.signum is None
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def snapshot(folder):
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


class FullDisk:
    """A file whose writes fail with ENOSPC after `room` bytes."""

    def __init__(self, f, room=10_000):
        self.f, self.room = f, room

    def write(self, data):
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_a_full_disk_keeps_the_previous_checkpoint_and_no_temp_file(run_main, tmp_path, monkeypatch):
    run_main(*TINY, "--epochs=1", "--run_name=run")
    run = tmp_path / "ckpt" / "run"
    before = snapshot(run)
    real = os.fdopen
    monkeypatch.setattr(utils.os, "fdopen", lambda fd, mode: FullDisk(real(fd, mode)))
    with pytest.raises(faults.Stopped, match=r"cannot write .*latest.pt \(No space left on device\): "
                                             r"the previous file is unchanged"):
        run_main(*TINY, "--epochs=2", "--run_name=run", "--resume=True")
    monkeypatch.undo()
    after = snapshot(run)
    assert {p: b for p, b in after.items() if p.name != "config.json"} == \
           {p: b for p, b in before.items() if p.name != "config.json"}
    assert weights(run / "latest.pt")["epoch"] == 1
    assert not [p for p in after if p.name.startswith(".tmp_")]


class PoisonGradient(torch.autograd.Function):
    """Identity forward, infinite gradient backward: a finite loss with a non-finite gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


@pytest.mark.parametrize("poison,message", [
    (lambda terms: {**terms, "nll": terms["nll"] * float("nan")},
     "the nll loss became nan at epoch 2, step 3: stopped before the update"),
    (lambda terms: {**terms, "loss": PoisonGradient.apply(terms["loss"])},
     "the gradient of .* became non-finite at epoch 2, step 3"),
])
def test_a_non_finite_loss_or_gradient_stops_before_the_step(run_main, tmp_path, monkeypatch, poison, message):
    run_main(*TINY, "--epochs=1", "--run_name=run")
    run = tmp_path / "ckpt" / "run"
    before = snapshot(run)
    real, calls = trainer_module.hybrid_loss, []

    def hybrid_loss(*args, **kwargs):
        calls.append(1)
        terms = real(*args, **kwargs)
        return poison(terms) if len(calls) == 3 else terms

    monkeypatch.setattr(trainer_module, "hybrid_loss", hybrid_loss)
    with pytest.raises(faults.Stopped, match=message + r".*holds epoch 1"):
        run_main(*TINY, "--epochs=2", "--run_name=run", "--resume=True")
    after = snapshot(run)
    assert after[run / "best.pt"] == before[run / "best.pt"] and after[run / "latest.pt"] == before[run / "latest.pt"]


def test_max_grad_norm_clips_the_update(run_main, tmp_path):
    run_main(*TINY, "--epochs=1", "--run_name=free")
    run_main(*TINY, "--epochs=1", "--run_name=clipped", "--max_grad_norm=1e-6")
    free, clipped = (weights(tmp_path / "ckpt" / name / "latest.pt")["model"] for name in ("free", "clipped"))
    assert any(not torch.equal(free[key], clipped[key]) for key in free)


def test_weights_that_blow_up_end_in_one_line_not_an_index_error(run_cli, tmp_path):
    result = run_cli(*TINY, "--epochs=1", "--init_lr=1e4", "--std=10", "--run_name=boom")
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "became" in last and "stopped before the update" in last and "Traceback" not in result.stderr


@pytest.mark.parametrize("flag", ["--ckpt_dir", "--logs_dir", "--plot_dir", "--data_dir"])
def test_unwritable_places_exit_2_before_any_work(run_cli, tmp_path, flag):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    before = sorted(os.listdir(tmp_path))
    args = [*TINY, "--plot_freq=1", "--data_type=cluttered"] + dir_flags(tmp_path) + [f"{flag}={blocker}/sub"]
    result = run_cli(*args, dirs=False)
    one_line_error(result, f"{flag}={blocker}/sub is not a writable folder")
    assert sorted(os.listdir(tmp_path)) == before


def test_an_unwritable_report_dir_exits_2_and_a_failed_report_keeps_the_old_one(run_cli, run_main, tmp_path,
                                                                               monkeypatch):
    run_main(*TINY, "--epochs=1", "--run_name=run")
    result = run_cli(*TINY, "--is_train=False", "--run_name=run", *dir_flags(tmp_path),
                     "--report_dir=/proc/no_report", dirs=False)
    one_line_error(result, "--report_dir=/proc/no_report is not a writable folder")
    run_main(*TINY, "--is_train=False", "--run_name=run", "--subset=64")
    report = tmp_path / "report" / "run"
    before = snapshot(report)

    import explain

    def interrupted(*args, **kwargs):
        raise faults.Interrupted("stopped by SIGINT", signal.SIGINT)

    monkeypatch.setattr(explain, "summary_markdown", interrupted)  # after the figures and metrics.json
    with pytest.raises(faults.Interrupted):
        run_main(*TINY, "--is_train=False", "--run_name=run", "--subset=64")
    assert snapshot(report) == before
    assert sorted(os.listdir(tmp_path / "report")) == ["run"]


def test_resuming_a_finished_or_stopped_run_trains_and_writes_nothing(run_main, tmp_path, capsys):
    run_main(*TINY, "--epochs=1", "--run_name=run")
    before = {**snapshot(tmp_path / "ckpt"), **snapshot(tmp_path / "logs")}
    run_main(*TINY, "--epochs=1", "--run_name=run", "--resume=True")
    assert "already trained for 1 epochs (--epochs 1); raise --epochs" in capsys.readouterr().out
    latest = tmp_path / "ckpt" / "run" / "latest.pt"
    state = weights(latest)
    state["counter"] = 5  # as a run that stopped early on --train_patience=5
    torch.save(state, latest)
    before[latest] = latest.read_bytes()
    run_main(*TINY, "--epochs=9", "--train_patience=5", "--run_name=run", "--resume=True")
    assert "stopped early after epoch 1: no validation gain for 5 epochs" in capsys.readouterr().out
    assert {**snapshot(tmp_path / "ckpt"), **snapshot(tmp_path / "logs")} == before


def test_a_resume_refuses_changed_learning_settings_and_says_which_it_applies(run_main, tmp_path, capsys):
    run_main(*TINY, "--epochs=1", "--run_name=run")
    for flag, value in (("batch_size", "32"), ("subset", "128"), ("init_lr", "0.01"), ("random_seed", "7"),
                        ("max_grad_norm", "1")):
        with pytest.raises(ConfigError, match=f"{flag}=.* in the checkpoint but .* here"):
            run_main(*TINY, "--epochs=2", "--run_name=run", "--resume=True", f"--{flag}={value}")
    run_main(*TINY, "--epochs=2", "--train_patience=7", "--run_name=run", "--resume=True")
    out = capsys.readouterr().out
    assert "--epochs was 1 for this run, now 2: using 2" in out
    assert "--train_patience was 50 for this run, now 7: using 7" in out


def run_vae(tmp_path, *args):
    """Get or train the VAE of a trained run as `--is_train=False` does, without the report."""
    import explain
    from arguments import get_config
    from data_loader import get_data
    from trainer import Trainer

    config = get_config([*TINY, "--is_train=False", *args, *dir_flags(tmp_path)])
    utils.seed_everything(config.random_seed)
    data = get_data(config)
    trainer = Trainer(config, data)
    state = trainer.load("best.pt")
    explain.hidden_state_vae(config, data, trainer.model, trainer.path("vae.pt"), ram_epoch=state["epoch"])


def test_checkpoints_load_onto_the_cpu_whatever_the_device(run_main, tmp_path, monkeypatch):
    run_main(*TINY, "--epochs=1", "--run_name=run")
    places = []
    real = torch.load

    def spy(*args, **kwargs):
        places.append(kwargs.get("map_location"))
        return real(*args, **kwargs)

    monkeypatch.setattr(utils.torch, "load", spy)
    run_main(*TINY, "--epochs=2", "--run_name=run", "--resume=True")  # the RAM's RNG states
    run_vae(tmp_path, "--run_name=run", "--vae_epochs=1")
    run_vae(tmp_path, "--run_name=run", "--vae_epochs=2", "--train_vae=True")  # the VAE's
    assert len(places) == 4 and set(places) == {"cpu"}


def test_a_resumed_vae_equals_an_unbroken_one(run_main, tmp_path):
    run_main(*TINY, "--epochs=1", "--run_name=run")
    import shutil

    shutil.copytree(tmp_path / "ckpt" / "run", tmp_path / "ckpt" / "copy")
    run_vae(tmp_path, "--run_name=run", "--vae_epochs=2")
    run_vae(tmp_path, "--run_name=copy", "--vae_epochs=1")
    run_vae(tmp_path, "--run_name=copy", "--vae_epochs=2", "--train_vae=True")
    a, b = (weights(tmp_path / "ckpt" / name / "vae.pt") for name in ("run", "copy"))
    assert a["epoch"] == b["epoch"] == 2
    for key in a["vae"]:
        assert torch.equal(a["vae"][key], b["vae"][key]), key
    assert scalar_steps(tmp_path / "logs" / "copy" / "vae", "vae/train_loss") == [1, 2]
