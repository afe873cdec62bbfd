#!/usr/bin/env python3
"""The PyTorch peer of `dreamteacher bench`: the same workloads, timed the same way.

Run by `make bench` (through `dreamteacher bench --torch`), or alone:
    /usr/bin/python3 scripts/bench_torch.py --workload resnet18-cifar --size 64 --batch 8

Prints one JSON object per line: workload, size, batch, median step seconds, images/s, threads,
and the fastest step and the process's CPU time per step (all threads; median and minimum), the
least disturbed measures on a machine shared with other processes.
Uses Debian's python3-torch (CPU, oneDNN); no downloads.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def resnet18_cifar(num_classes=10):
    """torchvision's resnet18 with the CIFAR stem (3x3 stride-1 conv, no max-pool)."""
    import torchvision
    m = torchvision.models.resnet18(num_classes=num_classes)
    m.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()
    return m


WORKLOADS = {"resnet18-cifar": resnet18_cifar}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workload", default="resnet18-cifar", choices=sorted(WORKLOADS))
    p.add_argument("--size", type=int, action="append")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels-last", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for size in args.size or [32, 64]:
        model = WORKLOADS[args.workload]()
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
        med = statistics.median(times)
        print(json.dumps({
            "impl": "pytorch " + torch.__version__ + (" channels-last" if args.channels_last else ""),
            "workload": args.workload, "size": size, "batch": args.batch,
            "median_step_s": med, "images_per_s": args.batch / med, "threads": args.threads,
            "min_step_s": min(times), "cpu_step_s": statistics.median(cpus), "min_cpu_step_s": min(cpus),
        }), flush=True)


if __name__ == "__main__":
    main()
