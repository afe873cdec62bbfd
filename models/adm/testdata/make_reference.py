"""Writes reference.json, the numbers models/adm's tests compare with, from openai/guided-diffusion.

Run (Debian's python3-torch 1.13; guided-diffusion's unet.py needs only torch and numpy):

    git clone https://github.com/openai/guided-diffusion /tmp/gd   # commit 22e0df8 was used
    /usr/bin/python3 models/adm/testdata/make_reference.py /tmp/gd > models/adm/testdata/reference.json

It records, for each configuration, sum(p.numel() for p in model.parameters()) of the model that
guided_diffusion.script_util.create_model builds with the official flags, and the state_dict keys
with their shapes. For two micro configurations it also sets every parameter to a deterministic
value (see det_values, mirrored by detValues in the Go test), runs one forward pass in float64 on
deterministic inputs and records the output and a summary (sum, sum of squares) of each output
block's activation, so that the Go UNet loaded through TorchKeyToScope can be compared number for
number (float64 throughout, see the patches below: what remains is ~1e-12).
"""
import json
import math
import sys

import torch as th

sys.path.insert(0, sys.argv[1])
import guided_diffusion.nn as gd_nn  # noqa: E402
from guided_diffusion.script_util import create_model  # noqa: E402

import guided_diffusion.unet as gd_unet  # noqa: E402

# The forward comparison runs in float64: GroupNorm32 computes in float32, and timestep_embedding
# makes its frequencies and arguments in float32. Same formulas, in float64.
gd_nn.GroupNorm32.forward = th.nn.GroupNorm.forward


def timestep_embedding64(timesteps, dim, max_period=10000):
    half = dim // 2
    freqs = th.exp(-math.log(max_period) * th.arange(0, half, dtype=th.float64) / half)
    args = timesteps[:, None].double() * freqs[None]
    emb = th.cat([th.cos(args), th.sin(args)], dim=-1)
    if dim % 2:
        emb = th.cat([emb, th.zeros_like(emb[:, :1])], dim=-1)
    return emb


gd_unet.timestep_embedding = timestep_embedding64

# QKVAttentionLegacy takes th.softmax(weight.float()): the softmax (not its small logits, which
# stay exact to ~1e-10) is computed in float64 instead.
_softmax = th.softmax


def softmax64(x, dim=None, **kwargs):
    return _softmax(x.double(), dim=dim, **kwargs)


th.softmax = softmax64

# The README's MODEL_FLAGS for "256x256 model (unconditional)" (256x256_diffusion_uncond.pt). use_fp16
# and use_checkpoint change no parameter; --dropout is not given there (default 0.0).
FLAGS_256 = dict(image_size=256, num_channels=256, num_res_blocks=2, channel_mult="", learn_sigma=True,
                 class_cond=False, attention_resolutions="32,16,8", num_heads=4, num_head_channels=64,
                 num_heads_upsample=-1, use_scale_shift_norm=True, dropout=0.0, resblock_updown=True,
                 use_fp16=False, use_new_attention_order=False)

CONFIGS = {
    "adm_256x256_uncond": dict(FLAGS_256),
    "adm_256x256_cond": dict(FLAGS_256, class_cond=True),  # "256x256 model" of the README
    "adm_bdd100k": dict(FLAGS_256, num_channels=128, channel_mult="1,1,2,2,3,4", dropout=0.1),
    "adm_tiny": dict(FLAGS_256, image_size=32, num_channels=32, channel_mult="1,2,2", num_res_blocks=1,
                     attention_resolutions="8", num_head_channels=32),
    "adm_small": dict(FLAGS_256, image_size=64, num_channels=64, channel_mult="1,2,2,4", num_res_blocks=2,
                      attention_resolutions="16,8", num_head_channels=32),
}
KEYS_OF = ["adm_256x256_uncond", "adm_tiny"]

# Micro configurations for the forward comparison (16x16 inputs, batch 2).
MICRO = {
    # scale-shift norm, res-block up/down, learned sigma, class-conditional, 2 heads by head channels
    "micro_film": dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2", learn_sigma=True,
                       class_cond=True, attention_resolutions="8", num_heads=4, num_head_channels=32,
                       num_heads_upsample=-1, use_scale_shift_norm=True, dropout=0.0, resblock_updown=True,
                       use_fp16=False, use_new_attention_order=False),
    # additive time embedding, strided-conv down / nearest+conv up, fixed sigma, 2 heads by count
    "micro_plain": dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2", learn_sigma=False,
                        class_cond=False, attention_resolutions="8", num_heads=2, num_head_channels=-1,
                        num_heads_upsample=-1, use_scale_shift_norm=False, dropout=0.0, resblock_updown=False,
                        use_fp16=False, use_new_attention_order=False),
}


def key_seed(key):
    return sum((j + 1) * ord(c) for j, c in enumerate(key)) % 1000


def det_values(key, shape):
    """Deterministic parameter values in torch's layout (row-major over the torch shape)."""
    n = 1
    for d in shape:
        n *= d
    fan_in = n // shape[0] if len(shape) > 1 else 1
    amp = 1.0 / math.sqrt(fan_in) if len(shape) > 1 else 0.1
    s = key_seed(key)
    return th.tensor([amp * math.sin(0.1 * s + 0.7 * i) for i in range(n)], dtype=th.float64).reshape(shape)


def det_input(shape):
    """x[n, c, h, w] = sin(0.3*(n*1000 + h*100 + w*10 + c)) + 0.1*c: NCHW here, NHWC in Go, same values."""
    x = th.zeros(shape, dtype=th.float64)
    n_, c_, h_, w_ = shape
    for n in range(n_):
        for c in range(c_):
            for h in range(h_):
                for w in range(w_):
                    x[n, c, h, w] = math.sin(0.3 * (n * 1000 + h * 100 + w * 10 + c)) + 0.1 * c
    return x


out = {"counts": {}, "keys": {}, "micro": {}}
for name, kw in CONFIGS.items():
    m = create_model(**kw)
    out["counts"][name] = sum(p.numel() for p in m.parameters())
    if name in KEYS_OF:
        out["keys"][name] = [[k, list(v.shape)] for k, v in m.state_dict().items()]

for name, kw in MICRO.items():
    th.manual_seed(0)
    m = create_model(**kw).double().eval()
    m.dtype = th.float64  # UNetModel.forward casts x to model.dtype
    with th.no_grad():
        for k, p in m.state_dict().items():
            p.copy_(det_values(k, list(p.shape)))
    acts = {}
    for i, blk in enumerate(m.output_blocks):
        blk.register_forward_hook(lambda mod, inp, o, i=i: acts.__setitem__(i, o))
    x = det_input((2, 3, 16, 16))
    t = th.tensor([3, 500])
    y = th.tensor([7, 993]) if kw["class_cond"] else None
    with th.no_grad():
        eps = m(x, t, y)
    out["micro"][name] = {
        "flags": kw,
        "timesteps": t.tolist(),
        "labels": y.tolist() if y is not None else None,
        "keys": [[k, list(v.shape)] for k, v in m.state_dict().items()],
        "output_nhwc": eps.permute(0, 2, 3, 1).reshape(-1).tolist(),
        "output_shape_nhwc": list(eps.permute(0, 2, 3, 1).shape),
        "output_blocks": [{"sum": float(acts[i].sum()), "sumsq": float((acts[i] ** 2).sum()),
                           "shape_nchw": list(acts[i].shape)} for i in range(len(m.output_blocks))],
    }
json.dump(out, sys.stdout, indent=None)
print()
