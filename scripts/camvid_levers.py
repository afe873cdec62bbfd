#!/usr/bin/env python3
"""The CamVid campaign's lever tables (docs/RESULTS.md, issue #11), from the runs' result.json.

    python3 scripts/camvid_levers.py [RUNS]      # RUNS: default $HOME/runs

Each lever changes one thing of the campaign's DreamTeacher recipe and is fine-tuned with 12
labels; its difference from the campaign's DreamTeacher is paired by seed (the same labelled
images, data order and head initialisation), over the seeds both have. The second table is the
teacher's time step t chosen on val: the interpreter on the teacher's frozen features at t, trained
on the same 12 labelled images. The commands that made each run are in docs/RESULTS.md.
A run that has not finished prints as "-".
"""
import json
import os
import sys

RUNS = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/runs")
SEEDS = (0, 1, 2)

LEVERS = [
    ("the campaign's recipe (distillation 600 steps at t=50, backbone at the head's lr)", "camvid/dt-12-s{}"),
    ("backbone lr x0.1 (`backbone_lr_mult=0.1`)", "camvid/levers/backbone_lr_0.1/dt-12-s{}"),
    ("frozen backbone (`freeze_backbone=true`)", "camvid/levers/frozen/dt-12-s{}"),
    ("distillation 3x longer (1800 steps, loss 1.14 -> 0.86)", "camvid-distill1800/dt-12-s{}"),
    ("the teacher's t chosen on val (distillation at t=5)", "camvid-t5/dt-12-s{}"),
    ("mixed distillation at t=5 (seed 0's interpreter, `mode=mixed`)", "camvid-t5-mixed-s0/dt-12-s{}"),
    ("*reference:* random init, the campaign's recipe", "camvid/random-12-s{}"),
    ("*reference:* random init, frozen backbone", "camvid/levers/frozen/random-12-s{}"),
    ("*reference:* the teacher's interpreter at t=50 (its frozen features, 64x48)", "camvid/levers/interpret-t/t50-12-s{}"),
    ("*reference:* the teacher's interpreter at t=5", "camvid/levers/interpret-t/t5-12-s{}"),
]
T_SWEEP = (0, 5, 10, 25, 50, 100, 200)


def miou(pattern, seed):
    path = os.path.join(RUNS, pattern.format(seed), "result.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)["mIoU"]


def fmt(v):
    return "-" if v is None else f"{v:.2f}"


def mean_diff(values, base):
    """The differences paired by seed as "mean ± sample std (n=N)", as eval --results prints them."""
    d = [a - b for a, b in zip(values, base) if a is not None and b is not None]
    if not d:
        return "-"
    mean = sum(d) / len(d)
    if len(d) == 1:
        return f"{mean:+.2f} (n=1)"
    std = (sum((x - mean) ** 2 for x in d) / (len(d) - 1)) ** 0.5
    return f"{mean:+.2f} ± {std:.2f} (n={len(d)})"


def lever_table():
    print("| DreamTeacher with 12 labels | seed 0 | seed 1 | seed 2 | minus the campaign's DT, same seed | minus random init, same seed |")
    print("|---|---:|---:|---:|---:|---:|")
    dt = [miou(LEVERS[0][1], s) for s in SEEDS]
    random = [miou("camvid/random-12-s{}", s) for s in SEEDS]
    for i, (name, pattern) in enumerate(LEVERS):
        values = [miou(pattern, s) for s in SEEDS]
        vs_dt = "" if i == 0 else mean_diff(values, dt)
        print(f"| {name} | " + " | ".join(fmt(v) for v in values) + f" | {vs_dt} | {mean_diff(values, random)} |")


def t_table():
    print("| interpreter at t, 12 labels | seed 0 | seed 1 | mean | minus t=50, same seed |")
    print("|---:|---:|---:|---:|---:|")
    pattern = "camvid/levers/interpret-t/t{}-12-s{}"
    base = [miou(pattern.format(50, "{}"), s) for s in (0, 1)]
    for t in T_SWEEP:
        values = [miou(pattern.format(t, "{}"), s) for s in (0, 1)]
        done = [v for v in values if v is not None]
        mean = fmt(sum(done) / len(done)) if len(done) == 2 else "-"
        print(f"| {t} | " + " | ".join(fmt(v) for v in values) + f" | {mean} | {mean_diff(values, base)} |")


if __name__ == "__main__":
    lever_table()
    print()
    t_table()
