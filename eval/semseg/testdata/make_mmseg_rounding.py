#!/usr/bin/env python3
"""Writes mmseg_rounding.json: confusion matrices whose printed metrics, as mmsegmentation's
IoUMetric prints them, differ from a float64 rounding of the exact ratios at a .xx5 boundary.

Run with Debian's numpy (python3-numpy 1.24, the numpy 1.x that mmseg 1.x and mmcv 2.x run on):

    /usr/bin/python3 eval/semseg/testdata/make_mmseg_rounding.py > eval/semseg/testdata/mmseg_rounding.json

mmseg_metrics() is IoUMetric.compute_metrics and total_area_to_metrics
(mmseg/evaluation/metrics/iou_metric.py) for one confusion matrix. torch is replaced by numpy
float32 arrays: torch.histc returns float32 counts, and the tensors' divisions are float32
divisions; the counts here are below 2**24, so they are exact in float32 and the torch and numpy
sums agree.
"""
import json
import warnings

import numpy as np


def mmseg_metrics(cm):
    cm = np.asarray(cm, dtype=np.int64)
    total_area_intersect = np.diag(cm).astype(np.float32)
    total_area_label = cm.sum(axis=1).astype(np.float32)
    total_area_pred_label = cm.sum(axis=0).astype(np.float32)
    total_area_union = total_area_pred_label + total_area_label - total_area_intersect
    with np.errstate(invalid="ignore", divide="ignore"):
        # .numpy() of a 0-dim tensor: a 0-d float32 array.
        all_acc = np.asarray(total_area_intersect.sum() / total_area_label.sum(), dtype=np.float32)
        iou = total_area_intersect / total_area_union
        acc = total_area_intersect / total_area_label
    ret_metrics = {"aAcc": all_acc, "IoU": iou, "Acc": acc}
    # numpy 1.x: nanmean returns a float32 scalar, and a float32 scalar times the Python int 100
    # is a float64, so the summary is rounded in float64 from the float32 mean; the per-class
    # values are float32 arrays, multiplied and rounded in float32.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-NaN
        summary = {k: np.round(np.nanmean(v) * 100, 2) for k, v in ret_metrics.items()}
    per_class = {k: np.round(v * 100, 2) for k, v in ret_metrics.items() if k != "aAcc"}
    # PrettyTable prints str() of each value.
    return {
        "aAcc": str(summary["aAcc"]),
        "mIoU": str(summary["IoU"]),
        "mAcc": str(summary["Acc"]),
        "iou": [str(x) for x in per_class["IoU"]],
        "acc": [str(x) for x in per_class["Acc"]],
    }


def float64_metrics(cm):
    """The exact ratios in float64, rounded in float64 (what the Go package printed before)."""
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm).astype(np.float64)
    label, pred = cm.sum(axis=1), cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (label + pred - tp)
        acc = tp / label
        aacc = tp.sum() / label.sum()

    def pct(v):
        return str(float(np.round(np.float64(v) * 100, 2)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            "aAcc": pct(aacc),
            "mIoU": pct(np.mean(iou[~np.isnan(iou)])) if (~np.isnan(iou)).any() else "nan",
            "mAcc": pct(np.mean(acc[~np.isnan(acc)])) if (~np.isnan(acc)).any() else "nan",
            "iou": [pct(x) for x in iou],
            "acc": [pct(x) for x in acc],
        }


cases = []


def add(name, cm, need):
    """Keeps cm when one of the metrics in need prints differently; returns whether it did."""
    m, f = mmseg_metrics(cm), float64_metrics(cm)
    what = [k for k in ("aAcc", "mIoU", "mAcc", "iou", "acc") if m[k] != f[k]]
    if not set(what) & set(need):
        return False
    # The confusion matrix [true][predicted] as its non-zero entries (true, predicted, count).
    entries = [[i, j, int(c)] for i, row in enumerate(cm) for j, c in enumerate(row) if c]
    cases.append({"name": name, "differs": what, "classes": len(cm), "entries": entries, **m})
    return True


# Per-class IoU exactly at a .xx5 boundary: tp/union = (2j+1)/20000 (class 0 of a 2-class
# matrix; class 1 takes the other pixels).
def two_class(tp, union, label):
    return [[tp, label - tp], [union - label, 10 * union]]


found = 0
for j in range(0, 10000, 7):
    found += add(f"iou {2*j+1}/20000", two_class(2 * j + 1, 20000, 20000), ["iou"])
    if found == 2:
        break
# Per-class accuracy at a boundary: tp/label = (2j+1)/20000 (union larger).
found = 0
for j in range(0, 10000, 11):
    found += add(f"acc {2*j+1}/20000", two_class(2 * j + 1, 30000, 20000), ["acc"])
    if found == 2:
        break
# aAcc at a boundary: (sum of tp)/(all labelled pixels) = (2j+1)/20000.
found = 0
for j in range(0, 10000, 13):
    k = 2 * j + 1
    found += add(f"aAcc {k}/20000", [[k, 20000 - k, 0], [0, 0, 0], [0, 0, 0]], ["aAcc"])
    if found == 2:
        break
# mIoU and mAcc from the float32 mean of float32 ratios: random 4-class matrices whose last
# class never occurs (NaN IoU and accuracy, left out of the means).
rng = np.random.default_rng(2)
for need in (["mIoU"], ["mAcc"]):
    for trial in range(500000):
        cm = np.zeros((4, 4), dtype=np.int64)
        cm[:3, :3] = rng.integers(0, 20000, (3, 3))
        if add(f"{need[0]} random 4 classes", cm.tolist(), need):
            break
# Many classes (ADE20K's 150): numpy's pairwise float32 sum of the per-class values.
rng = np.random.default_rng(3)
for need in (["mIoU"], ["mAcc"]):
    for trial in range(100000):
        n = 150
        cm = np.zeros((n, n), dtype=np.int64)
        np.fill_diagonal(cm, rng.integers(0, 5000, n))
        cm[np.arange(n), (np.arange(n) + 1) % n] = rng.integers(0, 3000, n)
        cm[rng.random(n) < 0.05] = 0  # some classes absent: NaN accuracy
        if add(f"{need[0]} random 150 classes", cm.tolist(), need):
            break

print(json.dumps({"numpy": np.__version__, "cases": cases}, indent=None))
