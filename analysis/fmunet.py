"""The U-Net of DESIGN.md section 6 in numpy (float64): the executable specification of fmtrain's
`model.type = unet`, read from a checkpoint's tensors by their PyTorch state_dict paths.

    import fmtools
    ck = fmtools.load_checkpoint("runs/fashion-unet/checkpoint.h5")
    u = fmtools.velocity(ck, x, t=0.5, y=3)     # x [N, C*H*W] rows, as fmtrain's samples

Layouts as PyTorch's: images [N, C, H, W], conv weights [out, in, 3, 3].
"""
import numpy as np

GN_EPS = 1e-5


def conv3x3(p, name, x, stride=1):
    """A 3 x 3 convolution with padding 1: out[n, o, i, j] = b[o] +
    sum over c, ky, kx of w[o, c, ky, kx] x[n, c, i*stride + ky - 1, j*stride + kx - 1]."""
    w, b = p[f"{name}/weight"], p[f"{name}/bias"]
    n, c, h, wd = x.shape
    ho, wo = (h - 1) // stride + 1, (wd - 1) // stride + 1
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.broadcast_to(b[None, :, None, None], (n, w.shape[0], ho, wo)).copy()
    for ky in range(3):
        for kx in range(3):
            patch = xp[:, :, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, ky, kx])
    return out


def group_norm(p, name, x, groups):
    """Each image's channels in `groups` groups, normalised (biased variance), then scaled."""
    n, c, h, w = x.shape
    g = x.reshape(n, groups, c // groups, h, w)
    mean = g.mean(axis=(2, 3, 4), keepdims=True)
    var = g.var(axis=(2, 3, 4), keepdims=True)
    xhat = ((g - mean) / np.sqrt(var + GN_EPS)).reshape(n, c, h, w)
    return xhat * p[f"{name}/weight"][None, :, None, None] + p[f"{name}/bias"][None, :, None, None]


def silu(x):
    return x / (1.0 + np.exp(-x))


def linear(p, name, x):
    return x @ p[f"{name}/weight"].T + p[f"{name}/bias"]


def adapter(p, name, e):
    """Linear(e -> e), SiLU, Linear(e -> c): the attributes 0 and 2 of an nn.Sequential."""
    return linear(p, f"{name}/2", silu(linear(p, f"{name}/0", e)))


def block(p, name, x, et, ey, groups):
    h = conv3x3(p, f"{name}/c1", group_norm(p, f"{name}/n1", silu(x), groups))
    h = h + adapter(p, f"{name}/ta", et)[:, :, None, None]
    if ey is not None:
        h = h + adapter(p, f"{name}/ya", ey)[:, :, None, None]
    return x + conv3x3(p, f"{name}/c2", group_norm(p, f"{name}/n2", silu(h), groups))


def velocity(ck, x, t, y):
    """u(x, t, y) on rows x [N, C*H*W]; t [N]; y [N] labels or None (no label)."""
    cfg = ck.config
    p = {k: v.astype(np.float64) for k, v in ck.params.items()}
    shape = [int(v) for v in cfg["data"]["shape"].split(",")]
    levels = len(cfg["model"]["channels"].split(","))
    blocks, groups = int(cfg["model"]["res_blocks"]), int(cfg["model"]["groups"])
    # embeddings: e_t = sqrt 2 [sin 2 pi w t, cos 2 pi w t]; e_y = row y of ye (row K: no label)
    a = 2 * np.pi * t[:, None] * p["te/w"].ravel()[None, :]
    et = np.sqrt(2) * np.concatenate([np.sin(a), np.cos(a)], axis=1)
    ey = None
    if ck.classes:
        ey = p["ye/weight"][np.full(len(x), ck.classes) if y is None else np.asarray(y)]
    z = silu(group_norm(p, "init_n", conv3x3(p, "init", x.reshape([-1] + shape)), groups))
    skips = []
    for lv in range(levels - 1):
        for b in range(blocks):
            z = block(p, f"enc/{lv}/{b}", z, et, ey, groups)
        skips.append(z)
        z = conv3x3(p, f"down/{lv}", z, stride=2)
    for b in range(blocks):
        z = block(p, f"mid/{b}", z, et, ey, groups)
    for k in range(levels - 1):
        z = conv3x3(p, f"up/{k}", z.repeat(2, axis=2).repeat(2, axis=3)) + skips.pop()
        for b in range(blocks):
            z = block(p, f"dec/{k}/{b}", z, et, ey, groups)
    return conv3x3(p, "final", z).reshape(len(x), -1)
