#!/usr/bin/env python3
"""Plots the curves of one or more `copse train` runs (OUT/metrics.jsonl) to a PNG.

usage: scripts/plot_metrics.py OUT.png RUN_DIR_OR_METRICS [LABEL] [RUN2 [LABEL2] ...]
Needs matplotlib (pip install matplotlib).
"""
import json
import os
import sys


def load(path):
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out, rest = argv[1], argv[2:]
    runs = []
    while rest:
        path = rest.pop(0)
        label = rest.pop(0) if rest and not os.path.exists(rest[0]) else os.path.basename(path.rstrip("/"))
        runs.append((label, load(path)))
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for label, rows in runs:
        ep = [r["epoch"] for r in rows]
        ax_loss.plot(ep, [r["train_loss"] for r in rows], marker="o", label=label)
        for key, style in (("dev_fine", "-"), ("test_fine", "--"), ("dev_binary", ":"),
                           ("test_binary", "-.")):
            ax_acc.plot(ep, [r[key] for r in rows], style, label=f"{label} {key}")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("train loss (per labelled vertex)")
    ax_loss.legend()
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("root accuracy")
    ax_acc.legend(fontsize=7)
    ax_acc.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
