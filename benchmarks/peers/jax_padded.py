#!/usr/bin/env python3
"""Peer: JAX `jit` over batches padded to bucketed fixed shapes.

A batch is levelled as copse does (level 0 = every leaf), then padded:
leaves to NL rows (a power of two), the internal levels to LP levels (a
multiple of 8) of WP rows each (a power of two). The leaves run as one
[NL, E] x [E, 3H] GEMM; the internal levels as a `lax.scan` whose step
gathers the children's h and c (padding and absent children read a zero
row), runs one [WP, 2H] x [2H, 5H] GEMM and the gates, and writes its WP
rows; the loss masks padded and unlabelled rows. Each distinct padded shape
is compiled once (before the timed run). Embedding rows are gathered for
the batch's distinct words and updated lazily (Adam on those rows only, as
PyTorch's SparseAdam and copse's sparse-row updates); the dense parameters
get Adam.

With --device cuda, JAX runs on the GPU (JAX_PLATFORMS=cuda, float32 dots at
"highest" precision: no TF32)."""
from __future__ import annotations

import os
import sys


def _wants_cuda(argv) -> bool:
    """--device cuda, read before jax is imported (JAX_PLATFORMS is read then)."""
    for k, a in enumerate(argv):
        if a == "--device=cuda" or (a == "--device" and argv[k + 1:k + 2] == ["cuda"]):
            return True
    return False


GPU = _wants_cuda(sys.argv[1:])
if GPU:
    os.environ["JAX_PLATFORMS"] = "cuda"
else:
    os.environ.setdefault("XLA_FLAGS",
                          "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import common  # noqa: E402

try:
    import jax  # noqa: E402
    import jax.numpy as jnp  # noqa: E402
    from jax import lax  # noqa: E402
except ImportError as e:  # pragma: no cover
    print(f"jax_padded: jax is not installed ({e}); skipped", file=sys.stderr)
    sys.exit(common.EXIT_NOT_INSTALLED)


def check_device():
    """On --device cuda: a GPU backend, and float32 dots without TF32."""
    if not GPU:
        return
    try:
        devs = jax.devices()
    except Exception as e:  # noqa: BLE001 - "Unable to initialize backend 'cuda'", ...
        why = str(e) or (f"jax {jax.__version__} has no usable 'cuda' platform (no CUDA "
                         f"plugin installed, or no GPU)")
        common.no_device("jax_padded", f"{type(e).__name__}: {why}")
    if not devs or devs[0].platform != "gpu":
        common.no_device("jax_padded", f"jax.devices() is {devs}")
    jax.config.update("jax_default_matmul_precision", "highest")

DENSE = ["W", "U", "U.b", "out.W", "out.b"]


def pow2(n: int, lo: int) -> int:
    n = max(int(n), lo)
    return 1 << (n - 1).bit_length()


def pad_batch(trees, V):
    b = common.make_level_batch(trees)
    lp, N = b.level_ptr, b.N
    n0 = int(lp[1])
    widths = np.diff(lp)[1:]
    NL = pow2(n0, 64)
    LP = max(8, -(-len(widths) // 8) * 8)
    WP = pow2(widths.max() if len(widths) else 1, 8)
    R = NL + LP * WP
    Z = R  # the zero row
    newrow = np.empty(N + 1, np.int64)
    newrow[:n0] = np.arange(n0)
    for l in range(1, len(lp) - 1):
        s, e = int(lp[l]), int(lp[l + 1])
        newrow[s:e] = NL + (l - 1) * WP + np.arange(e - s)
    newrow[N] = Z
    left = np.full((LP, WP), Z, np.int32)
    right = np.full((LP, WP), Z, np.int32)
    for l in range(1, len(lp) - 1):
        s, e = int(lp[l]), int(lp[l + 1])
        left[l - 1, :e - s] = newrow[b.left[s:e]]
        right[l - 1, :e - s] = newrow[b.right[s:e]]
    label = np.full(R, -1, np.int32)
    label[newrow[:N]] = b.label
    uniq, inv = np.unique(b.word, return_inverse=True)
    UP = pow2(len(uniq), 64)
    uniq_p = np.full(UP, V, np.int32)  # V: out of range -> dropped on update, zeros on read
    uniq_p[:len(uniq)] = uniq
    words = np.zeros(NL, np.int32)
    words[:n0] = inv.reshape(-1)
    return dict(uniq=uniq_p, words=words, left=left, right=right, label=label,
                inv_b=np.float32(1.0 / len(trees))), len(uniq)


def loss_fn(dense, rows, words, left, right, label, inv_b):
    W, U, Ub, Wo, bo = (dense[k] for k in DENSE)
    H = Ub.shape[0] // 5
    NL = words.shape[0]
    LP, WP = left.shape
    R = NL + LP * WP
    bi, bo_, bu = Ub[:H], Ub[H:2 * H], Ub[2 * H:3 * H]
    g = rows[words] @ W.T
    c0 = jax.nn.sigmoid(g[:, :H] + bi) * jnp.tanh(g[:, 2 * H:] + bu)
    h0 = jax.nn.sigmoid(g[:, H:2 * H] + bo_) * jnp.tanh(c0)
    h_all = jnp.zeros((R + 1, H), h0.dtype).at[:NL].set(h0)
    c_all = jnp.zeros((R + 1, H), h0.dtype).at[:NL].set(c0)

    def level(carry, xs):
        h_all, c_all = carry
        li, ri, start = xs
        gh = jnp.concatenate([h_all[li], h_all[ri]], 1) @ U.T + Ub
        i, o, u, fl, fr = jnp.split(gh, 5, axis=1)
        c = (jax.nn.sigmoid(i) * jnp.tanh(u) + jax.nn.sigmoid(fl) * c_all[li]
             + jax.nn.sigmoid(fr) * c_all[ri])
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        h_all = lax.dynamic_update_slice(h_all, h, (start, 0))
        c_all = lax.dynamic_update_slice(c_all, c, (start, 0))
        return (h_all, c_all), None

    starts = NL + jnp.arange(LP, dtype=jnp.int32) * WP
    (h_all, _), _ = lax.scan(level, (h_all, c_all), (left, right, starts))
    logits = h_all[:R] @ Wo.T + bo
    mask = label >= 0
    picked = jnp.take_along_axis(logits, jnp.maximum(label, 0)[:, None], 1)[:, 0]
    xent = jax.nn.logsumexp(logits, 1) - picked
    return jnp.sum(jnp.where(mask, xent, 0.0)) * inv_b


def grads_fn(dense, embed, uniq, words, left, right, label, inv_b):
    rows = jnp.take(embed, uniq, axis=0, mode="fill", fill_value=0)
    return jax.value_and_grad(loss_fn, argnums=(0, 1))(dense, rows, words, left, right, label,
                                                       inv_b)


def adam(p, g, m, v, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    mh = m / (1 - b1 ** t)
    vh = v / (1 - b2 ** t)
    return p - lr * mh / (jnp.sqrt(vh) + eps), m, v


def step_fn(state, uniq, words, left, right, label, inv_b, lr):
    dense, embed, m, v, me, ve, t = state
    loss, (gd, grows) = grads_fn(dense, embed, uniq, words, left, right, label, inv_b)
    t = t + 1
    nd, nm, nv = {}, {}, {}
    for k in DENSE:
        nd[k], nm[k], nv[k] = adam(dense[k], gd[k], m[k], v[k], t, lr)
    # lazy (sparse-row) Adam on the batch's distinct words; padding (id V) is dropped
    er = jnp.take(embed, uniq, axis=0, mode="fill", fill_value=0)
    mr = jnp.take(me, uniq, axis=0, mode="fill", fill_value=0)
    vr = jnp.take(ve, uniq, axis=0, mode="fill", fill_value=0)
    er, mr, vr = adam(er, grows, mr, vr, t, lr)
    embed = embed.at[uniq].set(er, mode="drop")
    me = me.at[uniq].set(mr, mode="drop")
    ve = ve.at[uniq].set(vr, mode="drop")
    return (nd, embed, nm, nv, me, ve, t), loss


class JaxPadded:
    def __init__(self, params, lr=1e-3):
        self.V = params["embed"].shape[0]
        dense = {k: jnp.asarray(params[k]) for k in DENSE}
        embed = jnp.asarray(params["embed"])
        zeros = {k: jnp.zeros_like(v) for k, v in dense.items()}
        self.state = (dense, embed, zeros, dict(zeros), jnp.zeros_like(embed),
                      jnp.zeros_like(embed), jnp.float32(0))
        self.lr = np.float32(lr)
        self._grads = jax.jit(grads_fn)
        self._step = jax.jit(step_fn)
        self.shapes = set()

    @staticmethod
    def _args(pb):
        return (pb["uniq"], pb["words"], pb["left"], pb["right"], pb["label"], pb["inv_b"])

    def loss_and_grads(self, trees):
        pb, nu = pad_batch(trees, self.V)
        dense, embed = self.state[0], self.state[1]
        loss, (gd, grows) = self._grads(dense, embed, *self._args(pb))
        grads = {k: np.asarray(gd[k], np.float32) for k in DENSE}
        ge = np.zeros(embed.shape, np.float32)
        ge[pb["uniq"][:nu]] = np.asarray(grows)[:nu]
        grads["embed"] = ge
        return float(loss), grads

    def precompile(self, batches):
        for b in batches:
            pb, _ = pad_batch(b, self.V)
            key = tuple(v.shape for v in self._args(pb)[:-1])
            if key not in self.shapes:
                self.shapes.add(key)
                _, loss = self._step(self.state, *self._args(pb), self.lr)  # result dropped
                loss.block_until_ready()
        return len(self.shapes)

    def train_step(self, trees):
        pb, _ = pad_batch(trees, self.V)
        self.state, loss = self._step(self.state, *self._args(pb), self.lr)
        return float(loss)

    def sync(self):
        jax.block_until_ready(self.state)


def main(argv=None):
    args = common.arg_parser(__doc__).parse_args(argv)
    if (args.device == "cuda") != GPU:
        raise SystemExit("jax_padded: --device must be given on the command line (read before "
                         "jax is imported)")
    check_device()
    trees, vocab = common.load_treebank(args.data)
    return common.run_peer("jax_padded", args, trees, vocab, lambda p: JaxPadded(p, args.lr))


if __name__ == "__main__":
    sys.exit(main())
