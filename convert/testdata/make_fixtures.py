"""Writes the fixtures of package convert's tests: tiny models built with the reference code
(torchvision, timm, facebookresearch/ConvNeXt, openai/guided-diffusion), their state dicts saved
the ways real checkpoints are, and their outputs on a fixed input.

Run (Debian's python3-torch 1.13 and python3-torchvision 0.14; the other sources only need to
be checked out, nothing is installed):

    git clone https://github.com/huggingface/pytorch-image-models /tmp/timm_src   # commit aa4b5850 was used
    git clone https://github.com/facebookresearch/ConvNeXt /tmp/convnext_fb        # commit 048efce
    git clone https://github.com/openai/guided-diffusion /tmp/gd                   # commit 22e0df8
    cd convert/testdata
    /usr/bin/python3 make_fixtures.py --timm /tmp/timm_src --fb /tmp/convnext_fb --gd /tmp/gd

The Go tests never run Python: they read what this script wrote (a few hundred KB in all).

Files (the .pth/.pt are torch.save's zip format unless said otherwise):
  resnet_basic.pth            torchvision ResNet(BasicBlock, [1,1,1,1]) at width 8, 10 classes, float32,
                              saved as a training checkpoint would be: {"state_dict": {"module." + key: ...},
                              "epoch": 3, "args": argparse.Namespace(...), "best_acc1": 0.5}
  resnet_basic.safetensors    the same state dict, plain (safetensors written by this script)
  resnet_bottleneck.pth       torchvision ResNet(Bottleneck, [1,1,1,1]) at width 8, 10 classes, in
                              bfloat16, in torch's legacy (non-zip) format
  convnext_timm.safetensors   timm ConvNeXt(depths 1,1,2,1, dims 8,16,24,32), 5 classes, float32
  convnext_fb.pth             the same weights in facebookresearch/ConvNeXt's layout, {"model": ...}
  convnext_tv.pth             the same weights in torchvision's layout, float64
  adm_tiny.pt                 guided-diffusion UNetModel (16 px, 32 channels, channel_mult 1,1,
                              attention at 8 px, 2 heads, scale-shift norm, res-block up/down,
                              learned sigma), float16, a plain state dict as the official files
  views.pt, views_legacy.pt   tensors that are views (offsets, strides, shared storage) and of
                              every float dtype, zip and legacy formats; views.json their values
  *.ref.safetensors           float32 NHWC reference: "input", and the outputs ("logits", "C2".."C5"
                              for backbones; "eps", "var" for the UNet, with "timesteps")

Weights are random (seeded) with non-trivial norms, running statistics and layer scales, rounded
to the saved dtype before the reference forward pass (eval mode, float32), so the Go side,
converting the saved files, must reproduce the outputs to float32 rounding.
"""
import argparse
import collections
import json
import math
import struct
import sys

import numpy
import torch
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet


def safetensors_write(path, tensors, metadata=None):
    """The safetensors format: u64 header length, JSON header, raw little-endian data."""
    names = sorted(tensors)
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    blobs = []
    codes = {torch.float32: "F32", torch.float16: "F16", torch.float64: "F64", torch.int64: "I64"}
    for name in names:
        t = tensors[name].detach().contiguous().cpu()
        blob = t.numpy().tobytes()
        header[name] = {"dtype": codes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def randomize(module, seed):
    """Seeded random values for every floating parameter and buffer, with sensible scales."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if not t.is_floating_point():
                continue
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "running_var":
                v = 0.5 + torch.rand(t.shape, generator=g)
            elif leaf == "running_mean":
                v = 0.1 * torch.randn(t.shape, generator=g)
            elif leaf in ("gamma", "layer_scale"):
                v = 0.5 + 0.5 * torch.rand(t.shape, generator=g)
            elif t.dim() > 1:
                fan_in = t[0].numel()
                v = torch.randn(t.shape, generator=g) / math.sqrt(fan_in)
            elif leaf == "weight":  # norm scales
                v = 1 + 0.2 * torch.randn(t.shape, generator=g)
            else:
                v = 0.1 * torch.randn(t.shape, generator=g)
            t.copy_(v.to(t.dtype))


def round_to(module, dtype):
    """Rounds every floating parameter and buffer to dtype (keeping the module in float32)."""
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_floating_point():
                t.copy_(t.to(dtype).float())


def det_input(n, h, w, c):
    """x[n, h, w, c] = sin(0.05 i + 0.3) over the NHWC flat index i, in float64 rounded to float32."""
    i = torch.arange(n * h * w * c, dtype=torch.float64)
    return torch.sin(0.05 * i + 0.3).float().reshape(n, h, w, c)


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous() if t.dim() == 4 else t.contiguous()


def check_close(a, b, what):
    err = (a - b).abs().max().item()
    scale = max(b.abs().max().item(), 1e-6)
    assert err <= 1e-5 * scale, f"{what}: differs by {err} (scale {scale})"


# ---- torchvision ResNet at width 8 ------------------------------------------------------------

def narrow_resnet(block, layers, width, num_classes):
    """torchvision's ResNet with stage widths width, 2*width, 4*width, 8*width instead of 64..512:
    _make_layer is called with planes // (64 // width), and the stem is rebuilt at that width."""
    orig = ResNet._make_layer
    div = 64 // width

    def make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if planes == 64:
            self.inplanes = width
        return orig(self, block, planes // div, blocks, stride, dilate)

    ResNet._make_layer = make_layer
    try:
        m = ResNet(block, layers, num_classes=num_classes)
    finally:
        ResNet._make_layer = orig
    m.conv1 = torch.nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    m.bn1 = torch.nn.BatchNorm2d(width)
    m.fc = torch.nn.Linear(8 * width * block.expansion, num_classes)
    return m


def resnet_reference(m, x):
    with torch.no_grad():
        h = m.maxpool(m.relu(m.bn1(m.conv1(x.permute(0, 3, 1, 2)))))
        feats = {}
        for i, layer in enumerate([m.layer1, m.layer2, m.layer3, m.layer4]):
            h = layer(h)
            feats[f"C{i + 2}"] = nhwc(h)
        logits = m.fc(torch.flatten(m.avgpool(h), 1))
        check_close(logits, m(x.permute(0, 3, 1, 2)), "resnet logits")
    return dict(feats, logits=logits, input=x)


def make_resnets():
    x = det_input(2, 64, 64, 3)

    m = narrow_resnet(BasicBlock, [1, 1, 1, 1], 8, 10).eval()
    randomize(m, 1)
    sd = m.state_dict()
    ckpt = {
        "epoch": 3,
        "arch": "resnet_w8",
        "args": argparse.Namespace(lr=0.1, arch="resnet_w8"),
        "best_acc1": numpy.float64(0.5),
        "state_dict": collections.OrderedDict(("module." + k, v) for k, v in sd.items()),
    }
    torch.save(ckpt, "resnet_basic.pth")
    safetensors_write("resnet_basic.safetensors", dict(sd), {"format": "pt"})
    safetensors_write("resnet_basic.ref.safetensors", resnet_reference(m, x))

    m = narrow_resnet(Bottleneck, [1, 1, 1, 1], 8, 10).eval()
    randomize(m, 2)
    round_to(m, torch.bfloat16)
    sd = {k: (v.bfloat16() if v.is_floating_point() else v) for k, v in m.state_dict().items()}
    torch.save(sd, "resnet_bottleneck.pth", _use_new_zipfile_serialization=False)
    safetensors_write("resnet_bottleneck.ref.safetensors", resnet_reference(m, x))


# ---- ConvNeXt: timm, facebookresearch, torchvision --------------------------------------------

def make_convnexts(timm_src, fb_src):
    sys.path.insert(0, timm_src)
    sys.path.insert(0, fb_src)
    import timm.models.convnext as timm_convnext  # noqa: E402
    from models.convnext import ConvNeXt as FBConvNeXt  # noqa: E402
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt as TVConvNeXt  # noqa: E402

    depths, dims, classes = [1, 1, 2, 1], [8, 16, 24, 32], 5
    fb = FBConvNeXt(depths=depths, dims=dims, num_classes=classes).eval()
    randomize(fb, 3)
    fb_sd = fb.state_dict()
    torch.save({"model": fb_sd}, "convnext_fb.pth")

    # timm's own remapping (checkpoint_filter_fn) of the official checkpoint.
    tm = timm_convnext.ConvNeXt(depths=depths, dims=dims, num_classes=classes).eval()
    tm.load_state_dict(timm_convnext.checkpoint_filter_fn({"model": fb_sd}, tm))
    safetensors_write("convnext_timm.safetensors", dict(tm.state_dict()), {"format": "pt"})

    # torchvision's layout, mapped by hand here and checked by comparing the outputs.
    settings = [CNBlockConfig(dims[i], dims[i + 1] if i < 3 else None, depths[i]) for i in range(4)]
    tv = TVConvNeXt(settings, num_classes=classes).eval()
    tsd = tm.state_dict()
    tv_sd = {}
    for k in tv.state_dict():
        parts = k.split(".")
        if parts[0] == "features" and parts[1] == "0":
            src = "stem." + ".".join(parts[2:])
        elif parts[0] == "features" and int(parts[1]) % 2 == 1:
            s, b = (int(parts[1]) - 1) // 2, parts[2]
            leaf = ".".join(parts[3:])
            src = f"stages.{s}.blocks.{b}." + {
                "block.0.weight": "conv_dw.weight", "block.0.bias": "conv_dw.bias",
                "block.2.weight": "norm.weight", "block.2.bias": "norm.bias",
                "block.3.weight": "mlp.fc1.weight", "block.3.bias": "mlp.fc1.bias",
                "block.5.weight": "mlp.fc2.weight", "block.5.bias": "mlp.fc2.bias",
                "layer_scale": "gamma"}[leaf]
        elif parts[0] == "features":
            src = f"stages.{int(parts[1]) // 2}.downsample." + ".".join(parts[2:])
        else:
            src = {"classifier.0": "head.norm", "classifier.2": "head.fc"}[".".join(parts[:2])] + "." + parts[2]
        tv_sd[k] = tsd[src].reshape(tv.state_dict()[k].shape)
    tv.load_state_dict(tv_sd)
    torch.save({k: v.double() for k, v in tv_sd.items()}, "convnext_tv.pth")

    x = det_input(2, 64, 64, 3)
    with torch.no_grad():
        xc = x.permute(0, 3, 1, 2)
        h = tm.stem(xc)
        ref = {"input": x}
        for i, stage in enumerate(tm.stages):
            h = stage(h)
            ref[f"C{i + 2}"] = nhwc(h)
        ref["logits"] = tm.forward_head(h)
        check_close(ref["logits"], tm(xc), "timm logits")
        check_close(fb(xc), ref["logits"], "facebookresearch logits")
        check_close(tv(xc), ref["logits"], "torchvision logits")
    safetensors_write("convnext.ref.safetensors", ref)


# ---- guided-diffusion UNet ----------------------------------------------------------------------

def make_adm(gd_src):
    sys.path.insert(0, gd_src)
    from guided_diffusion.script_util import create_model  # noqa: E402

    m = create_model(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,1", learn_sigma=True,
                     class_cond=False, attention_resolutions="8", num_heads=4, num_head_channels=16,
                     num_heads_upsample=-1, use_scale_shift_norm=True, dropout=0.0, resblock_updown=True,
                     use_fp16=False, use_new_attention_order=False).eval()
    randomize(m, 4)
    round_to(m, torch.float16)
    torch.save({k: v.half() for k, v in m.state_dict().items()}, "adm_tiny.pt")
    x = det_input(2, 16, 16, 3)
    ts = torch.tensor([3.0, 700.0])
    with torch.no_grad():
        out = m(x.permute(0, 3, 1, 2), ts)
    out = nhwc(out)
    safetensors_write("adm_tiny.ref.safetensors", {"input": x, "timesteps": ts, "eps": out[..., :3], "var": out[..., 3:]})


# ---- views and dtypes ---------------------------------------------------------------------------

def make_views():
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) * 0.5 - 3
    d = collections.OrderedDict([
        ("f32", base),
        ("f64", base.double() / 3),
        ("f16", base.half()),
        ("bf16", base.bfloat16()),
        ("i64", torch.arange(5)),
        ("rows", base[1:3]),          # contiguous, storage offset 6, shares base's storage
        ("cols", base[:, 2:4]),       # strided view
        ("transposed", base.t()),     # strided view
        ("scalar", torch.tensor(2.5)),
    ])
    torch.save(d, "views.pt")
    torch.save(d, "views_legacy.pt", _use_new_zipfile_serialization=False)
    want = {k: {"shape": list(v.shape), "values": v.double().flatten().tolist()} for k, v in d.items()}
    with open("views.json", "w") as f:
        json.dump(want, f, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--timm", required=True, help="a checkout of huggingface/pytorch-image-models")
    p.add_argument("--fb", required=True, help="a checkout of facebookresearch/ConvNeXt")
    p.add_argument("--gd", required=True, help="a checkout of openai/guided-diffusion")
    a = p.parse_args()
    torch.set_num_threads(1)
    print("torch", torch.__version__, "torchvision", torchvision.__version__)
    make_resnets()
    make_convnexts(a.timm, a.fb)
    make_adm(a.gd)
    make_views()


if __name__ == "__main__":
    main()
