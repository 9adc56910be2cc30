"""Entry point: parse the config, load the data, then train or test.

    python main.py                     # train with the defaults in arguments.py
    python main.py --resume=True       # continue the run from its latest checkpoint
    python main.py --is_train=False    # test the best checkpoint, write the report
    python main.py --compare RUN_A RUN_B   # overlay the reports of several runs
    python main.py --is_train=False --explain_image a.png   # why did it say that, glimpse by glimpse

    torchrun --nproc_per_node=2 main.py  # data-parallel training on 2 processes (distributed.py)

Bad input exits 2, a failed run 1, Ctrl-C 130 and SIGTERM 143, each with one line (faults.py).
"""

import os

import distributed
from arguments import ConfigError, get_config
from faults import SignalGuard, check_writable, exit_cleanly


def output_places(config, data_writes):
    """{flag: folder} of every place this command will write to; data_writes: those of loading the data."""
    if config.compare:
        return {"--report_dir": config.report_dir}
    places = dict(data_writes)
    if config.is_train:
        places.update({"--ckpt_dir": config.ckpt_dir, "--logs_dir": config.logs_dir})
        if config.plot_freq:
            places["--plot_dir"] = config.plot_dir
        return places
    vae_path = os.path.join(config.ckpt_dir, config.run_name, "vae.pt")
    if config.train_vae or not os.path.exists(vae_path):  # the VAE is trained, logged and saved
        places.update({"--ckpt_dir": os.path.dirname(vae_path), "--logs_dir": config.logs_dir})
    places["--report_dir"] = config.report_dir
    return places


def main(argv=None):
    config = get_config(argv)
    # Heavy imports only after the flags are known to be valid.
    import torch

    import explain
    from data_loader import data_writes, get_data
    from trainer import Trainer
    from utils import seed_everything

    if config.use_gpu and not torch.cuda.is_available():
        raise ConfigError("--use_gpu=True but CUDA is not available")
    if distributed.launched():
        if not config.is_train or config.compare:  # testing is one process's job: rank 0's
            if os.environ.get("RANK", "0") != "0":
                return None
        else:
            distributed.setup(config.use_gpu)
    try:
        if distributed.is_main():
            check_writable(output_places(config, data_writes(config)))
        if config.compare:
            return explain.compare_runs(config.report_dir, config.compare)
        # A signal raises at once (SIGTERM too, so temporary files are removed); training
        # defers the first one to the end of the current step.
        with SignalGuard(defer=False):
            seed_everything(config.random_seed)
            with distributed.main_first():  # rank 0 generates and caches a dataset, then the others read it
                data = get_data(config)
            trainer = Trainer(config, data)
            if config.is_train:
                return trainer.train()
            if config.explain_image:
                return explain.explain_images(config, data, trainer)
            return explain.test(config, data, trainer)
    finally:
        distributed.cleanup()


if __name__ == "__main__":
    exit_cleanly(main, "main.py")
