"""Writes roialign.json, the numbers TestRoIAlignMatchesTorchvision compares with: the outputs of
torchvision.ops.roi_align (aligned=True, detectron2's ROIAlignV2) and the gradient of
sum(out * w) with respect to the features.

Run (Debian's python3-torch 1.13 and python3-torchvision 0.14):

    /usr/bin/python3 models/heads/maskrcnn/testdata/make_roialign.py > models/heads/maskrcnn/testdata/roialign.json

The Go tests never run Python. Every input is exact in float32 and float64: features are
multiples of 1/1024, box coordinates multiples of 1/64, so the Go side feeds the same numbers
to its float32 and float64 graphs. The references are computed in float64 (torchvision's CPU
kernel in double: its geometry too) and in float32.

Layout (torch's): "maps" holds feature maps "shape" [N, C, H, W] with "data" flattened
row-major; each case names its map, spatial_scale, output_size (square), sampling_ratio (0 is
the adaptive ceil(roi / output_size) grid) and "boxes" [N][R][4] (x1, y1, x2, y2 in input
pixels; the same number R per image, box r of image n is torchvision's row n*R + r with batch
index n). "out64"/"out32" are roi_align's [N*R, C, out, out] flattened; "grad64" is
d sum(out * w) / d features [N, C, H, W] in float64 with w[i] = weight(i) below (i indexes the
flattened output), mirrored by the Go test. A case with "levels" is detectron2's ROIPooler
over several maps (strides 2^(min_level+k)): each box pooled from the level of
assign_boxes_to_levels, and "level" lists that choice per box.
"""
import json
import math

import numpy
import torch
import torchvision
from torchvision.ops import roi_align


def weight(i):
    # An exact, signed, non-constant weight per output element.
    return ((i * 37) % 17 - 8) / 8.0


def f32(t):
    """A float32 tensor's values, each printed with the fewest digits that read back exactly."""
    return [float(repr(numpy.float32(v))) for v in t.flatten().tolist()]


def make_map(gen, n, c, h, w):
    x = torch.round(torch.randn(n, c, h, w, generator=gen, dtype=torch.float64) * 1024) / 1024
    return x


def q(v):
    """Box coordinate rounded to a multiple of 1/64."""
    return round(v * 64) / 64


def to_rois(boxes):
    rows = []
    for n, img in enumerate(boxes):
        for b in img:
            rows.append([float(n)] + [float(v) for v in b])
    return torch.tensor(rows, dtype=torch.float64)


def run(x, rois, scale, out, sr, dtype):
    xi = x.to(dtype).clone().requires_grad_(True)
    y = roi_align(xi, rois.to(dtype), output_size=(out, out), spatial_scale=scale, sampling_ratio=sr, aligned=True)
    w = torch.tensor([weight(i) for i in range(y.numel())], dtype=dtype).reshape(y.shape)
    (y * w).sum().backward()
    return y.detach(), xi.grad.detach()


def assign_levels(boxes, min_level, max_level, canonical_size=224, canonical_level=4):
    # detectron2/modeling/poolers.py assign_boxes_to_levels, in float64 as our AssignLevels
    # compares sizes (the boxes here sit away from the level boundaries).
    out = []
    for img in boxes:
        for b in img:
            size = math.sqrt((b[2] - b[0]) * (b[3] - b[1]))
            lvl = math.floor(canonical_level + math.log2(size / canonical_size + 1e-8))
            out.append(min(max(lvl, min_level), max_level) - min_level)
    return out


def main():
    gen = torch.Generator().manual_seed(20261206)
    maps = {
        # Two images, a stride-2 map of a 16x12 input (boxes in input pixels).
        "a": make_map(gen, 2, 3, 6, 8),
        # One image at stride 1 (and 3 and 16): large boxes get adaptive grids of 3 and more.
        "b": make_map(gen, 1, 2, 13, 11),
    }
    boxes_a = [
        [  # image 0
            [2.5, 1.25, 9.75, 8.5],     # inside
            [-3.0, -2.0, 5.5, 4.25],    # partly outside, top-left
            [10.0, 6.5, 19.5, 15.0],    # partly outside, bottom-right
            [4.0, 4.0, 4.40625, 4.25],  # tiny (a fraction of a feature pixel)
            [6.0, 3.0, 6.0, 3.0],       # empty
            [-12.0, -9.0, -5.0, -4.0],  # wholly outside (more than one pixel)
            [0.0, 0.0, 16.0, 12.0],     # the whole image
        ],
        [  # image 1: different boxes on the other image
            [1.0, 2.0, 15.0, 3.0],      # thin and long
            [7.25, 0.5, 8.0, 11.5],     # tall and narrow
            [-1.0, -1.0, 1.0, 1.0],     # around the corner
            [15.0, 11.0, 17.0, 13.0],   # around the far corner
            [3.0, 5.0, 2.0, 7.0],       # inverted (x2 < x1)
            [5.515625, 2.984375, 12.015625, 9.203125],
            [0.5, 0.5, 15.5, 11.5],
        ],
    ]
    boxes_b = [[
        [0.0, 0.0, 11.0, 13.0],
        [1.5, 0.75, 10.25, 12.5],
        [-2.0, 3.0, 6.0, 16.0],
        [4.0, 4.0, 4.5, 9.0],
        [2.0, 2.0, 9.0, 3.0],
        [-1.5, -1.5, 12.5, 14.5],
    ]]
    boxes_b16 = [[[q(v * 16) for v in b] for b in boxes_b[0]]]
    boxes_b3 = [[[q(v * 3) for v in b] for b in boxes_b[0]]]

    cases = []
    for sr in (0, 1, 2, 3):
        cases.append(dict(name=f"two images, scale 1/2, sampling {sr}", map="a", scale=0.5, out=3, sr=sr, boxes=boxes_a))
    cases.append(dict(name="two images, scale 1/2, out 2", map="a", scale=0.5, out=2, sr=0, boxes=boxes_a))
    cases.append(dict(name="stride 1, out 4, adaptive", map="b", scale=1.0, out=4, sr=0, boxes=boxes_b))
    cases.append(dict(name="stride 1, out 2, sampling 2", map="b", scale=1.0, out=2, sr=2, boxes=boxes_b))
    cases.append(dict(name="stride 16, out 7 (box head), adaptive", map="b", scale=1 / 16, out=7, sr=0, boxes=boxes_b16))
    cases.append(dict(name="stride 3 (scale not a power of two), out 3, adaptive", map="b", scale=1 / 3, out=3, sr=0, boxes=boxes_b3))

    doc = {"torch": torch.__version__, "torchvision": torchvision.__version__, "maps": {}, "cases": []}
    for k, x in maps.items():
        doc["maps"][k] = {"shape": list(x.shape), "data": x.flatten().tolist()}
    for c in cases:
        x = maps[c["map"]]
        rois = to_rois(c["boxes"])
        y64, g64 = run(x, rois, c["scale"], c["out"], c["sr"], torch.float64)
        y32, _ = run(x, rois, c["scale"], c["out"], c["sr"], torch.float32)
        c["out64"] = y64.flatten().tolist()
        c["out32"] = f32(y32)
        c["grad64"] = g64.flatten().tolist()
        doc["cases"].append(c)

    # detectron2's ROIPooler over three levels (strides 4, 8, 16 of a 64x64 image): every box
    # pooled from its level by roi_align, the gradient split back to each level.
    lv = [make_map(gen, 2, 2, 16, 16), make_map(gen, 2, 2, 8, 8), make_map(gen, 2, 2, 4, 4)]
    for i, x in enumerate(lv):
        doc["maps"][f"p{i + 2}"] = {"shape": list(x.shape), "data": x.flatten().tolist()}
    mboxes = [
        [[0.0, 0.0, 8.0, 8.0], [10.0, 10.0, 26.0, 26.0], [0.0, 0.0, 32.0, 32.0], [5.0, 5.0, 60.0, 40.0], [-8.0, 30.0, 20.0, 70.0]],
        [[3.0, 3.0, 10.90625, 11.0], [40.0, 2.0, 63.0, 20.0], [1.0, 50.0, 63.0, 63.0], [20.0, 20.0, 21.0, 22.0], [12.0, 0.5, 52.0, 48.5]],
    ]
    levels = assign_levels(mboxes, 2, 4, canonical_size=16, canonical_level=3)
    out, sr = 3, 0
    for dtype, key in ((torch.float64, "64"), (torch.float32, "32")):
        xs = [x.to(dtype).clone().requires_grad_(True) for x in lv]
        rois = to_rois(mboxes).to(dtype)
        y = torch.zeros(rois.shape[0], 2, out, out, dtype=dtype)
        for k, x in enumerate(xs):
            sel = [i for i, l in enumerate(levels) if l == k]
            if sel:
                y[sel] = roi_align(x, rois[sel], output_size=(out, out), spatial_scale=1 / 2 ** (k + 2), sampling_ratio=sr, aligned=True)
        w = torch.tensor([weight(i) for i in range(y.numel())], dtype=dtype).reshape(y.shape)
        (y * w).sum().backward()
        if key == "64":
            m = dict(name="three levels (ROIPooler), out 3, adaptive", levels=["p2", "p3", "p4"], min_level=2,
                     canonical_size=16, canonical_level=3, out=out, sr=sr, boxes=mboxes, level=levels,
                     out64=y.detach().flatten().tolist(),
                     grad64=[v for x in xs for v in x.grad.flatten().tolist()])
        else:
            m["out32"] = f32(y.detach())
    doc["cases"].append(m)
    print(json.dumps(doc, separators=(",", ":")))


if __name__ == "__main__":
    main()
