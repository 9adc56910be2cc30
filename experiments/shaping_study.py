"""The shaping study: HardAtt against HardAttRewardShaping, several seeds each, per glimpse.

    bash experiments/paper_table.sh mnist SEED 100 HardAttRewardShaping   # train + test one run
    python experiments/shaping_study.py --task mnist \\
        --runs HardAtt=mnist_r1B,paper_mnist_s2,paper_mnist_s3 \\
        --runs HardAttRewardShaping=paper_mnist_HardAttRewardShaping_s1,...

reads report/<RUN>/metrics.json of each tested run, appends one line per run and glimpse to
experiments/shaping_glimpses.csv (the numbers the README's table is made of, kept in git
while report/ is not; a run's lines are written once), and prints the table: per mode and
glimpse t, the mean and standard deviation over seeds of the accuracy, IG, EIG, EIG gap and
ECE of the RAM's own beliefs and the probe's accuracy, IG and EIG; then each mode's test
error at M = 1. A run whose report is gone (report/ does not outlive a working session) is
taken from its lines in that CSV, so runs of several sessions make one table.
"""

import argparse
import csv
import json
import os
import statistics
import sys

from record import append_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "experiments", "shaping_glimpses.csv")
KEYS = ("accuracy", "ig", "eig", "eig_gap", "ece", "probe_accuracy", "probe_ig", "probe_eig")
COLUMNS = ("task", "mode", "run", "seed", "t", *KEYS, "test_error_M1", "imagine")


def fail(message):
    """One line on stderr and exit code 2: what a researcher's bad input gets."""
    print(f"shaping_study.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def recorded(path):
    """The lines already in the CSV at path (dicts of strings), [] when there is none."""
    if os.path.isdir(path):
        fail(f"--csv {path} is a folder; give the path of a CSV file")
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            fail(f"--csv {path} is not a per-glimpse CSV of this script: its header lacks {', '.join(missing)}")
        return list(reader)


def key(line):
    """What names one line of the CSV: (task, mode, run, glimpse t)."""
    return line["task"], line["mode"], line["run"], str(line["t"])


def run_lines(task, mode, run, report_dir, known):
    """The per-glimpse lines of one run: from its report, else from its recorded lines."""
    path = os.path.join(report_dir, run, "metrics.json")
    if os.path.isfile(path):
        with open(path) as f:
            return list(rows(task, mode, run, json.load(f)))
    lines = [r for r in known if key(r)[:3] == (task, mode, run)]
    if not lines:
        fail(f"no {path} and no {mode} lines of {run} in the CSV: test the run first "
             f"(python main.py --is_train=False ...)")
    return lines


def rows(task, mode, run, report):
    g = report["per_glimpse"]
    imagined = report.get("imagination") or {}
    imagine = f"{imagined.get('draw', 'mean')}/{imagined.get('prior', 'vae')}/x{imagined.get('scale', 1):g}"
    seed = report["train_config"]["random_seed"]
    for t in range(len(g["accuracy"])):
        yield {"task": task, "mode": mode, "run": run, "seed": seed, "t": t + 1,
               **{k: f"{g[k][t]:.5f}" if k in g else "" for k in KEYS},
               "test_error_M1": f"{report['test_errors']['M=1']:.4f}", "imagine": imagine}


def table(lines):
    """Markdown: per mode and key, mean ± sd over seeds after each glimpse."""
    modes = list(dict.fromkeys(r["mode"] for r in lines))
    T = max(int(r["t"]) for r in lines)
    out = ["| mode | quantity | " + " | ".join(f"t={t}" for t in range(1, T + 1)) + " |",
           "|---|---|" + "---|" * T]
    for key in KEYS:
        for mode in modes:
            cells = []
            for t in range(1, T + 1):
                v = [float(r[key]) for r in lines if r["mode"] == mode and int(r["t"]) == t and r[key] != ""]
                if not v:
                    cells.append("")
                    continue
                scale, spec = (100, ".2f") if "accuracy" in key else (1, ".3f")
                sd = statistics.stdev(v) * scale if len(v) > 1 else 0.0
                cells.append(f"{statistics.mean(v) * scale:{spec}} ± {sd:{spec}}")
            out.append(f"| {mode} | {key}{' (%)' if 'accuracy' in key else ''} | " + " | ".join(cells) + " |")
    for mode in modes:
        errors = {r["run"]: float(r["test_error_M1"]) for r in lines if r["mode"] == mode}
        out.append("")
        out.append(f"{mode}: test error at M = 1 " + ", ".join(f"{100 * e:.2f}%" for e in errors.values())
                   + f" (mean {100 * statistics.mean(errors.values()):.2f}%, n = {len(errors)})")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, help="a label for the dataset, e.g. mnist or cluttered")
    parser.add_argument("--runs", action="append", required=True, metavar="MODE=RUN,RUN",
                        help="a mode and its runs (repeat per mode)")
    parser.add_argument("--report_dir", default=os.path.join(ROOT, "report"))
    parser.add_argument("--csv", default=OUT, help="the per-glimpse lines, read and appended to")
    parser.add_argument("--no_csv", action="store_true", help="print the table without appending to the CSV")
    opts = parser.parse_args(argv)
    known = recorded(opts.csv)
    lines = []
    for spec in opts.runs:
        mode, _, runs = spec.partition("=")
        if not runs:
            parser.error(f"--runs {spec}: expected MODE=RUN[,RUN...]")
        for run in runs.split(","):
            lines += run_lines(opts.task, mode, run, opts.report_dir, known)
    if not opts.no_csv:
        seen = {key(r) for r in known}
        append_csv(opts.csv, COLUMNS, [r for r in lines if key(r) not in seen])
    print(table(lines))


if __name__ == "__main__":
    main()
