"""Train (or continue) one run, test it, and append its result line to experiments/results.csv.

    python experiments/record.py --task mnist -- --init_lr 3e-4 --random_seed 1 --run_name NAME ...
    python experiments/record.py --table          # the README's results table from results.csv
    python experiments/record.py --task mnist --results experiments/shaping.csv -- ...   # another study's file

Everything after `--` is passed to `python main.py` as is, so a row is reproduced by the
plain `python main.py ...` command it records. The run is continued with --resume=True
when it already has a checkpoint; the training wall time of every call is added up in
ckpt/<run>/wall_s.txt. The test (`--is_train=False`) writes the report, whose test error
with one sampled path (M=1), with the policy mean and at M=10 is what the line records.
This file runs main.py as a subprocess and imports nothing of the project but arguments.py.
"""

import argparse
import csv
import datetime
import json
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from arguments import MODEL_FIELDS, TRAINING_FIELDS, get_config  # noqa: E402

RESULTS = os.path.join(ROOT, "experiments", "results.csv")
COLUMNS = ("task", "run", "seed", "epochs", "best_epoch", "val_error", "test_error_M1",
           "test_error_policy_mean", "test_error_M10", "train_wall_min", "threads", "date", "commit", "command")
# The paper's test error (NeurIPS 2014, Table 1/2) and the best public figure per task.
PAPER = {"mnist": ("1.12%", "0.8%"), "translated": ("1.22% (6) / 1.20% (8)", "0.94%"),
         "cluttered": ("4.08% (6) / 4.04% (8)", "2.1%"), "cluttered100": ("10.83%", "5.9%")}


def main_py(args):
    """Run python main.py ARGS from the repository root; stop on failure."""
    done = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), *args], cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"record.py: python main.py {' '.join(args)} failed with exit code {done.returncode}")


def commit():
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def record(task, args, results=RESULTS):
    config = get_config(args)
    run_dir = os.path.join(config.ckpt_dir, config.run_name)
    wall_file = os.path.join(run_dir, "wall_s.txt")
    resume = os.path.exists(os.path.join(run_dir, "latest.pt"))
    start = time.perf_counter()
    main_py([*args, f"--resume={resume}"])
    wall = time.perf_counter() - start
    if os.path.exists(wall_file):
        with open(wall_file) as f:
            wall += float(f.read())
    with open(wall_file, "w") as f:
        f.write(f"{wall:.1f}")

    main_py([*args, "--is_train=False"])
    with open(os.path.join(config.report_dir, config.run_name, "metrics.json")) as f:
        report = json.load(f)
    errors = report["test_errors"]
    row = {
        "task": task, "run": config.run_name, "seed": config.random_seed, "epochs": config.epochs,
        "best_epoch": report["epoch"], "val_error": f"{1 - report['val_accuracy']:.4f}",
        "test_error_M1": f"{errors['M=1']:.4f}", "test_error_policy_mean": f"{errors['policy mean']:.4f}",
        "test_error_M10": f"{errors['M=10']:.4f}", "train_wall_min": f"{wall / 60:.1f}",
        "threads": os.environ.get("OMP_NUM_THREADS", "all"), "date": datetime.date.today().isoformat(),
        "commit": commit(), "command": "python main.py " + " ".join(args),
    }
    append_csv(results, COLUMNS, [row])
    print(", ".join(f"{k}={v}" for k, v in row.items()))


def append_csv(path, columns, rows):
    """Append rows (dicts) to the CSV at path, with its header when the file is new (and its
    folder made when missing)."""
    new = not os.path.exists(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def recipe(row):
    """What a result line's run was trained with, but for its seed: (key, label). The key holds
    every model and training setting of its command; the label names those that differ from
    main.py's defaults for its data type (e.g. "--std 0.2"), "defaults" when none do."""
    config = get_config(shlex.split(row["command"])[2:])  # "python main.py ARGS"
    default = get_config(["--data_type", config.data_type, "--num_glimpses", str(config.num_glimpses)])
    fields = [k for k in MODEL_FIELDS + TRAINING_FIELDS if k != "random_seed"]
    key = tuple(getattr(config, k) for k in fields)
    changed = [f"--{k} {getattr(config, k)}" for k in fields if getattr(config, k) != getattr(default, k)]
    if config.std_final is None and default.std_final is not None:  # --std alone: a constant std
        changed = [c for c in changed if not c.startswith(("--std ", "--std_final "))]
        changed.insert(0, f"--std {config.std}")
    return key, " ".join(changed) or "defaults"


def table(results=RESULTS):
    """Markdown: per task, the paper's figure, then mean (min-max) over seeds of our test error,
    one line per recipe and epoch budget; then every run."""
    if not os.path.isfile(results):
        print(f"record.py: error: no results yet at {results}: run experiments/paper_table.sh first",
              file=sys.stderr)
        sys.exit(2)
    with open(results) as f:
        rows = list(csv.DictReader(f))
    lines = ["| task | paper | best public | ours, M=1 (seeds) | ours, policy mean | ours, M=10 | epochs "
             "| recipe | wall per run |", "|---|---|---|---|---|---|---|---|---|"]
    # One line per task, recipe and epoch budget: seeds of one recipe are averaged, budgets
    # and recipes are not.
    for task, (paper, public) in PAPER.items():
        groups = {}
        for r in rows:
            if r["task"] == task:
                key, label = recipe(r)
                groups.setdefault((int(r["epochs"]), key), (label, []))[1].append(r)
        if not groups:
            lines.append(f"| {task} | {paper} | {public} | not trained | | | | | |")
        for (epochs, _), (label, runs) in sorted(groups.items(), key=lambda g: (g[0][0], g[1][0])):
            def spread(key):
                v = [100 * float(r[key]) for r in runs]
                mean = sum(v) / len(v)
                return f"{mean:.2f}%" + (f" ({min(v):.2f}-{max(v):.2f}%, n={len(v)})" if len(v) > 1 else "")

            walls = [float(r["train_wall_min"]) for r in runs]
            lines.append(f"| {task} | {paper} | {public} | {spread('test_error_M1')} "
                         f"| {spread('test_error_policy_mean')} | {spread('test_error_M10')} | {epochs} "
                         f"| {label} | {min(walls):.0f}{f'-{max(walls):.0f}' if len(walls) > 1 else ''} min |")
    lines += ["", "| task | run | seed | epochs | best epoch | val error | test M=1 | policy mean | M=10 | train wall "
              "| commit |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        errors = " | ".join(f"{100 * float(r[k]):.2f}%" for k in ("val_error", "test_error_M1",
                                                                  "test_error_policy_mean", "test_error_M10"))
        lines.append(f"| {r['task']} | {r['run']} | {r['seed']} | {r['epochs']} | {r['best_epoch']} | {errors} "
                     f"| {r['train_wall_min']} min | {r['commit']} |")
    print("\n".join(lines))


if __name__ == "__main__":
    if "--" in sys.argv:
        cut = sys.argv.index("--")
        own, passed = sys.argv[1:cut], sys.argv[cut + 1:]
    else:
        own, passed = sys.argv[1:], []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=list(PAPER), help="the row of the paper's table")
    parser.add_argument("--table", action="store_true", help="print the results table and stop")
    parser.add_argument("--results", default=RESULTS,
                        help="the CSV to append the result line to (default: experiments/results.csv, "
                             "the paper table's)")
    opts = parser.parse_args(own)
    if opts.table:
        table(opts.results)
    elif opts.task and passed:
        record(opts.task, passed, os.path.abspath(opts.results))
    else:
        parser.error("give --task TASK -- MAIN.PY ARGS, or --table")
