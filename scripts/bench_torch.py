#!/usr/bin/env python3
"""The PyTorch peer of `dreamteacher bench`: the same training steps, timed the same way.

Run by `make bench` (through `dreamteacher bench`), or alone:
    /usr/bin/python3 scripts/bench_torch.py --workload resnet18-cifar --size 64 --batch 8
    /usr/bin/python3 scripts/bench_torch.py --workload adm --size 64x48 --batch 16 --layout best
    /usr/bin/python3 scripts/bench_torch.py --workload distill --size 128x96 --batch 16
    /usr/bin/python3 scripts/bench_torch.py --workload adm --size 64x48 --count-only   # no timing

Sizes are WIDTH or WIDTHxHEIGHT. Prints one JSON object per size: workload, width, height, batch,
median step seconds, images/s, threads, the fastest step and the process's CPU time per step
(all threads; median and minimum), peak RSS (MiB), the parameter count of each part ("params")
and the forward pass's GFLOP ("fwd_gflop", counted as the Go side counts: 2 x the MACs of
convolutions, matrix products and bilinear resizes). With --layout best, each layout (NCHW,
channels-last) runs in its own process and the faster one is printed, with both times in
"layouts" (its peak RSS is that process's own).

The workloads (the Go side's are in bench/bench.go):
  resnet18-cifar  torchvision's ResNet-18 with the CIFAR stem, cross-entropy, Adam (lr 1e-3).
  adm             guided-diffusion's UNetModel (a compact copy of openai/guided-diffusion's unet.py,
                  commit 22e0df8: same modules, parameter names and initialisation) in the
                  adm_camvid configuration, its GaussianDiffusion's hybrid loss (learn_sigma: MSE on
                  eps + the VB term on the learned variance, 1000 linear steps, uniform timesteps),
                  AdamW (lr 2e-4, betas 0.9/0.999), gradient clipping at 1 and an EMA (0.995): the
                  step of configs/camvid_teacher.conf. No gradient checkpointing (guided-diffusion's
                  AttentionBlock recomputes its forward in the backward pass; we do not).
  distill         the step of configs/camvid_distill.conf: the frozen adm_camvid UNet encodes the
                  images, resized to half size, at t=50 (taps dec_s16..dec_s2: the last decoder
                  block of each level, before its up-sampling), torchvision's ResNet-18 (no fc) +
                  the PPM/FPN regressor of models/regressor (width 128) regress them; loss
                  LayerNorm-MSE + 10 x attention transfer (losses/feature); AdamW (lr 1e-3, betas
                  0.9/0.95, weight decay 0.05).
Uses Debian's python3-torch (CPU, oneDNN); no downloads.
"""
import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---- ResNet-18 (CIFAR stem) ----------------------------------------------------------------------

def resnet18_cifar(num_classes=10):
    """torchvision's resnet18 with the CIFAR stem (3x3 stride-1 conv, no max-pool)."""
    import torchvision
    m = torchvision.models.resnet18(num_classes=num_classes)
    m.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()
    return m


# ---- guided-diffusion's UNetModel (unet.py, nn.py), trimmed to what the ADM configurations use ----

class GroupNorm32(nn.GroupNorm):
    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


def normalization(channels):
    return GroupNorm32(32, channels)


def zero_module(module):
    for p in module.parameters():
        p.detach().zero_()
    return module


def timestep_embedding(timesteps, dim, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
    args = timesteps[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepBlock(nn.Module):
    """A module whose forward takes the timestep embedding as a second argument."""


class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class Upsample(nn.Module):
    def __init__(self, channels, use_conv):
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    def __init__(self, channels, use_conv):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x):
        return self.op(x)


class ResBlock(TimestepBlock):
    def __init__(self, channels, emb_channels, dropout, out_channels=None, use_scale_shift_norm=False,
                 up=False, down=False):
        super().__init__()
        self.out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(normalization(channels), nn.SiLU(),
                                       nn.Conv2d(channels, self.out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * self.out_channels if use_scale_shift_norm else self.out_channels))
        self.out_layers = nn.Sequential(
            normalization(self.out_channels), nn.SiLU(), nn.Dropout(p=dropout),
            zero_module(nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1)))
        if self.out_channels == channels:
            self.skip_connection = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(channels, self.out_channels, 1)

    def forward(self, x, emb):
        if self.updown:
            in_rest, in_conv = self.in_layers[:-1], self.in_layers[-1]
            h = in_conv(self.h_upd(in_rest(x)))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            out_norm, out_rest = self.out_layers[0], self.out_layers[1:]
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = out_rest(out_norm(h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class QKVAttentionLegacy(nn.Module):
    def __init__(self, n_heads):
        super().__init__()
        self.n_heads = n_heads

    def forward(self, qkv):
        bs, width, length = qkv.shape
        ch = width // (3 * self.n_heads)
        q, k, v = qkv.reshape(bs * self.n_heads, ch * 3, length).split(ch, dim=1)
        scale = 1 / math.sqrt(math.sqrt(ch))
        weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
        a = torch.einsum("bts,bcs->bct", weight, v)
        return a.reshape(bs, -1, length)


class AttentionBlock(nn.Module):
    def __init__(self, channels, num_heads=1, num_head_channels=-1):
        super().__init__()
        self.num_heads = num_heads if num_head_channels == -1 else channels // num_head_channels
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.attention = QKVAttentionLegacy(self.num_heads)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x):
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        h = self.proj_out(self.attention(self.qkv(self.norm(x))))
        return (x + h).reshape(b, c, *spatial)


class UNetModel(nn.Module):
    """guided-diffusion's UNetModel (2-D, unconditional, float32). forward(x, t, taps) with taps
    (names "dec_s<stride>": the last decoder block of a level, before its up-sampling) returns
    the taps only, and stops once it has them (the rest is not computed)."""

    def __init__(self, in_channels, model_channels, out_channels, num_res_blocks, attention_resolutions,
                 dropout=0, channel_mult=(1, 2, 4, 8), conv_resample=True, num_heads=1, num_head_channels=-1,
                 use_scale_shift_norm=False, resblock_updown=False):
        super().__init__()
        self.model_channels = model_channels
        time_embed_dim = model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(model_channels, time_embed_dim), nn.SiLU(),
                                        nn.Linear(time_embed_dim, time_embed_dim))
        res = dict(dropout=dropout, use_scale_shift_norm=use_scale_shift_norm)
        attn = dict(num_heads=num_heads, num_head_channels=num_head_channels)
        ch = input_ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        input_block_chans = [ch]
        ds = 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, time_embed_dim, out_channels=int(mult * model_channels), **res)]
                ch = int(mult * model_channels)
                if ds in attention_resolutions:
                    layers.append(AttentionBlock(ch, **attn))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                input_block_chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(
                    ResBlock(ch, time_embed_dim, out_channels=ch, down=True, **res) if resblock_updown
                    else Downsample(ch, conv_resample)))
                input_block_chans.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(ResBlock(ch, time_embed_dim, **res), AttentionBlock(ch, **attn),
                                                    ResBlock(ch, time_embed_dim, **res))
        self.output_blocks = nn.ModuleList([])
        self.tap_of_block = {}  # output block index -> (tap at its end before any up-sampling, has up-sampling)
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                ich = input_block_chans.pop()
                layers = [ResBlock(ch + ich, time_embed_dim, out_channels=int(model_channels * mult), **res)]
                ch = int(model_channels * mult)
                if ds in attention_resolutions:
                    layers.append(AttentionBlock(ch, **attn))
                if i == num_res_blocks:
                    self.tap_of_block[len(self.output_blocks)] = ("dec_s%d" % ds, level > 0)
                if level and i == num_res_blocks:
                    layers.append(ResBlock(ch, time_embed_dim, out_channels=ch, up=True, **res) if resblock_updown
                                  else Upsample(ch, conv_resample))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(normalization(ch), nn.SiLU(),
                                 zero_module(nn.Conv2d(input_ch, out_channels, 3, padding=1)))

    def forward(self, x, timesteps, taps=None):
        hs = []
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        h = x
        for module in self.input_blocks:
            h = module(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        out = {}
        for k, module in enumerate(self.output_blocks):
            h = torch.cat([h, hs.pop()], dim=1)
            name, up = self.tap_of_block.get(k, (None, False))
            if not taps or name not in taps:
                h = module(h, emb)
                continue
            layers = list(module)
            for layer in layers[:-1] if up else layers:
                h = layer(h, emb) if isinstance(layer, TimestepBlock) else layer(h)
            out[name] = h
            if len(out) == len(taps):
                return out
            if up:
                h = layers[-1](h, emb) if isinstance(layers[-1], TimestepBlock) else layers[-1](h)
        return self.out(h)


# adm_camvid (models/adm/config.go): 64x48, 32 channels, channel_mult 1,1,2,2,4, 1 res block,
# attention at 8 and 4 px of 64 (downsample rates 8 and 16), 32 channels per head, scale-shift norm,
# res-block up/down, learned sigma (6 output channels).
ADM_CAMVID = dict(in_channels=3, model_channels=32, out_channels=6, num_res_blocks=1, attention_resolutions=(8, 16),
                  dropout=0.0, channel_mult=(1, 1, 2, 2, 4), conv_resample=True, num_heads=1, num_head_channels=32,
                  use_scale_shift_norm=True, resblock_updown=True)


# ---- guided-diffusion's GaussianDiffusion (gaussian_diffusion.py, losses.py): the hybrid loss -------

def normal_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + ((mean1 - mean2) ** 2) * torch.exp(-logvar2))


def approx_standard_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    centered_x = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered_x + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered_x - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))


def mean_flat(x):
    return x.mean(dim=list(range(1, x.ndim)))


class GaussianDiffusion:
    """1000 linear-schedule steps, epsilon prediction, LEARNED_RANGE variance, (rescaled) MSE loss."""

    def __init__(self, steps=1000):
        scale = 1000 / steps
        betas = np.linspace(scale * 0.0001, scale * 0.02, steps, dtype=np.float64)
        self.num_timesteps = steps
        ac = np.cumprod(1.0 - betas)
        ac_prev = np.append(1.0, ac[:-1])
        post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
        t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
        self.sqrt_ac, self.sqrt_1m_ac = t(np.sqrt(ac)), t(np.sqrt(1.0 - ac))
        self.sqrt_recip_ac, self.sqrt_recipm1_ac = t(np.sqrt(1.0 / ac)), t(np.sqrt(1.0 / ac - 1))
        self.post_log_var_clipped = t(np.log(np.append(post_var[1], post_var[1:])))
        self.post_coef1 = t(betas * np.sqrt(ac_prev) / (1.0 - ac))
        self.post_coef2 = t((1.0 - ac_prev) * np.sqrt(1.0 - betas) / (1.0 - ac))
        self.log_betas = t(np.log(betas))

    @staticmethod
    def _extract(arr, t, x):
        return arr[t].reshape(-1, *([1] * (x.ndim - 1)))

    def q_sample(self, x0, t, noise):
        return self._extract(self.sqrt_ac, t, x0) * x0 + self._extract(self.sqrt_1m_ac, t, x0) * noise

    def q_posterior(self, x0, xt, t):
        mean = self._extract(self.post_coef1, t, xt) * x0 + self._extract(self.post_coef2, t, xt) * xt
        return mean, self._extract(self.post_log_var_clipped, t, xt)

    def vb_terms_bpd(self, eps, var_values, x0, xt, t):
        min_log = self._extract(self.post_log_var_clipped, t, xt)
        max_log = self._extract(self.log_betas, t, xt)
        frac = (var_values + 1) / 2
        model_log_var = frac * max_log + (1 - frac) * min_log
        pred_x0 = self._extract(self.sqrt_recip_ac, t, xt) * xt - self._extract(self.sqrt_recipm1_ac, t, xt) * eps
        model_mean, _ = self.q_posterior(pred_x0, xt, t)
        true_mean, true_log_var = self.q_posterior(x0, xt, t)
        kl = mean_flat(normal_kl(true_mean, true_log_var, model_mean, model_log_var)) / math.log(2.0)
        nll = mean_flat(-discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var)) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    def training_losses(self, model, x0):
        t = torch.randint(0, self.num_timesteps, (x0.shape[0],))
        noise = torch.randn_like(x0)
        xt = self.q_sample(x0, t, noise)
        out = model(xt, t.float())
        eps, var_values = torch.split(out, x0.shape[1], dim=1)
        vb = self.vb_terms_bpd(eps.detach(), var_values, x0, xt, t) * (self.num_timesteps / 1000.0)
        mse = mean_flat((noise - eps) ** 2)
        return (mse + vb).mean()


# ---- the regressor (models/regressor) and the feature loss (losses/feature) -------------------------

class ConvBNReLU(nn.Sequential):
    """mmcv's ConvModule: conv (no bias, kaiming normal fan_out), BatchNorm, ReLU."""

    def __init__(self, cin, cout, k):
        conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        super().__init__(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def resize(x, size):
    return x if tuple(x.shape[2:]) == tuple(size) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Regressor(nn.Module):
    """PPM (bins 1, 2, 3, 6) on C5, FPN top-down path, a 1x1 projection per teacher tap from the
    pyramid level nearest in size (targets: name -> (channels, height, width))."""

    def __init__(self, in_channels, targets, width=128, pool_scales=(1, 2, 3, 6)):
        super().__init__()
        self.pool_scales = pool_scales
        self.ppm = nn.ModuleList(ConvBNReLU(in_channels[-1], width, 1) for _ in pool_scales)
        self.bottleneck = ConvBNReLU(in_channels[-1] + len(pool_scales) * width, width, 3)
        self.lateral_convs = nn.ModuleList(ConvBNReLU(c, width, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(width, width, 3) for _ in in_channels[:-1])
        self.targets = targets
        self.proj = nn.ModuleDict({name: nn.Conv2d(width, c, 1) for name, (c, _, _) in targets.items()})

    def forward(self, feats):
        c5 = feats[-1]
        branches = [c5] + [resize(m(F.adaptive_avg_pool2d(c5, s)), c5.shape[2:]) for s, m in zip(self.pool_scales, self.ppm)]
        laterals = [m(f) for m, f in zip(self.lateral_convs, feats[:-1])] + [self.bottleneck(torch.cat(branches, 1))]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[2:])
        pyramid = [m(x) for m, x in zip(self.fpn_convs, laterals[:-1])] + [laterals[-1]]
        out = {}
        for name, (c, h, w) in self.targets.items():
            x, best = None, math.inf  # the level nearest in size (log scale; the finer on ties)
            for p in pyramid:
                d = abs(math.log(p.shape[2] / h)) + abs(math.log(p.shape[3] / w))
                if d < best - 1e-9:
                    x, best = p, d
            if x.shape[1] <= c:  # resize on the side with fewer channels, as the Go regressor
                out[name] = self.proj[name](resize(x, (h, w)))
            else:
                out[name] = resize(self.proj[name](x), (h, w))
        return out


def layer_norm_no_params(x, eps=1e-5):
    return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], eps=eps).permute(0, 3, 1, 2)


def attention_map(x):
    q = (x ** 2).sum(1).reshape(x.shape[0], -1)
    return F.normalize(q, dim=1, eps=0)


def feature_loss(preds, teacher, at_weight=10.0):
    mse, at = 0.0, 0.0
    for name, t in teacher.items():
        s = preds[name]
        mse = mse + F.mse_loss(s, layer_norm_no_params(t))
        at = at + (attention_map(s) - attention_map(t)).norm(dim=1).mean()
    n = len(teacher)
    return mse / n + at_weight * at / n


class ResNet18Features(nn.Module):
    """torchvision's resnet18 without avgpool and fc: C2..C5 of ImageNet-normalised images."""

    def __init__(self):
        super().__init__()
        import torchvision
        self.m = torchvision.models.resnet18()
        self.m.fc = None
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1))

    def forward(self, x):
        m = self.m
        x = m.maxpool(m.relu(m.bn1(m.conv1((x - self.mean) / self.std))))
        c2 = m.layer1(x)
        c3 = m.layer2(c2)
        c4 = m.layer3(c3)
        return [c2, c3, c4, m.layer4(c4)]


# ---- the workloads: each builds (modules by part, inputs, step function, forward function) -------------

def n_params(m):
    return sum(p.numel() for p in m.parameters())


def resnet_workload(width, height, batch):
    model = resnet18_cifar()
    x, y = torch.randn(batch, 3, height, width), torch.randint(0, 10, (batch,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(x):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def forward(x):
        return F.cross_entropy(model(x), y)
    return {"model": model}, x, step, forward


def adm_workload(width, height, batch):
    unet = UNetModel(**ADM_CAMVID)
    diff = GaussianDiffusion(1000)
    x = torch.rand(batch, 3, height, width)
    opt = torch.optim.AdamW(unet.parameters(), lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    params = list(unet.parameters())
    ema = [p.detach().clone() for p in params]

    def step(x):
        opt.zero_grad(set_to_none=True)
        diff.training_losses(unet, x * 2 - 1).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(ema, 0.995)
            torch._foreach_add_(ema, params, alpha=1 - 0.995)

    def forward(x):
        return diff.training_losses(unet, x * 2 - 1)
    return {"unet": unet}, x, step, forward


def distill_workload(width, height, batch):
    tw, th = width // 2, height // 2  # teacher_size is half of size in configs/camvid_distill.conf
    teacher = UNetModel(**ADM_CAMVID).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    diff = GaussianDiffusion(1000)
    taps = {"dec_s16": 128, "dec_s8": 64, "dec_s4": 64, "dec_s2": 32}  # adm_camvid's DefaultTaps
    targets = {name: (c, th // int(name[5:]), tw // int(name[5:])) for name, c in taps.items()}
    backbone = ResNet18Features()
    regressor = Regressor([64, 128, 256, 512], targets, width=128)
    student = nn.ModuleDict({"backbone": backbone, "regressor": regressor}).train()
    x = torch.rand(batch, 3, height, width)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.05)
    t50 = torch.full((batch,), 50, dtype=torch.long)

    def loss(x):
        with torch.no_grad():
            x0 = resize(x, (th, tw)) * 2 - 1
            feats = teacher(diff.q_sample(x0, t50, torch.randn_like(x0)), t50.float(), taps=set(taps))
        return feature_loss(regressor(backbone(x)), feats)

    def step(x):
        opt.zero_grad(set_to_none=True)
        loss(x).backward()
        opt.step()
    return {"student": student, "teacher": teacher}, x, step, loss


WORKLOADS = {"resnet18-cifar": resnet_workload, "adm": adm_workload, "distill": distill_workload}


# ---- counting ----------------------------------------------------------------------------------------

def forward_gflop(fn, x):
    """2 x the MACs of one forward pass of fn(x), counted as models/flops counts a GoMLX graph:
    convolutions (padding taps included), matrix products (linear layers, attention) and bilinear
    resizes (one matrix product per resized axis)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        macs = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            name = func.overloadpacket.__name__
            if name == "convolution":
                w = args[1]
                Counter.macs += out.numel() * w.shape[1] * math.prod(w.shape[2:])
            elif name in ("mm", "addmm"):
                a, b = args[-2], args[-1]
                Counter.macs += a.shape[0] * a.shape[1] * b.shape[1]
            elif name in ("bmm", "baddbmm"):
                a, b = args[-2], args[-1]
                Counter.macs += a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
            elif name == "upsample_bilinear2d":
                n, c, h, w = args[0].shape
                oh, ow = out.shape[2:]
                Counter.macs += (n * c * oh * h * w if oh != h else 0) + (n * c * oh * ow * w if ow != w else 0)
            return out

    with torch.no_grad(), Counter():
        fn(x)
    return 2 * Counter.macs / 1e9


def parse_size(s):
    w, _, h = s.partition("x")
    return int(w), int(h or w)


def run(args, size):
    width, height = parse_size(size)
    torch.manual_seed(0)
    parts, x, step, forward = WORKLOADS[args.workload](width, height, args.batch)
    params = {name: n_params(m) for name, m in parts.items()}
    if args.count_only:
        return {"workload": args.workload, "width": width, "height": height, "batch": args.batch, "params": params,
                "fwd_gflop": forward_gflop(forward, x)}
    if args.layout == "channels-last":
        for m in parts.values():
            m.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    times, cpus = [], []
    for i in range(args.warmup + args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step(x)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    med = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "impl": "pytorch " + torch.__version__ + (" channels-last" if args.layout == "channels-last" else ""),
        "workload": args.workload, "width": width, "height": height, "batch": args.batch,
        "median_step_s": med, "images_per_s": args.batch / med, "threads": args.threads,
        "min_step_s": min(times), "cpu_step_s": statistics.median(cpus), "min_cpu_step_s": min(cpus),
        "peak_rss_mib": rss, "params": params, "fwd_gflop": forward_gflop(forward, x.contiguous()),
    }


def run_best(args, size):
    """Each layout in its own process (so that each peak RSS is its own); the faster one."""
    results = {}
    for layout in ("nchw", "channels-last"):
        cmd = [sys.executable, __file__, "--workload", args.workload, "--size", size, "--batch", str(args.batch),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
               "--layout", layout]
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        results[layout] = json.loads(out.strip().splitlines()[-1])
    best = min(results.values(), key=lambda r: r["median_step_s"])
    best["layouts"] = {layout: r["median_step_s"] for layout, r in results.items()}
    return best


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workload", default="resnet18-cifar", choices=sorted(WORKLOADS))
    p.add_argument("--size", action="append", help="WIDTH or WIDTHxHEIGHT (repeat for several)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--layout", default="nchw", choices=["nchw", "channels-last", "best"])
    p.add_argument("--channels-last", action="store_true", help="same as --layout channels-last")
    p.add_argument("--count-only", action="store_true", help="print the parameter and FLOP counts only")
    args = p.parse_args()
    if args.channels_last:
        args.layout = "channels-last"
    torch.set_num_threads(args.threads)
    for size in args.size or ["32", "64"]:
        r = run_best(args, size) if args.layout == "best" and not args.count_only else run(args, size)
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
