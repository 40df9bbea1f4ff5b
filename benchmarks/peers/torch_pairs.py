#!/usr/bin/env python3
"""Peer: the SICK pair model in PyTorch, level-batched (the DGL approach).

The same function as copse's relatedness model: the child-sum Tree-LSTM over
both dependency trees of every pair of a batch (all 2B trees merged and
levelled; per level, the children's h summed with index_add, one GEMM, the
per-edge forget gates), Tai et al.'s similarity head on the two roots
(h* = hL * hR, h+ = |hL - hR|, hs = sigmoid(W [h*; h+] + b), y = Wp hs + bp)
and KL(p || softmax(y)) against the score's sparse distribution, summed and
times 1/B. Parameters come from `bench_pairs --dump DIR`; the first batch's
loss and every gradient must match copse's to 1e-4 (norm-wise per tensor)
before the forward + backward passes (no optimizer step, as bench_pairs) are
timed.

  torch_pairs.py --data ../shared/data/sick --ref DIR [--seconds 5] [--perturb]"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

import torch_common  # noqa: F401  (one thread)
import torch

from common import rel_err

TOL = 1e-4


def read_split(d: str):
    def lines(f):
        with open(os.path.join(d, f), encoding="utf-8") as fh:
            return [l.rstrip("\n").rstrip("\r") for l in fh]
    return (lines("a.toks"), lines("a.parents"), lines("b.toks"), lines("b.parents"),
            [float(x) for x in lines("sim.txt")])


def distribution(score: float, k: int = 5) -> np.ndarray:
    p = np.zeros(k, np.float32)
    f = math.floor(score)
    i = int(f) - 1
    if i + 1 >= k:
        p[k - 1] = 1.0
    else:
        p[i] = np.float32(f - score + 1)
        p[i + 1] = np.float32(score - f)
    return p


class Batch:
    """2B trees merged: vertex rows in level order, per level the edges."""

    def __init__(self, trees, vocab):
        word, parent, level, roots = [], [], [], []
        base = 0
        for toks, heads in trees:
            w = toks.split(" ")
            h = [int(x) for x in heads.split(" ")]
            n = len(w)
            kids = [[] for _ in range(n)]
            root = -1
            for v in range(n):
                if h[v] == 0:
                    root = v
                else:
                    kids[h[v] - 1].append(v)
            lv = [0] * n
            order, stack = [], [(root, 0)]
            while stack:  # post-order: children first
                v, k = stack.pop()
                if k < len(kids[v]):
                    stack.append((v, k + 1))
                    stack.append((kids[v][k], 0))
                else:
                    order.append(v)
                    lv[v] = 1 + max((lv[c] for c in kids[v]), default=-1)
            for v in range(n):
                word.append(vocab.get(w[v], 0))
                parent.append(base + h[v] - 1 if h[v] else -1)
                level.append(lv[v])
            roots.append(base + root)
            base += n
        level = np.array(level)
        order = np.argsort(level, kind="stable")
        row = np.empty(len(order), np.int64)
        row[order] = np.arange(len(order))
        parent = np.array(parent)
        self.word = torch.from_numpy(np.array(word)[order])
        self.roots = torch.from_numpy(row[np.array(roots)])
        self.levels = []
        lv_sorted = level[order]
        for l in range(int(lv_sorted.max()) + 1):
            s, e = np.searchsorted(lv_sorted, l), np.searchsorted(lv_sorted, l, "right")
            kids = [int(row[v]) for v in range(len(parent))
                    if parent[v] >= 0 and s <= row[parent[v]] < e]
            par = [int(row[parent[int(order[k])]]) - s for k in kids]
            self.levels.append((int(s), int(e), torch.tensor(kids, dtype=torch.int64),
                                torch.tensor(par, dtype=torch.int64)))


class PairModel:
    def __init__(self, params: dict):
        t = lambda k: torch.nn.Parameter(torch.from_numpy(params[k].copy()))  # noqa: E731
        self.p = {k: t(k) for k in params}
        self.H = self.p["Uf"].shape[0]

    def loss(self, batch: Batch, targets: torch.Tensor):
        P, H = self.p, self.H
        N = batch.word.shape[0]
        x = torch.nn.functional.embedding(batch.word, P["embed"])
        gx = x.matmul(P["W"].t())                       # [N, 4H]: i o u f
        h_all = torch.zeros(N, H)
        c_all = torch.zeros(N, H)
        for s, e, kids, par in batch.levels:
            n = e - s
            hk, ck = h_all.index_select(0, kids), c_all.index_select(0, kids)
            htil = torch.zeros(n, H).index_add(0, par, hk)
            gh = torch.addmm(P["U.b"], htil, P["U"].t())  # [n, 3H]
            g = gx[s:e]
            f = torch.sigmoid(g[:, 3 * H:].index_select(0, par) + torch.addmm(P["Uf.b"], hk, P["Uf"].t()))
            fc = torch.zeros(n, H).index_add(0, par, f * ck)
            i = torch.sigmoid(g[:, :H] + gh[:, :H])
            o = torch.sigmoid(g[:, H:2 * H] + gh[:, H:2 * H])
            u = torch.tanh(g[:, 2 * H:3 * H] + gh[:, 2 * H:])
            c = i * u + fc
            h = o * torch.tanh(c)
            h_all[s:e] = h  # in place, as torch_level.py (index_select saves no input)
            c_all[s:e] = c
        r = h_all.index_select(0, batch.roots).view(-1, 2, H)
        hl, hr = r[:, 0], r[:, 1]
        hs = torch.sigmoid(torch.addmm(P["sim.W.b"], torch.cat([hl * hr, (hl - hr).abs()], 1),
                                       P["sim.W"].t()))
        y = torch.addmm(P["sim.out.b"], hs, P["sim.out"].t())
        logq = torch.log_softmax(y, 1)
        kl = torch.nn.functional.kl_div(logq, targets, reduction="sum")
        return kl * (1.0 / targets.shape[0])

    def loss_and_grads(self, batch, targets):
        for v in self.p.values():
            v.grad = None
        loss = self.loss(batch, targets)
        loss.backward()
        return float(loss.detach()), {k: v.grad.numpy() for k, v in self.p.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--ref", required=True)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--perturb", action="store_true", help="self-test: the check must fail")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    from safetensors.numpy import load_file
    params = {k: np.ascontiguousarray(v, np.float32)
              for k, v in load_file(os.path.join(args.ref, "params.safetensors")).items()}
    ref = load_file(os.path.join(args.ref, "grads.safetensors"))
    with open(os.path.join(args.ref, "batch.json")) as f:
        meta = json.load(f)
    with open(os.path.join(args.ref, "vocab.txt"), encoding="utf-8") as f:
        vocab = {w: i for i, w in enumerate(f.read().split("\n")) if w}
    at, ap_, bt, bp, sim = read_split(os.path.join(args.data, "train"))
    B = int(meta["pairs"])
    if args.perturb:
        params["W"].reshape(-1)[0] += 0.1

    def batch_of(idx):
        trees = []
        for k in idx:
            trees += [(at[k], ap_[k]), (bt[k], bp[k])]
        return Batch(trees, vocab), torch.from_numpy(np.stack([distribution(sim[k]) for k in idx]))

    model = PairModel(params)
    loss, grads = model.loss_and_grads(*batch_of(range(B)))
    errs = {"loss": abs(loss - meta["loss"]) / abs(meta["loss"])}
    errs.update({k: rel_err(grads[k], ref[k]) for k in ref})
    worst = max(errs.values())
    ok = bool(np.isfinite(worst) and worst <= TOL)
    print(f"[check] torch_pairs: {'ok' if ok else 'FAILED'} max rel err {worst:.2e} (tol {TOL:g}) | "
          + " ".join(f"{k}={v:.1e}" for k, v in errs.items()), flush=True)
    if args.perturb:
        print(f"[perturb] torch_pairs: the check {'FAILED as it must' if not ok else 'PASSED: BROKEN'}")
        return 0 if not ok else 1
    if not ok:
        return 3
    batches = [batch_of(range(s, s + B)) for s in range(0, len(sim) - B + 1, B)]
    model = PairModel({k: v for k, v in params.items()})
    model.loss_and_grads(*batches[0])  # warm-up
    done, t0, k = 0, time.perf_counter(), 0
    while done == 0 or time.perf_counter() - t0 < args.seconds:
        model.loss_and_grads(*batches[k % len(batches)])
        done += B
        k += 1
    secs = time.perf_counter() - t0
    res = {"system": "torch_pairs", "pairs_per_s": done / secs, "pairs": done, "batch": B,
           "check_max_rel_err": worst}
    print(f"torch_pairs: {done / secs:.0f} pairs/s ({done} pairs in {secs:.1f} s, batch {B}, forward + backward)")
    print(json.dumps(res))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
