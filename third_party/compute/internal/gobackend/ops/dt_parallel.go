// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

// DreamTeacher-Go patch: helpers shared by the fast paths of the ops (dt_*.go files), see
// PATCHES.md.

package ops

import (
	"sync"
	"sync/atomic"

	"github.com/gomlx/compute/internal/gobackend"
)

const (
	// dtParallelMinWork is the smallest amount of work (in elements touched) worth splitting
	// across workers.
	dtParallelMinWork = 256 * 1024
	// dtParallelGrain is the target amount of work (in elements touched) per parallel task.
	dtParallelGrain = 64 * 1024
)

// dtParallelFor calls fn(start, end) over [0, n) split in contiguous ranges, in parallel on the
// backend's workers when workPerItem*n is large enough. Ranges are processed in any order, but
// each index is in exactly one range: results are deterministic as long as fn writes disjoint
// outputs.
func dtParallelFor(backend *gobackend.Backend, n, workPerItem int, fn func(start, end int)) {
	if n <= 0 {
		return
	}
	workPerItem = max(workPerItem, 1)
	total := n * workPerItem
	workers := 1
	if backend != nil && backend.Workers != nil {
		workers = backend.Workers.AdjustedMaxParallelism()
	}
	if workers <= 1 || total < dtParallelMinWork || n < 2 {
		fn(0, n)
		return
	}
	chunk := max(1, dtParallelGrain/workPerItem)
	numChunks := (n + chunk - 1) / chunk
	if numChunks < 2*workers {
		// Fewer, balanced chunks.
		numChunks = min(n, 2*workers)
		chunk = (n + numChunks - 1) / numChunks
		numChunks = (n + chunk - 1) / chunk
	}
	var next atomic.Int64
	backend.Workers.Saturate(func() {
		for {
			c := int(next.Add(1) - 1)
			if c >= numChunks {
				return
			}
			start := c * chunk
			fn(start, min(n, start+chunk))
		}
	})
}

// dtScratchPools hold float32 scratch slices by size class (powers of 2), reused across calls:
// allocating them per call made the garbage collector preempt the loops of the ops.
var dtScratchPools [48]sync.Pool

func dtSizeClass(n int) int {
	c := 0
	for (1 << c) < n {
		c++
	}
	return c
}

// dtScratch returns a float32 slice of length n (not zeroed); release it with dtRelease.
func dtScratch(n int) []float32 {
	c := dtSizeClass(max(n, 1))
	if v := dtScratchPools[c].Get(); v != nil {
		return (*v.(*[]float32))[:n]
	}
	return make([]float32, n, 1<<c)
}

// dtRelease returns a slice obtained from dtScratch.
func dtRelease(s []float32) {
	c := dtSizeClass(max(cap(s), 1))
	if 1<<c != cap(s) {
		return
	}
	s = s[:cap(s)]
	dtScratchPools[c].Put(&s)
}
