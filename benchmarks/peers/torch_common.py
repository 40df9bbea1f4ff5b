"""PyTorch pieces shared by torch_eager.py and torch_level.py."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import common  # noqa: E402

torch.set_num_threads(1)
torch.set_num_interop_threads(1)


def pick_device(name: str, peer: str) -> torch.device:
    """torch.device for --device; on cuda, float32 matmuls without TF32 (the
    same-function check compares with copse's exact float32 to 1e-4). Exits
    with common.EXIT_NO_DEVICE, saying why, when there is no usable GPU."""
    if name == "cpu":
        return torch.device("cpu")
    try:
        torch.cuda.init()  # raises with the reason (no driver, CPU-only build, ...)
        if torch.cuda.device_count() == 0:
            raise RuntimeError("torch.cuda.device_count() is 0")
    except Exception as e:  # noqa: BLE001 - any failure means no usable GPU
        common.no_device(peer, f"{type(e).__name__}: {e}")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    return torch.device("cuda")


class TorchTreeLSTMBase:
    """Parameters as copse lays them out; embed is a sparse-gradient table
    (F.embedding(..., sparse=True)) updated by SparseAdam, the rest by Adam: the
    idiomatic PyTorch counterpart of copse's sparse-row embedding updates."""

    def __init__(self, params: dict, lr: float = 1e-3, device: torch.device = torch.device("cpu")):
        self.device = device
        t = lambda k: torch.nn.Parameter(torch.from_numpy(params[k].copy()).to(device))  # noqa: E731
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

    def tensor(self, a: np.ndarray, dtype=torch.int64) -> torch.Tensor:
        """A host array as a tensor on this model's device."""
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=self.device, dtype=dtype)

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

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
            grads[k] = g.detach().cpu().numpy().astype(np.float32)
        return float(loss.detach()), grads

    def train_step(self, trees):
        self.zero_grad()
        loss = self.loss(trees)
        loss.backward()
        self.opt.step()
        self.sparse_opt.step()
        return float(loss.detach())
