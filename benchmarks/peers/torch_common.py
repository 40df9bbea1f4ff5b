"""PyTorch pieces shared by torch_eager.py and torch_level.py."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
torch.set_num_interop_threads(1)


class TorchTreeLSTMBase:
    """Parameters as copse lays them out; embed is a sparse-gradient table
    (F.embedding(..., sparse=True)) updated by SparseAdam, the rest by Adam: the
    idiomatic PyTorch counterpart of copse's sparse-row embedding updates."""

    def __init__(self, params: dict, lr: float = 1e-3):
        t = lambda k: torch.nn.Parameter(torch.from_numpy(params[k].copy()))  # noqa: E731
        self.embed = t("embed")
        self.W, self.U, self.Ub = t("W"), t("U"), t("U.b")
        self.Wo, self.bo = t("out.W"), t("out.b")
        self.H = self.U.shape[0] // 5
        self.dense = [self.W, self.U, self.Ub, self.Wo, self.bo]
        self.opt = torch.optim.Adam(self.dense, lr=lr)
        self.sparse_opt = torch.optim.SparseAdam([self.embed], lr=lr)

    def named(self):
        return {"embed": self.embed, "W": self.W, "U": self.U, "U.b": self.Ub,
                "out.W": self.Wo, "out.b": self.bo}

    def zero_grad(self):
        for p in self.named().values():
            p.grad = None

    def loss(self, trees):  # summed loss * 1/B, a scalar tensor
        raise NotImplementedError

    def loss_and_grads(self, trees):
        self.zero_grad()
        loss = self.loss(trees)
        loss.backward()
        grads = {}
        for k, p in self.named().items():
            g = p.grad
            if g is None:
                g = torch.zeros_like(p)
            elif g.is_sparse:
                g = g.coalesce().to_dense()
            grads[k] = g.detach().numpy().astype(np.float32)
        return float(loss.detach()), grads

    def train_step(self, trees):
        self.zero_grad()
        loss = self.loss(trees)
        loss.backward()
        self.opt.step()
        self.sparse_opt.step()
        return float(loss.detach())
