#!/usr/bin/env python3
"""Turns the suite's JSON lines into a table, a CSV and a PNG plot.

    report.py RESULTS.jsonl --csv benchmarks/peers/results.csv --png benchmarks/figures/peers_cpu.png

Each line: {"system", "embed", "hidden", "batch", "trees_per_s" (null = not
timed), "check_ok", "check_max_rel_err", ...}. copse's ratio to each peer is
copse (bench_treelstm, batched) trees/s divided by the peer's."""
from __future__ import annotations

import argparse
import csv
import json
import os
from collections import OrderedDict

REF = "copse"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("jsonl")
    ap.add_argument("--csv")
    ap.add_argument("--png")
    ap.add_argument("--title", default="Tree-LSTM training on SST, CPU, 1 thread")
    ap.add_argument("--note", default="", help="run conditions, put in every CSV row and the plot")
    a = ap.parse_args()
    rows = [json.loads(l) for l in open(a.jsonl) if l.strip().startswith("{")]
    if not rows:
        print(f"{a.jsonl}: no results")
        return
    systems = list(OrderedDict.fromkeys(r["system"] for r in rows))
    configs = list(OrderedDict.fromkeys((r["embed"], r["hidden"], r["batch"]) for r in rows))
    by = {(r["system"], r["embed"], r["hidden"], r["batch"]): r for r in rows}

    def cell(s, c):
        r = by.get((s,) + c)
        if r is None:
            return "-"
        if r.get("check_ok") is False:
            return "FAILED"
        tps = r.get("trees_per_s")
        return "-" if tps is None else f"{tps:.1f}"

    peers = [s for s in systems if not s.startswith("copse")]
    head = ["E", "H", "B"] + systems + [f"copse/{p}" for p in peers]
    lines = [head]
    out_rows = []
    for c in configs:
        line = [str(c[0]), str(c[1]), str(c[2])] + [cell(s, c) for s in systems]
        ref = by.get((REF,) + c, {}).get("trees_per_s")
        for p in peers:
            r = by.get((p,) + c, {})
            tps = r.get("trees_per_s") if r.get("check_ok", True) else None
            line.append(f"{ref / tps:.2f}x" if ref and tps else "-")
        lines.append(line)
        for s in systems:
            r = by.get((s,) + c)
            if r is None:
                continue
            tps = r.get("trees_per_s")
            out_rows.append({
                "system": s, "embed": c[0], "hidden": c[1], "batch": c[2],
                "trees_per_s": "" if tps is None else f"{tps:.3f}",
                "trees": r.get("trees", ""), "seconds": "" if r.get("seconds") is None else f"{r['seconds']:.3f}",
                "check_ok": r.get("check_ok", ""),
                "check_max_rel_err": "" if r.get("check_max_rel_err") is None else f"{r['check_max_rel_err']:.3e}",
                "copse_ratio": f"{ref / tps:.3f}" if ref and tps and s != REF else "",
                "note": r.get("note", ""),
                "run": a.note,
            })
    widths = [max(len(l[i]) for l in lines) for i in range(len(head))]
    for l in lines:
        print("  ".join(x.rjust(w) for x, w in zip(l, widths)))
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(out_rows[0].keys()) if out_rows else ["system"])
            w.writeheader()
            w.writerows(out_rows)
        print(f"wrote {a.csv}")
    if a.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        sizes = list(OrderedDict.fromkeys((c[0], c[1]) for c in configs))
        fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.2), squeeze=False)
        for ax, (e, h) in zip(axes[0], sizes):
            for s in systems:
                pts = sorted((c[2], by[(s,) + c]["trees_per_s"]) for c in configs
                             if c[:2] == (e, h) and (s,) + c in by
                             and by[(s,) + c].get("trees_per_s") and by[(s,) + c].get("check_ok", True))
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=s)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("batch size (trees)")
            ax.set_ylabel("trees/s (train step)")
            ax.set_title(f"embed {e}, hidden {h}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(a.title + (f"\n{a.note}" if a.note else ""), fontsize=9)
        fig.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(a.png)), exist_ok=True)
        fig.savefig(a.png, dpi=110)
        print(f"wrote {a.png}")


if __name__ == "__main__":
    main()
