#!/usr/bin/env python3
"""Peer: PyTorch eager, recursive per tree (the define-by-run baseline).

Every vertex is its own little graph of ops: a [1, E] x [E, 3H] GEMM at a
leaf, a [1, 2H] x [2H, 5H] GEMM at an internal vertex, then the elementwise
gates; the head runs once per tree over the stacked vertex states; the batch
loss is the sum over trees times 1/B, one backward per batch. With --device
cuda every one of those small ops is a GPU kernel (float32, TF32 off)."""
from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

import common
from torch_common import TorchTreeLSTMBase, pick_device


class EagerTreeLSTM(TorchTreeLSTMBase):
    def __init__(self, params, lr=1e-3, device=torch.device("cpu")):
        super().__init__(params, lr, device)
        self.zero = torch.zeros(1, self.H, device=device)

    def node(self, t, words, v, hs):
        H = self.H
        l, r = int(t.left[v]), int(t.right[v])
        if l < 0 and r < 0:  # leaf: W x + b   (U [0; 0] = 0)
            x = F.embedding(words[v:v + 1], self.embed, sparse=True)
            g = x.matmul(self.W.t())
            i = torch.sigmoid(g[:, :H] + self.Ub[:H])
            o = torch.sigmoid(g[:, H:2 * H] + self.Ub[H:2 * H])
            u = torch.tanh(g[:, 2 * H:] + self.Ub[2 * H:3 * H])
            c = i * u  # + sig(fl) * 0 + sig(fr) * 0
        else:
            hl, cl = self.node(t, words, l, hs) if l >= 0 else (self.zero, self.zero)
            hr, cr = self.node(t, words, r, hs) if r >= 0 else (self.zero, self.zero)
            g = torch.cat([hl, hr], 1).matmul(self.U.t()) + self.Ub
            i, o, u, fl, fr = g.chunk(5, 1)
            c = (torch.sigmoid(i) * torch.tanh(u) + torch.sigmoid(fl) * cl
                 + torch.sigmoid(fr) * cr)
            o = torch.sigmoid(o)
        h = o * torch.tanh(c)
        hs[v] = h
        return h, c

    def tree_loss(self, t):
        hs = [None] * t.n
        words = self.tensor(t.word)  # one copy per tree; a leaf reads its row as a view
        self.node(t, words, t.n - 1, hs)  # the root is the last vertex
        logits = torch.cat(hs, 0).matmul(self.Wo.t()) + self.bo
        return F.cross_entropy(logits, self.tensor(t.label), ignore_index=-1, reduction="sum")

    def loss(self, trees):
        total = self.tree_loss(trees[0])
        for t in trees[1:]:
            total = total + self.tree_loss(t)
        return total * (1.0 / len(trees))


def main(argv=None):
    args = common.arg_parser(__doc__).parse_args(argv)
    sys.setrecursionlimit(100000)
    device = pick_device(args.device, "torch_eager")
    trees, vocab = common.load_treebank(args.data)
    return common.run_peer("torch_eager", args, trees, vocab,
                           lambda p: EagerTreeLSTM(p, args.lr, device))


if __name__ == "__main__":
    sys.exit(main())
