"""Writes reference.json, the numbers models/biggan's tests compare with, from ajbrock/BigGAN-PyTorch.

Run (Debian's python3-torch 1.13; BigGAN.py needs only torch, numpy and the repository's layers.py
and sync_batchnorm/):

    git clone https://github.com/ajbrock/BigGAN-PyTorch /tmp/biggan   # commit 9845943 was used
    /usr/bin/python3 models/biggan/testdata/make_reference.py /tmp/biggan > models/biggan/testdata/reference.json

It records:
  - counts: sum(p.numel() for p in parameters()) of BigGAN.Generator and BigGAN.Discriminator built
    with the flags of our configurations (biggan_128: those of scripts/launch_BigGAN_bs256x8.sh;
    biggan_256: those of TFHub/converter.py's get_config(256), with D's attention at 128 px);
  - micro: a conditional 16x16 BigGAN (hierarchical latent, shared embedding, attention in G and
    D) whose parameters and spectral-norm vectors u0 are set by det_values (mirrored by detValues
    in the Go test), run once in float64 in training mode (BN batch statistics, one power
    iteration) on deterministic latents and labels: G's image (NHWC), a summary (sum, sum of
    squares) of the linear layer's map and of each block's output, and D's logits on that image.
"""
import contextlib
import io
import json
import math
import sys

import torch

sys.path.insert(0, sys.argv[1])
import BigGAN  # noqa: E402

COUNTS = {
    "biggan_128": dict(resolution=128, G_ch=96, D_ch=96, dim_z=120, G_attn="64", D_attn="64", n_classes=1000),
    # The paper's 256 model (TFHub/converter.py's get_config(256): G_attn '128', dim_z 140), D's
    # attention after its first (128 px) block.
    "biggan_256": dict(resolution=256, G_ch=96, D_ch=96, dim_z=140, G_attn="128", D_attn="128", n_classes=1000),
    # What biggan_256 was before: the 128 model's flags (--dim_z 120, rounded down to 119 by the
    # reference, attention at 64) on the 256 architecture.
    "biggan_256_attn64_z120": dict(resolution=256, G_ch=96, D_ch=96, dim_z=120, G_attn="64", D_attn="64", n_classes=1000),
    # The 256 architecture with the 128 model's latent and the paper's attention placement.
    "biggan_256_attn128_z120": dict(resolution=256, G_ch=96, D_ch=96, dim_z=120, G_attn="128", D_attn="128", n_classes=1000),
    "biggan_tiny": dict(resolution=32, G_ch=32, D_ch=32, dim_z=128, G_attn="16", D_attn="0", n_classes=10),
    # The conditional version of biggan_small (which is unconditional).
    "biggan_small_cond10": dict(resolution=64, G_ch=32, D_ch=32, dim_z=120, G_attn="32", D_attn="32", n_classes=10),
}
COMMON = dict(G_shared=True, shared_dim=128, hier=True)


def count(m):
    return sum(p.numel() for p in m.parameters())


def det_values(key, n):
    """Deterministic parameter values: 0.5 sin(0.37 i + 0.01 s + 0.1), s = the sum of the key's bytes."""
    s = sum(key.encode())
    return [0.5 * math.sin(0.37 * i + 0.01 * s + 0.1) for i in range(n)]


# The micro model: G 4x4 -> 8 -> 16 with channels 16, 16, 8 and attention at 8; D 16 -> 8 -> 4 -> 4
# with channels 8, 16, 16 and attention at 8.
def micro_G_arch(ch=64, attention="64", ksize="333333", dilation="111111"):
    return {16: {"in_channels": [ch * m for m in [4, 4]], "out_channels": [ch * m for m in [4, 2]],
                 "upsample": [True] * 2, "resolution": [8, 16], "attention": {8: True, 16: False}}}


def micro_D_arch(ch=64, attention="64", ksize="333333", dilation="111111"):
    return {16: {"in_channels": [3] + [ch * m for m in [2, 4]], "out_channels": [ch * m for m in [2, 4, 4]],
                 "downsample": [True, True, False], "resolution": [8, 4, 4], "attention": {8: True, 4: False}}}


def summary(t):
    return {"sum": t.sum().item(), "sumsq": (t * t).sum().item(), "shape_nchw": list(t.shape)}


def micro():
    BigGAN.G_arch, BigGAN.D_arch = micro_G_arch, micro_D_arch
    kw = dict(resolution=16, G_ch=4, D_ch=4, dim_z=6, shared_dim=4, hier=True, G_shared=True,
              G_attn="8", D_attn="8", n_classes=5, skip_init=True)
    with contextlib.redirect_stdout(io.StringIO()):
        G, D = BigGAN.Generator(**kw).double(), BigGAN.Discriminator(**kw).double()
    keys = {}
    for prefix, net in (("G", G), ("D", D)):
        for name, t in list(net.named_parameters()) + list(net.named_buffers()):
            if name.endswith(("stored_mean", "stored_var")) or name.startswith("sv") or ".sv" in name:
                continue  # running statistics (unused in training mode) and logged singular values
            with torch.no_grad():
                t.copy_(torch.tensor(det_values(name, t.numel()), dtype=torch.float64).view(t.shape))
            keys.setdefault(prefix, []).append([name, list(t.shape)])
    G.train()
    D.train()
    n = 3
    z = torch.tensor([[math.sin(0.7 * i + 0.3 * j + 0.2) for j in range(G.dim_z)] for i in range(n)], dtype=torch.float64)
    y = torch.tensor([1, 4, 0])
    maps = []
    G.linear.register_forward_hook(lambda m, i, o: maps.append(summary(o.view(n, -1, 4, 4))))
    for blocklist in G.blocks:
        blocklist[-1].register_forward_hook(lambda m, i, o: maps.append(summary(o)))
    with torch.no_grad():
        img = G(z, G.shared(y))
        logits = D(img, y)
    return {
        "z": z.tolist(), "y": y.tolist(), "keys": keys, "maps": maps,
        "image_nhwc": img.permute(0, 2, 3, 1).reshape(-1).tolist(), "image_shape_nhwc": list(img.permute(0, 2, 3, 1).shape),
        "logits": logits.view(-1).tolist(),
    }


def main():
    counts = {}
    for name, kw in COUNTS.items():
        with contextlib.redirect_stdout(io.StringIO()):
            counts[name] = [count(BigGAN.Generator(**kw, **COMMON, skip_init=True)),
                            count(BigGAN.Discriminator(**kw, **COMMON, skip_init=True))]
    json.dump({"counts": counts, "micro": micro()}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
