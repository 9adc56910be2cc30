"""Entry point: parse the config, load the data, then train or test.

    python main.py                     # train with the defaults in arguments.py
    python main.py --resume=True       # continue the run from its latest checkpoint
    python main.py --is_train=False    # test the best checkpoint, write the report
    python main.py --compare RUN_A RUN_B   # overlay the reports of several runs
"""

from arguments import ConfigError, exit_on_config_error, get_config


def main(argv=None):
    config = get_config(argv)
    # Heavy imports only after the flags are known to be valid.
    import torch

    import explain
    from data_loader import get_data
    from trainer import Trainer
    from utils import seed_everything

    if config.compare:
        return explain.compare_runs(config.report_dir, config.compare)

    if config.use_gpu and not torch.cuda.is_available():
        raise ConfigError("--use_gpu=True but CUDA is not available")
    seed_everything(config.random_seed)
    data = get_data(config)
    trainer = Trainer(config, data)
    if config.is_train:
        return trainer.train()
    return explain.test(config, data, trainer)


if __name__ == "__main__":
    exit_on_config_error(main, "main.py")
