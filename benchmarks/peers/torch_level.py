#!/usr/bin/env python3
"""Peer: PyTorch level-batched (the DGL Tree-LSTM approach).

The batch is merged and levelled (level 0 = every leaf); per level: an index
gather of the children's h and c from one state buffer (a zero row stands for
an absent child), one GEMM, the elementwise gates, a write of the level's rows
back into the buffer. Leaves: one embedding gather and one [n0, E] x [E, 3H]
GEMM. The head is one GEMM over every vertex, the loss one cross-entropy.
With --device cuda all of it runs on the GPU (float32, TF32 off)."""
from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

import common
from torch_common import TorchTreeLSTMBase, pick_device


class LevelTreeLSTM(TorchTreeLSTMBase):
    def loss(self, trees):
        b = common.make_level_batch(trees)
        H, N, lp = self.H, b.N, b.level_ptr
        left = self.tensor(b.left)
        right = self.tensor(b.right)
        h_all = torch.zeros(N + 1, H, device=self.device)
        c_all = torch.zeros(N + 1, H, device=self.device)
        bi, bo, bu, bfl, bfr = self.Ub.chunk(5)
        # level 0: the leaves (W x + b; the children are absent, U [0; 0] = 0)
        x = F.embedding(self.tensor(b.word), self.embed, sparse=True)
        g = x.matmul(self.W.t())
        i, o, u = g.chunk(3, 1)
        c = torch.sigmoid(i + bi) * torch.tanh(u + bu)
        h = torch.sigmoid(o + bo) * torch.tanh(c)
        n0 = int(lp[1])
        h_all[:n0] = h
        c_all[:n0] = c
        for l in range(1, len(lp) - 1):
            s, e = int(lp[l]), int(lp[l + 1])
            li, ri = left[s:e], right[s:e]
            hlr = torch.cat([h_all.index_select(0, li), h_all.index_select(0, ri)], 1)
            g = torch.addmm(self.Ub, hlr, self.U.t())
            i, o, u, fl, fr = g.chunk(5, 1)
            c = (torch.sigmoid(i) * torch.tanh(u) + torch.sigmoid(fl) * c_all.index_select(0, li)
                 + torch.sigmoid(fr) * c_all.index_select(0, ri))
            h = torch.sigmoid(o) * torch.tanh(c)
            h_all[s:e] = h
            c_all[s:e] = c
        logits = torch.addmm(self.bo, h_all[:N], self.Wo.t())
        loss = F.cross_entropy(logits, self.tensor(b.label), ignore_index=-1, reduction="sum")
        return loss * (1.0 / len(trees))


def main(argv=None):
    args = common.arg_parser(__doc__).parse_args(argv)
    device = pick_device(args.device, "torch_level")
    trees, vocab = common.load_treebank(args.data)
    return common.run_peer("torch_level", args, trees, vocab,
                           lambda p: LevelTreeLSTM(p, args.lr, device))


if __name__ == "__main__":
    sys.exit(main())
