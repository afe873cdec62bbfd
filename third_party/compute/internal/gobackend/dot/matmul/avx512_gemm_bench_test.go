// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

//go:build amd64 && goexperiment.simd

// DreamTeacher-Go patch: microbenchmarks of the float32 matmuls of a ResNet-18 training step
// (64x64 images, batch 8), old packed kernel ("large") against the new GEMM ("gemm").
//
//	GOEXPERIMENT=simd go test -run XXX -bench 'ConvShapes' github.com/gomlx/compute/internal/gobackend/dot/matmul

package matmul

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/internal/gobackend"
	"github.com/gomlx/compute/internal/gobackend/dot"
)

type benchShape struct {
	name                       string
	M, K, N                    int
	lhsColMajor, rhsTransposed bool
}

var convBenchShapes = []benchShape{
	{"fwd", 32768, 576, 64, false, false},
	{"fwd", 8192, 1152, 128, false, false},
	{"fwd", 2048, 2304, 256, false, false},
	{"fwd", 512, 4608, 512, false, false},
	{"dX", 32768, 64, 576, false, true},
	{"dX", 8192, 128, 1152, false, true},
	{"dX", 2048, 256, 2304, false, true},
	{"dX", 512, 512, 4608, false, true},
	{"dW", 64, 32768, 576, false, false},
	{"dW", 128, 8192, 1152, false, false},
	{"dW", 256, 2048, 2304, false, false},
	{"dW", 512, 512, 4608, false, false},
	{"dWcm", 64, 32768, 576, true, false},
	{"dWcm", 128, 8192, 1152, true, false},
	{"dWcm", 256, 2048, 2304, true, false},
	{"dWcm", 512, 512, 4608, true, false},
	{"sq", 1024, 1024, 1024, false, false},
}

func BenchmarkConvShapes(b *testing.B) {
	if v := os.Getenv("GEMM_KC"); v != "" {
		GemmKcMax, _ = strconv.Atoi(v)
	}
	if v := os.Getenv("GEMM_MC"); v != "" {
		GemmMcTilesMax, _ = strconv.Atoi(v)
	}
	backend := compute.MustNew().(*gobackend.Backend)
	defer backend.Finalize()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range convBenchShapes {
		var lhs, rhs, out []float32
		setup := func() {
			if lhs != nil {
				return
			}
			lhs = make([]float32, s.M*s.K)
			rhs = make([]float32, s.K*s.N)
			for i := range lhs {
				lhs[i] = rng.Float32()
			}
			for i := range rhs {
				rhs[i] = rng.Float32()
			}
			out = make([]float32, s.M*s.N)
		}
		flops := 2 * float64(s.M) * float64(s.K) * float64(s.N)
		name := fmt.Sprintf("%s_%dx%dx%d", s.name, s.M, s.K, s.N)
		layout := dot.LayoutNonTransposed
		if s.rhsTransposed {
			layout = dot.LayoutTransposed
		}
		if !s.lhsColMajor {
			b.Run("large/"+name, func(b *testing.B) {
				setup()
				cpu0 := processCPUTime()
				for b.Loop() {
					avx512LargeFloat32(backend, layout, lhs, rhs, 1, s.M, s.N, s.K, out)
				}
				reportGFLOPs(b, flops, cpu0)
			})
		}
		b.Run("gemm/"+name, func(b *testing.B) {
			setup()
			cpu0 := processCPUTime()
			for b.Loop() {
				avx512GemmFloat32(backend, lhs, rhs, out, s.lhsColMajor, s.rhsTransposed, 1, s.M, s.N, s.K)
			}
			reportGFLOPs(b, flops, cpu0)
		})
	}
}

// processCPUTime is the user+system CPU time of the process: on a shared machine, GFLOP per
// CPU-second measures the kernel independently of how much of the wall time it got the cores.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportGFLOPs(b *testing.B, flopsPerOp float64, cpu0 time.Duration) {
	cpu := processCPUTime() - cpu0
	b.ReportMetric(flopsPerOp*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	b.ReportMetric(flopsPerOp*float64(b.N)/cpu.Seconds()/1e9, "GFLOP/cpu-s")
}

// BenchmarkGemmKernelL1 runs the micro-kernel on L1-resident data: its peak on this machine.
func BenchmarkGemmKernelL1(b *testing.B) {
	for _, kc := range []int{64, 128, 256} {
		a := make([]float32, gemmMR*kc)
		bs := make([]float32, kc*gemmNR)
		c := make([]float32, gemmMR*gemmNR)
		b.Run(fmt.Sprintf("kc%d", kc), func(b *testing.B) {
			cpu0 := processCPUTime()
			for b.Loop() {
				for range 100 {
					avx512GemmKernel6x64(unsafe.Pointer(&a[0]), uintptr(kc*4), 4, unsafe.Pointer(&bs[0]), unsafe.Pointer(&c[0]), gemmNR*4, kc, true, unsafe.Pointer(&a[0]))
				}
			}
			reportGFLOPs(b, 100*2*float64(gemmMR*gemmNR*kc), cpu0)
		})
	}
}

// TestGemmBestOf prints the best-of-N GFLOP/s of the conv shapes (set GEMM_BESTOF=N; the best of
// N runs is robust to other processes on a shared machine). GEMM_SERIAL=1 runs on one core;
// GEMM_OLD=1 runs the original packed kernel of compute v0.1.2 instead of the new GEMM.
func TestGemmBestOf(t *testing.T) {
	reps, _ := strconv.Atoi(os.Getenv("GEMM_BESTOF"))
	if reps <= 0 {
		t.Skip("set GEMM_BESTOF=N")
	}
	if v := os.Getenv("GEMM_KC"); v != "" {
		GemmKcMax, _ = strconv.Atoi(v)
	}
	var backend *gobackend.Backend
	if os.Getenv("GEMM_SERIAL") == "" {
		backend = compute.MustNew().(*gobackend.Backend)
		defer backend.Finalize()
	}
	oldBackend := backend
	if oldBackend == nil {
		// The original kernel needs a backend: one without parallelism.
		oldBackend = compute.MustNew().(*gobackend.Backend)
		oldBackend.Workers.SetMaxParallelism(0)
		defer oldBackend.Finalize()
	}
	filter := os.Getenv("GEMM_FILTER")
	GemmTileMajor = os.Getenv("GEMM_TILEMAJOR") != ""
	if v := os.Getenv("GEMM_PACKA_STRIPS"); v != "" {
		GemmPackAMinStrips, _ = strconv.Atoi(v)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range convBenchShapes {
		name := fmt.Sprintf("%s_%dx%dx%d", s.name, s.M, s.K, s.N)
		if filter != "" && !strings.Contains(name, filter) {
			continue
		}
		alloc := func(n int) []float32 {
			if os.Getenv("GEMM_HUGEPAGES") == "" {
				return make([]float32, n)
			}
			b, err := syscall.Mmap(-1, 0, 4*n+(2<<20), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
			if err != nil {
				t.Fatal(err)
			}
			if err := syscall.Madvise(b, 14 /* MADV_HUGEPAGE */); err != nil {
				t.Fatal(err)
			}
			return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n)
		}
		lhs := alloc(s.M * s.K)
		rhs := alloc(s.K * s.N)
		for i := range lhs {
			lhs[i] = rng.Float32()
		}
		for i := range rhs {
			rhs[i] = rng.Float32()
		}
		out := alloc(s.M * s.N)
		flops := 2 * float64(s.M) * float64(s.K) * float64(s.N)
		best := time.Duration(1 << 62)
		old := os.Getenv("GEMM_OLD") != ""
		if old && s.lhsColMajor {
			continue // The original kernel has no column-major lhs.
		}
		layout := dot.LayoutNonTransposed
		if s.rhsTransposed {
			layout = dot.LayoutTransposed
		}
		for range reps {
			t0 := time.Now()
			if old {
				// The original packed kernel of compute v0.1.2 (avx512_large.go).
				avx512LargeFloat32(oldBackend, layout, lhs, rhs, 1, s.M, s.N, s.K, out)
			} else {
				avx512GemmFloat32(backend, lhs, rhs, out, s.lhsColMajor, s.rhsTransposed, 1, s.M, s.N, s.K)
			}
			best = min(best, time.Since(t0))
		}
		fmt.Printf("%-26s best %8.2f ms  %6.1f GFLOP/s\n", name, best.Seconds()*1e3, flops/best.Seconds()/1e9)
	}
}

// TestGemmVirtualBestOf compares (best of GEMM_BESTOF runs) the GEMMs of the 3x3 convolutions of
// ResNet-18 at 64x64 (batch 8) on the materialized patch matrix and on the virtual one.
func TestGemmVirtualBestOf(t *testing.T) {
	reps, _ := strconv.Atoi(os.Getenv("GEMM_BESTOF"))
	if reps <= 0 {
		t.Skip("set GEMM_BESTOF=N")
	}
	var backend *gobackend.Backend
	if os.Getenv("GEMM_SERIAL") == "" {
		backend = compute.MustNew().(*gobackend.Backend)
		defer backend.Finalize()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	// {batch, output height, output width, channels}: ResNet-18's 3x3 convs at 64x64 (batch 8),
	// then adm_camvid's 32-channel ones at 64x48 and 32x24 (batch 16).
	for _, layer := range [][4]int{{8, 64, 64, 64}, {8, 32, 32, 128}, {8, 16, 16, 256}, {8, 8, 8, 512}, {16, 48, 64, 32}, {16, 24, 32, 32}} {
		n, ho, wo, c := layer[0], layer[1], layer[2], layer[3]
		h, w := ho+2, wo+2
		var taps [][2]int
		for dy := range 3 {
			for dx := range 3 {
				taps = append(taps, [2]int{dy, dx})
			}
		}
		spec := &dot.Im2ColSpec{N: n, H: h, W: w, C: c, Ho: ho, Wo: wo, SY: 1, SX: 1, Taps: taps}
		src := make([]float32, n*h*w*c)
		for i := range src {
			src[i] = rng.Float32()
		}
		rows, cols := n*ho*wo, 9*c
		patches := make([]float32, rows*cols)
		for r := range rows {
			x, y, b := r%wo, (r/wo)%ho, r/(wo*ho)
			for ti, tp := range taps {
				copy(patches[r*cols+ti*c:r*cols+(ti+1)*c], src[((b*h+y+tp[0])*w+x+tp[1])*c:])
			}
		}
		wts := make([]float32, cols*c)
		dy := make([]float32, rows*c)
		for i := range wts {
			wts[i] = rng.Float32()
		}
		for i := range dy {
			dy[i] = rng.Float32()
		}
		flops := 2 * float64(rows) * float64(cols) * float64(c)
		bench := func(name string, fn func()) {
			best := time.Duration(1 << 62)
			for range reps {
				t0 := time.Now()
				fn()
				best = min(best, time.Since(t0))
			}
			fmt.Printf("%-34s best %8.2f ms  %6.1f GFLOP/s\n", name, best.Seconds()*1e3, flops/best.Seconds()/1e9)
		}
		out := make([]float32, rows*c)
		label := fmt.Sprintf("%dx%d", rows, cols)
		bench("fwd "+label+" patches", func() { avx512GemmFloat32(backend, patches, wts, out, false, false, 1, rows, c, cols) })
		bench("fwd "+label+" virtual", func() {
			avx512GemmFloat32V(backend, src, wts, out, false, false, spec, nil, 1, rows, c, cols)
		})
		dw := make([]float32, c*cols)
		bench("dW "+label+" patches", func() { avx512GemmFloat32(backend, dy, patches, dw, true, false, 1, c, cols, rows) })
		bench("dW "+label+" virtual", func() {
			avx512GemmFloat32V(backend, dy, src, dw, true, false, nil, spec, 1, c, cols, rows)
		})
		// The same product transposed, Pᵀ·dY (P as a column-major lhs): GoMLX's conv weight gradient.
		bench("dWᵀ "+label+" virtual", func() {
			avx512GemmFloat32V(backend, src, dy, dw, true, false, spec, nil, 1, cols, c, rows)
		})
	}
}
