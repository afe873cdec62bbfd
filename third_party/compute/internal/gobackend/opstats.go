// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

// DreamTeacher-Go patch: per-op timing statistics, for performance work.
//
// Set GOMLX_GO_OPSTATS=/path/file.txt: every op executed by the Go backend is timed, ops run
// sequentially (so each time is the op's own), and after each top-level execution the file is
// rewritten with the accumulated wall and CPU time (of the process: all of the op's worker
// threads, not other processes) per (op type, output shape, input shapes). Off (one nil check per
// op) when the variable is unset. With GOMLX_GO_OPSTATS_LAST=1 only the last top-level execution
// (e.g. the last training step) is reported; with GOMLX_GO_OPSTATS_MIN=1, for each node
// signature, its minimum time per execution (of the largest graph executed, e.g. the training
// step) over all executions: a best-case step, robust to other processes on the machine.

package gobackend

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gomlx/compute"
)

type opStatsEntry struct {
	key        string
	op         string
	count      int
	total, cpu time.Duration
}

// processCPUTime is the CPU time (user+system) of the whole process: in sequential mode, the
// CPU time of an op (all its worker threads), independent of other processes on the machine.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type opStatsCollector struct {
	path string
	last bool // Keep only the last top-level execution (GOMLX_GO_OPSTATS_LAST=1).
	// best: per node signature, the smallest per-execution time over the executions of the
	// (largest) executable seen so far (GOMLX_GO_OPSTATS_MIN=1): robust to other processes.
	bestMode bool
	best     map[string]*opStatsEntry
	numExecs int
	mu       sync.Mutex
	entries  map[string]*opStatsEntry
}

var opStats = newOpStatsCollector()

func newOpStatsCollector() *opStatsCollector {
	path := os.Getenv("GOMLX_GO_OPSTATS")
	if path == "" {
		return nil
	}
	return &opStatsCollector{path: path, last: os.Getenv("GOMLX_GO_OPSTATS_LAST") != "",
		bestMode: os.Getenv("GOMLX_GO_OPSTATS_MIN") != "",
		entries:  make(map[string]*opStatsEntry), best: make(map[string]*opStatsEntry)}
}

func opStatsKey(node *Node) string {
	var sb strings.Builder
	sb.WriteString(node.OpType.String())
	sb.WriteString(" ")
	sb.WriteString(node.Shape.String())
	sb.WriteString(" <- ")
	for i, in := range node.Inputs {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(in.Shape.String())
	}
	if perm, ok := node.Data.([]int); ok && node.OpType == compute.OpTypeTranspose {
		fmt.Fprintf(&sb, " permutation=%v", perm)
	}
	return sb.String()
}

func (c *opStatsCollector) record(node *Node, d, cpu time.Duration) {
	key := opStatsKey(node)
	c.mu.Lock()
	e := c.entries[key]
	if e == nil {
		e = &opStatsEntry{key: key, op: node.OpType.String()}
		c.entries[key] = e
	}
	e.count++
	e.total += d
	e.cpu += cpu
	c.mu.Unlock()
}

// reset drops the statistics collected so far, in "last execution" mode.
func (c *opStatsCollector) reset() {
	if !c.last && !c.bestMode {
		return
	}
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}

// foldBest merges the entries of the execution that just finished into the per-signature minimums.
// Only executions with as many distinct signatures as the largest seen count (the training step,
// not the small initialization graphs).
func (c *opStatsCollector) foldBest() {
	if !c.bestMode {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) < c.numExecs {
		return
	}
	if len(c.entries) > c.numExecs {
		c.numExecs = len(c.entries)
		clear(c.best)
	}
	for k, e := range c.entries {
		b := c.best[k]
		if b == nil {
			cp := *e
			c.best[k] = &cp
			continue
		}
		if e.cpu < b.cpu {
			b.cpu = e.cpu
		}
		if e.total < b.total {
			b.total = e.total
		}
	}
}

func (c *opStatsCollector) dump() {
	c.foldBest()
	c.mu.Lock()
	defer c.mu.Unlock()
	entries := c.entries
	if c.bestMode {
		entries = c.best
	}
	list := make([]*opStatsEntry, 0, len(entries))
	byOp := map[string]time.Duration{}
	byOpCPU := map[string]time.Duration{}
	var total, totalCPU time.Duration
	for _, e := range entries {
		list = append(list, e)
		byOp[e.op] += e.total
		byOpCPU[e.op] += e.cpu
		total += e.total
		totalCPU += e.cpu
	}
	sort.Slice(list, func(i, j int) bool { return list[i].cpu > list[j].cpu })
	var sb strings.Builder
	fmt.Fprintf(&sb, "total wall %.3fs, cpu %.3fs (columns: wall, %% of wall, cpu, %% of cpu)\n\nby op type:\n", total.Seconds(), totalCPU.Seconds())
	ops := make([]string, 0, len(byOp))
	for op := range byOp {
		ops = append(ops, op)
	}
	sort.Slice(ops, func(i, j int) bool { return byOp[ops[i]] > byOp[ops[j]] })
	for _, op := range ops {
		fmt.Fprintf(&sb, "%8.3fs %5.1f%% %8.3fs %5.1f%%  %s\n", byOp[op].Seconds(), 100*byOp[op].Seconds()/total.Seconds(),
			byOpCPU[op].Seconds(), 100*byOpCPU[op].Seconds()/totalCPU.Seconds(), op)
	}
	sb.WriteString("\nby node signature (sorted by cpu; columns: wall, cpu, count):\n")
	for _, e := range list {
		fmt.Fprintf(&sb, "%8.3fs %8.3fs %5.1f%% %6d  %s\n", e.total.Seconds(), e.cpu.Seconds(), 100*e.cpu.Seconds()/totalCPU.Seconds(), e.count, e.key)
	}
	_ = os.WriteFile(c.path, []byte(sb.String()), 0o644)
}
