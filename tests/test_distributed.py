"""Data-parallel training under torchrun with 2 CPU processes (gloo): one model on both
ranks, the gradient of a DDP step equals one process's on the union of the shards, only
rank 0 writes, checkpoints move between 1 and 2 processes, and a resumed distributed run
equals an unbroken one."""

import os
import subprocess
import sys

import torch
from conftest import ROOT, dir_flags
from ddp_worker import HALF
from test_cli import weights
from test_faults import TINY, same_weights

FLAGS = [*TINY, "--epochs=1"]


def torchrun(tmp, script, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", script, *args]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=tmp, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_ranks_train_one_model_and_their_step_is_the_union_step(tmp_path):
    from arguments import get_config
    from data_loader import get_data
    from losses import hybrid_loss, loss_settings
    from model import RecurrentAttention

    flags = [*FLAGS, "--run_name=ddp", *dir_flags(tmp_path)]
    torchrun(tmp_path, os.path.join(ROOT, "tests", "ddp_worker.py"), str(tmp_path), *flags)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in r0["init"]:  # the ranks were seeded differently: DDP broadcast rank 0's weights
        assert torch.equal(r0["init"][key], r1["init"][key]), key
    assert not torch.equal(r0["noise"], r1["noise"]), "both ranks would sample the same locations"
    for key in r0["final"]:
        assert torch.equal(r0["final"][key], r1["final"][key]), key
        assert torch.equal(r0["final"][key], weights(tmp_path / "ckpt" / "ddp" / "latest.pt")["model"][key])

    # One process on the union of the two halves, from the same weights, at the same locations.
    config = get_config(flags)
    x, _, y = get_data(config).loaders["valid"].dataset[torch.arange(2 * HALF)]
    model = RecurrentAttention.from_config(config, in_channels=1, num_classes=10)
    model.load_state_dict(r0["init"])
    hybrid_loss(model(x, config.num_glimpses, policy_mean=True), y, **loss_settings(config))["loss"].backward()
    for name, p in model.named_parameters():
        assert torch.equal(r0["grads"][name], r1["grads"][name]), name
        torch.testing.assert_close(r0["grads"][name], p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_torchrun_cli_writes_once_resumes_exactly_and_moves_to_one_process(tmp_path, run_main, capsys):
    main_py = os.path.join(ROOT, "main.py")
    # A constant std: an annealed one (MNIST's default) stretches its schedule when a resume
    # changes --epochs, as these do, so the broken run would not be the straight one.
    tiny = [*TINY, "--std=0.1"]
    two = torchrun(tmp_path, main_py, *tiny, "--epochs=2", "--run_name=straight", *dir_flags(tmp_path))
    assert two.stdout.count("epoch 2/2") == 1, two.stdout  # rank 0 alone prints
    assert "on 2 processes" in two.stdout
    torchrun(tmp_path, main_py, *tiny, "--epochs=1", "--run_name=broken", *dir_flags(tmp_path))
    torchrun(tmp_path, main_py, *tiny, "--epochs=2", "--run_name=broken", "--resume=True", *dir_flags(tmp_path))
    same_weights(tmp_path / "ckpt" / "straight" / "latest.pt", tmp_path / "ckpt" / "broken" / "latest.pt")
    assert sorted(os.listdir(tmp_path / "ckpt" / "straight")) == ["best.pt", "config.json", "latest.pt"]
    assert len(os.listdir(tmp_path / "logs" / "straight")) == 1, "one TensorBoard file: rank 0's"
    state = weights(tmp_path / "ckpt" / "straight" / "latest.pt")
    assert state["world_size"] == 2 and not any(key.startswith("module.") for key in state["model"])

    # A distributed checkpoint continues in one process, and is tested there.
    run_main(*tiny, "--epochs=3", "--run_name=straight", "--resume=True")
    assert "trained on 2 processes, continued on 1" in capsys.readouterr().out
    assert weights(tmp_path / "ckpt" / "straight" / "latest.pt")["epoch"] == 3
