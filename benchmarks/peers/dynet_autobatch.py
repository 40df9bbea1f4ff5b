#!/usr/bin/env python3
"""Peer: DyNet (the `dynet38` wheel) with automatic batching (--dynet-autobatch 1).

Define-by-run like torch_eager (each tree's vertices written one by one,
recursively), but the whole batch is one computation graph and DyNet's
autobatcher groups the same-shaped operations across vertices and trees
before executing them. Embeddings are a LookupParameters table (sparse-row
updates), the rest Parameters; AdamTrainer lr 1e-3 with gradient clipping
off (DyNet clips at 5 by default; copse's run has no clipping)."""
from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import common  # noqa: E402

try:
    import dynet_config  # noqa: E402

    dynet_config.set(mem=os.environ.get("DYNET_MEM", "2048"), random_seed=1, autobatch=1)
    import dynet as dy  # noqa: E402
except ImportError as e:  # pragma: no cover
    print(f"dynet_autobatch: dynet is not installed ({e}); skipped", file=sys.stderr)
    sys.exit(common.EXIT_NOT_INSTALLED)


class DynetTreeLSTM:
    def __init__(self, params, lr=1e-3):
        self.pc = dy.ParameterCollection()
        self.E = self.pc.lookup_parameters_from_numpy(params["embed"])
        self.W = self.pc.parameters_from_numpy(params["W"])
        self.U = self.pc.parameters_from_numpy(params["U"])
        self.Ub = self.pc.parameters_from_numpy(params["U.b"])
        self.Wo = self.pc.parameters_from_numpy(params["out.W"])
        self.bo = self.pc.parameters_from_numpy(params["out.b"])
        self.H = params["U"].shape[0] // 5
        self.trainer = dy.AdamTrainer(self.pc, alpha=lr)
        self.trainer.set_clip_threshold(0)  # <= 0: no clipping

    def node(self, t, v, W, U, Ub, Wo, bo, zero, losses):
        H = self.H
        l, r = int(t.left[v]), int(t.right[v])
        if l < 0 and r < 0:  # leaf: W x + b
            g = W * dy.lookup(self.E, int(t.word[v])) + dy.pick_range(Ub, 0, 3 * H)
            i = dy.logistic(dy.pick_range(g, 0, H))
            o = dy.logistic(dy.pick_range(g, H, 2 * H))
            u = dy.tanh(dy.pick_range(g, 2 * H, 3 * H))
            c = dy.cmult(i, u)
        else:
            hl, cl = self.node(t, l, W, U, Ub, Wo, bo, zero, losses) if l >= 0 else (zero, zero)
            hr, cr = self.node(t, r, W, U, Ub, Wo, bo, zero, losses) if r >= 0 else (zero, zero)
            g = dy.affine_transform([Ub, U, dy.concatenate([hl, hr])])
            i = dy.logistic(dy.pick_range(g, 0, H))
            o = dy.logistic(dy.pick_range(g, H, 2 * H))
            u = dy.tanh(dy.pick_range(g, 2 * H, 3 * H))
            fl = dy.logistic(dy.pick_range(g, 3 * H, 4 * H))
            fr = dy.logistic(dy.pick_range(g, 4 * H, 5 * H))
            c = dy.cmult(i, u) + dy.cmult(fl, cl) + dy.cmult(fr, cr)
        h = dy.cmult(o, dy.tanh(c))
        if t.label[v] >= 0:
            losses.append(dy.pickneglogsoftmax(dy.affine_transform([bo, Wo, h]), int(t.label[v])))
        return h, c

    def loss(self, trees):
        dy.renew_cg()
        W, U, Ub, Wo, bo = self.W, self.U, self.Ub, self.Wo, self.bo  # added to the graph on use
        zero = dy.zeros(self.H)
        losses = []
        for t in trees:
            self.node(t, t.n - 1, W, U, Ub, Wo, bo, zero, losses)
        return dy.esum(losses) * (1.0 / len(trees))

    def loss_and_grads(self, trees):
        loss = self.loss(trees)
        value = loss.scalar_value()
        loss.backward()
        grads = {"embed": np.asarray(self.E.grad_as_array(), np.float32),
                 "W": self.W.grad_as_array(), "U": self.U.grad_as_array(),
                 "U.b": self.Ub.grad_as_array(), "out.W": self.Wo.grad_as_array(),
                 "out.b": self.bo.grad_as_array()}
        return value, {k: np.asarray(v, np.float32) for k, v in grads.items()}

    def train_step(self, trees):
        loss = self.loss(trees)
        value = loss.scalar_value()
        loss.backward()
        self.trainer.update()
        return value


def main(argv=None):
    args = common.arg_parser(__doc__).parse_args(argv)
    if args.device != "cpu":
        print("dynet_autobatch: CPU only (the dynet38 wheel has no CUDA); skipped", file=sys.stderr)
        return common.EXIT_NOT_INSTALLED
    sys.setrecursionlimit(100000)
    trees, vocab = common.load_treebank(args.data)
    return common.run_peer("dynet_autobatch", args, trees, vocab,
                           lambda p: DynetTreeLSTM(p, args.lr))


if __name__ == "__main__":
    sys.exit(main())
