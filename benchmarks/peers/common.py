"""Shared pieces of the peer benchmark suite.

Every peer implements the SAME binary Tree-LSTM as copse (models/tree_lstm.cpp,
models/sentiment_model.cpp), with copse's parameter names and layouts
(PyTorch layout [out, in], y = x W^T):

    embed  [V, E]    word vectors (leaves only)
    W      [3H, E]   no bias, applied to the leaf word vector; gates i, o, u
    U      [5H, 2H]  applied to [h_l; h_r] (zeros for an absent child)
    U.b    [5H]      gates i, o, u, fl, fr
    out.W  [5, H], out.b [5]

    [i o u] = W x (leaves; 0 elsewhere);  [i o u fl fr] += U [h_l; h_r] + b
    c = sig(i) tanh(u) + sig(fl) c_l + sig(fr) c_r;   h = sig(o) tanh(c)
    loss = (1/B) * sum over labelled vertices of softmax cross-entropy(out(h))

This module reads PTB trees exactly as copse does (models/ptb_reader.cpp:
a word is any run of bytes other than space, tab, '(' and ')'), builds the
vocabulary as models/train.cpp does (<unk> = 0, then words in first-appearance
order over the training file), loads DIR/params.safetensors written by
build/dump_first_batch, and implements the same-function check against
DIR/grads.safetensors and DIR/batch.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

PARAM_NAMES = ["embed", "W", "U", "U.b", "out.W", "out.b"]
CHECK_TOL = 1e-4
# Exit statuses of a peer: 0 ok, 3 the same-function check failed (not timed),
# 4 the framework is not installed (skipped), 5 --device cuda without a usable GPU.
EXIT_CHECK_FAILED, EXIT_NOT_INSTALLED, EXIT_NO_DEVICE = 3, 4, 5


def no_device(name: str, reason: str):
    """Ends a peer asked for --device cuda on a machine without a usable GPU."""
    print(f"{name}: --device cuda: no usable GPU: {reason}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_NO_DEVICE)


# --------------------------------------------------------------------------- trees
@dataclass
class Tree:
    """One tree, vertices in post-order (children first, root last)."""
    left: np.ndarray    # [n] int32 child in slot 0, -1 if none
    right: np.ndarray   # [n] int32 child in slot 1, -1 if none
    word: np.ndarray    # [n] int32 vocabulary id at leaves, -1 elsewhere
    label: np.ndarray   # [n] int32
    level: np.ndarray   # [n] int32: 0 for leaves, 1 + max(child level) otherwise
    tokens: list        # [n] bytes or None

    @property
    def n(self) -> int:
        return len(self.label)


def _parse_line(line: bytes, where: str) -> Tree:
    """Iterative parser of one PTB line: '(' LABEL WORD ')' | '(' LABEL tree+ ')'."""
    if line.endswith(b"\r"):
        line = line[:-1]
    kids_stack: list = []   # children of each open node
    label_stack: list = []
    label, tokens, children = [], [], []
    i, n = 0, len(line)
    sep = b" \t"
    root = -1
    while i < n:
        ch = line[i:i + 1]
        if ch in (b" ", b"\t"):
            i += 1
        elif ch == b"(":
            i += 1
            j = i
            while j < n and line[j:j + 1] not in (b" ", b"\t", b"(", b")"):
                j += 1
            label_stack.append(int(line[i:j]))
            kids_stack.append([])
            i = j
        elif ch == b")":
            kids = kids_stack.pop()
            lab = label_stack.pop()
            if isinstance(kids, list) and kids and isinstance(kids[0], bytes):
                v = len(label)
                label.append(lab), tokens.append(kids[0]), children.append([])
            else:
                v = len(label)
                label.append(lab), tokens.append(None), children.append(list(kids))
            if kids_stack:
                kids_stack[-1].append(v)
            else:
                root = v
            i += 1
        else:
            j = i
            while j < n and line[j:j + 1] not in (b" ", b"\t", b"(", b")"):
                j += 1
            kids_stack[-1].append(line[i:j])
            i = j
    if root < 0 or kids_stack:
        raise ValueError(f"{where}: malformed tree")
    nv = len(label)
    left = np.full(nv, -1, np.int32)
    right = np.full(nv, -1, np.int32)
    level = np.zeros(nv, np.int32)
    for v, ks in enumerate(children):
        if len(ks) > 2:
            raise ValueError(f"{where}: vertex with {len(ks)} children (binary Tree-LSTM only)")
        if ks:
            left[v] = ks[0]
            level[v] = 1 + max(level[k] for k in ks)
        if len(ks) == 2:
            right[v] = ks[1]
    return Tree(left, right, np.full(nv, -1, np.int32), np.asarray(label, np.int32), level,
                tokens)


def read_ptb(path: str) -> list:
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [_parse_line(l, f"{path}:{k + 1}") for k, l in enumerate(lines)]


def build_vocab(trees: list) -> dict:
    """<unk> = 0, then words in first-appearance order (as models/train.cpp)."""
    vocab = {b"<unk>": 0}
    for t in trees:
        for tok in t.tokens:
            if tok is not None and tok not in vocab:
                vocab[tok] = len(vocab)
    for t in trees:
        t.word = np.asarray([vocab.get(tok, 0) if tok is not None else -1 for tok in t.tokens],
                            np.int32)
    return vocab


def load_treebank(path: str):
    trees = read_ptb(path)
    vocab = build_vocab(trees)
    return trees, vocab


# --------------------------------------------------------------------------- batching
@dataclass
class LevelBatch:
    """B trees merged and renumbered level-major (as copse's GraphBatch).

    Rows [level_ptr[l], level_ptr[l+1]) hold level l; level 0 is every leaf.
    left/right give child rows, N (one past the last row) for an absent child,
    so a state buffer with a zero row at N serves every gather."""
    num_trees: int
    N: int
    level_ptr: np.ndarray  # [L+1]
    left: np.ndarray       # [N] child row or N
    right: np.ndarray      # [N]
    word: np.ndarray       # [n_leaves] vocabulary ids of level 0
    label: np.ndarray      # [N] -1 = unlabelled


def make_level_batch(trees: list) -> LevelBatch:
    sizes = np.fromiter((t.n for t in trees), np.int64, len(trees))
    off = np.concatenate([[0], np.cumsum(sizes)])
    N = int(off[-1])
    level = np.concatenate([t.level for t in trees])
    left = np.concatenate([np.where(t.left >= 0, t.left + o, -1) for t, o in zip(trees, off)])
    right = np.concatenate([np.where(t.right >= 0, t.right + o, -1) for t, o in zip(trees, off)])
    word = np.concatenate([t.word for t in trees])
    label = np.concatenate([t.label for t in trees])
    order = np.argsort(level, kind="stable")          # level-major, (tree, vertex) inside
    row = np.empty(N, np.int64)
    row[order] = np.arange(N)
    row_ext = np.append(row, N)                        # -1 -> N (the zero row)
    L = int(level.max()) + 1
    level_ptr = np.searchsorted(level[order], np.arange(L + 1))
    n_leaves = int(level_ptr[1])
    return LevelBatch(len(trees), N, level_ptr, row_ext[left[order]], row_ext[right[order]],
                      word[order][:n_leaves], label[order])


# --------------------------------------------------------------------------- checks
def load_params(ref_dir: str) -> dict:
    from safetensors.numpy import load_file
    p = load_file(os.path.join(ref_dir, "params.safetensors"))
    missing = [k for k in PARAM_NAMES if k not in p]
    if missing:
        raise SystemExit(f"{ref_dir}/params.safetensors lacks {missing}")
    return {k: np.ascontiguousarray(p[k], dtype=np.float32) for k in PARAM_NAMES}


def load_reference(ref_dir: str):
    from safetensors.numpy import load_file
    g = load_file(os.path.join(ref_dir, "grads.safetensors"))
    with open(os.path.join(ref_dir, "batch.json")) as f:
        meta = json.load(f)
    return meta, {k: np.asarray(g[k], np.float32) for k in PARAM_NAMES}


def check_vocab(ref_dir: str, vocab: dict) -> None:
    with open(os.path.join(ref_dir, "vocab.txt"), "rb") as f:
        words = f.read().split(b"\n")
    if words and words[-1] == b"":
        words.pop()
    mine = list(vocab.keys())
    if words != mine:
        k = next((i for i, (a, b) in enumerate(zip(words, mine)) if a != b), min(len(words), len(mine)))
        raise SystemExit(f"vocabulary differs from copse's at id {k} "
                         f"({len(mine)} vs {len(words)} words)")


def rel_err(mine: np.ndarray, ref: np.ndarray) -> float:
    mine = np.asarray(mine, np.float64)
    ref = np.asarray(ref, np.float64)
    if mine.shape != ref.shape:
        return float("inf")
    den = np.linalg.norm(ref)
    num = np.linalg.norm(mine - ref)
    if den == 0:
        return float(num)
    return float(num / den)


def same_function_check(name: str, loss: float, grads: dict, ref_dir: str, tol: float = CHECK_TOL):
    """Compares a peer's first-batch loss and every gradient with copse's.

    Returns (ok, max_rel_err, {tensor: rel_err}) and prints one line."""
    meta, ref = load_reference(ref_dir)
    errs = {"loss": abs(loss - meta["loss"]) / max(abs(meta["loss"]), 1e-30)}
    for k in PARAM_NAMES:
        errs[k] = rel_err(grads[k], ref[k]) if k in grads else float("inf")
    worst = max(errs.values())
    ok = bool(np.isfinite(worst) and worst <= tol)
    detail = " ".join(f"{k}={v:.2e}" for k, v in errs.items())
    print(f"[check] {name}: {'ok' if ok else 'FAILED'} max rel err {worst:.2e} (tol {tol:g}) | {detail}",
          flush=True)
    return ok, worst, errs


def perturb(params: dict, name: str = "W", delta: float = 0.1) -> dict:
    """One weight of `name` (W[0, 0]: the input gate of unit 0 from word dim 0) moved by
    `delta` (W is Xavier U[-0.11, 0.11] at E=H=128); moves the check to ~5e-4."""
    p = {k: v.copy() for k, v in params.items()}
    p[name].reshape(-1)[0] += delta
    return p


# --------------------------------------------------------------------------- driver
def arg_parser(desc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=desc)
    ap.add_argument("--data", required=True, help="PTB file (SST train.txt)")
    ap.add_argument("--ref", required=True, help="directory written by build/dump_first_batch")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--trees", type=int, default=2048, help="timed trees (rounded up to batches)")
    ap.add_argument("--seconds", type=float, default=20.0, help="stop timing after this long")
    ap.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="where the peer computes (cuda: float32 without TF32; "
                         "the check still compares with copse's CPU reference)")
    ap.add_argument("--distinct-batches", type=int, default=0,
                    help="cycle over this many distinct batches in the timed run "
                         "(0: every batch distinct); bounds a JIT peer's compilations")
    ap.add_argument("--perturb", action="store_true",
                    help="self-test: move one weight (W[0, 0]) by 0.1; the check must fail")
    ap.add_argument("--check-only", action="store_true")
    ap.add_argument("--json", help="append a JSON result line to this file")
    return ap


def timing_order(num_trees: int, seed: int = 7) -> np.ndarray:
    return np.random.RandomState(seed).permutation(num_trees)


def run_peer(name: str, args, trees, vocab, make_model):
    """The check on the first batch (file order), then the timed training loop.

    make_model(params: dict[str, np.ndarray]) returns an object with
      loss_and_grads(trees) -> (float loss, {name: np.ndarray grad})   (no update)
      train_step(trees) -> float loss   (forward + backward + Adam step)
      sync() (optional) -> waits for the device; called before the clock starts and stops
    Exit status: 0 ok, 3 when the same-function check fails."""
    check_vocab(args.ref, vocab)
    meta, _ = load_reference(args.ref)
    cfg = meta["config"]
    if cfg["batch"] != args.batch:
        raise SystemExit(f"{args.ref} was dumped with batch {cfg['batch']}, not {args.batch}")
    params = load_params(args.ref)
    if args.perturb:
        params = perturb(params)
    first = [trees[i] for i in meta["trees"]]
    model = make_model(params)
    loss, grads = model.loss_and_grads(first)
    ok, worst, errs = same_function_check(name, loss, grads, args.ref)
    result = {"system": name, "embed": cfg["embed"], "hidden": cfg["hidden"], "batch": args.batch,
              "device": args.device, "check_ok": ok, "check_max_rel_err": worst, "check": errs,
              "trees_per_s": None}
    if args.perturb:
        print(f"[perturb] {name}: the check {'FAILED as it must' if not ok else 'PASSED: BROKEN'}",
              flush=True)
        ok = not ok
        _emit(args, result)
        return 0 if ok else 1
    if not ok:
        print(f"{name}: FAILED the same-function check; not timed", flush=True)
        _emit(args, result)
        return EXIT_CHECK_FAILED
    if args.check_only:
        _emit(args, result)
        return 0
    model = make_model(load_params(args.ref))  # fresh parameters for the timed run
    order = timing_order(len(trees))
    steps_max = args.warmup + max(2, -(-args.trees // args.batch))
    distinct = min(args.distinct_batches, steps_max) if args.distinct_batches > 0 else steps_max
    batches = [[trees[order[(s * args.batch + j) % len(order)]] for j in range(args.batch)]
               for s in range(distinct)]
    if hasattr(model, "precompile"):  # JIT peers: compile every shape the run will see, untimed
        t = time.perf_counter()
        n = model.precompile(batches)
        print(f"{name}: compiled {n} shapes in {time.perf_counter() - t:.1f} s (untimed)", flush=True)
    sync = getattr(model, "sync", lambda: None)
    for s in range(args.warmup):
        model.train_step(batches[s % distinct])
    done = steps = 0
    sync()
    t0 = time.perf_counter()
    for s in range(args.warmup, steps_max):
        if steps >= 2 and time.perf_counter() - t0 >= args.seconds:
            break
        loss = model.train_step(batches[s % distinct])
        if not np.isfinite(loss):
            raise SystemExit(f"{name}: non-finite loss")
        done += args.batch
        steps += 1
    sync()
    secs = time.perf_counter() - t0
    result.update(trees=done, seconds=secs, trees_per_s=done / secs, distinct_batches=distinct)
    print(f"{name}: {done / secs:.1f} trees/s ({done} trees in {secs:.2f} s, batch {args.batch}, "
          f"{args.device})", flush=True)
    _emit(args, result)
    return 0


def _emit(args, result):
    line = json.dumps(result)
    print(line, flush=True)
    if args.json:
        with open(args.json, "a") as f:
            f.write(line + "\n")
