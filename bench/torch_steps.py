#!/usr/bin/env python3
"""PyTorch peer of bench.TestTiming (DreamTeacher-Go performance work): the step of
scripts/bench_torch.py (ResNet-18 CIFAR stem, forward + cross-entropy + backward + Adam), timed
per step with the median, the fastest step and the CPU time of the process per step (all
threads). On a machine shared with other processes, the fastest step and the CPU time are the
least disturbed measures. Debian's python3-torch, no downloads:

    /usr/bin/python3 bench/torch_steps.py --size 32 --size 64 --steps 7 [--channels-last]
"""
import argparse
import statistics
import sys
import time
import os

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
from bench_torch import WORKLOADS  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, action="append")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels-last", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for size in args.size or [32, 64]:
        model = WORKLOADS["resnet18-cifar"]()
        x = torch.randn(args.batch, 3, size, size)
        y = torch.randint(0, 10, (args.batch,))
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        times, cpus = [], []
        for i in range(args.warmup + args.steps):
            t0, c0 = time.perf_counter(), time.process_time()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
        print("pytorch %s%s %3dpx batch %d, %d threads: median %.3f s, min %.3f s, cpu/step median %.3f s (min %.3f)" % (
            torch.__version__, " channels-last" if args.channels_last else "", size, args.batch, args.threads,
            statistics.median(times), min(times), statistics.median(cpus), min(cpus)), flush=True)


if __name__ == "__main__":
    main()
