// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

//go:build amd64 && goexperiment.simd

// DreamTeacher-Go patch: tests of the AVX-512 float32 GEMM (avx512_gemm.go).

package matmul

import (
	"fmt"
	"math"
	"math/rand/v2"
	"simd/archsimd"
	"testing"
	"unsafe"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/internal/gobackend"
	"github.com/gomlx/compute/internal/gobackend/dot"
)

// refGemm computes the float64 reference and, per output element, sum_k |a||b| (the scale of
// the rounding error).
func refGemm(lhs, rhs []float32, lhsColMajor, rhsTransposed bool, batch, M, N, K int) (ref, scale []float64) {
	ref = make([]float64, batch*M*N)
	scale = make([]float64, batch*M*N)
	for b := range batch {
		for i := range M {
			for j := range N {
				var s, sa float64
				for k := range K {
					var av, bv float32
					if lhsColMajor {
						av = lhs[b*M*K+k*M+i]
					} else {
						av = lhs[b*M*K+i*K+k]
					}
					if rhsTransposed {
						bv = rhs[b*K*N+j*K+k]
					} else {
						bv = rhs[b*K*N+k*N+j]
					}
					s += float64(av) * float64(bv)
					sa += math.Abs(float64(av) * float64(bv))
				}
				ref[b*M*N+i*N+j] = s
				scale[b*M*N+i*N+j] = sa
			}
		}
	}
	return
}

func checkGemm(t *testing.T, backend *gobackend.Backend, lhsColMajor, rhsTransposed bool, batch, M, N, K int, rng *rand.Rand) {
	t.Helper()
	lhs := make([]float32, batch*M*K)
	rhs := make([]float32, batch*K*N)
	for i := range lhs {
		lhs[i] = float32(rng.NormFloat64())
	}
	for i := range rhs {
		rhs[i] = float32(rng.NormFloat64())
	}
	out := make([]float32, batch*M*N)
	for i := range out {
		out[i] = float32(math.NaN()) // Must be overwritten.
	}
	avx512GemmFloat32(backend, lhs, rhs, out, lhsColMajor, rhsTransposed, batch, M, N, K)
	ref, scale := refGemm(lhs, rhs, lhsColMajor, rhsTransposed, batch, M, N, K)
	// Each product is exact in float64; float32 accumulation of K terms in any order errs by at most
	// about K * eps * sum|a*b|.
	eps := float64(math.Nextafter32(1, 2) - 1)
	for i := range out {
		tol := float64(K+2)*eps*scale[i] + 1e-30
		if diff := math.Abs(float64(out[i]) - ref[i]); !(diff <= tol) {
			t.Fatalf("lhsColMajor=%v rhsTransposed=%v batch=%d M=%d N=%d K=%d: out[%d]=%g, want %g (tol %g)",
				lhsColMajor, rhsTransposed, batch, M, N, K, i, out[i], ref[i], tol)
		}
	}
}

func TestAVX512Gemm(t *testing.T) {
	if !archsimd.X86.AVX512() {
		t.Skip("no AVX-512")
	}
	backend := compute.MustNew().(*gobackend.Backend)
	defer backend.Finalize()
	rng := rand.New(rand.NewPCG(1, 2))
	savedKc, savedSplitMin, savedKcSplit := GemmKcMax, GemmSplitKMinK, GemmKcSplitK
	defer func() { GemmKcMax, GemmSplitKMinK, GemmKcSplitK = savedKc, savedSplitMin, savedKcSplit }()
	for _, kcMax := range []int{256, 37, -1} {
		GemmKcMax = kcMax
		GemmSplitKMinK, GemmKcSplitK = savedSplitMin, savedKcSplit
		if kcMax == -1 {
			// Split-K everywhere it applies (K > max(M,N)), with small k-blocks.
			GemmKcMax, GemmSplitKMinK, GemmKcSplitK = 256, 2, 7
		}
		for _, be := range []*gobackend.Backend{nil, backend} {
			for _, lhsColMajor := range []bool{false, true} {
				for _, rhsTransposed := range []bool{false, true} {
					for _, M := range []int{1, 5, 6, 7, 13, 64, 97} {
						for _, N := range []int{1, 10, 16, 17, 32, 33, 63, 64, 65, 130} { // <= 32: the narrow kernels
							for _, K := range []int{1, 3, 16, 17, 40, 300} {
								name := fmt.Sprintf("kc%d/par%v/%v/%v/%dx%dx%d", kcMax, be != nil, lhsColMajor, rhsTransposed, M, N, K)
								t.Run(name, func(t *testing.T) {
									checkGemm(t, be, lhsColMajor, rhsTransposed, 1, M, N, K, rng)
								})
							}
						}
					}
				}
			}
		}
	}
	// Batched and larger shapes, shaped like the convolutions of a ResNet (scaled down).
	for _, s := range [][4]int{{3, 20, 70, 33}, {2, 130, 20, 600}, {1, 600, 64, 576}, {1, 64, 576, 1000}, {1, 512, 130, 1152}} {
		for _, lhsColMajor := range []bool{false, true} {
			for _, rhsTransposed := range []bool{false, true} {
				t.Run(fmt.Sprintf("batch%d/%v/%v/%dx%dx%d", s[0], lhsColMajor, rhsTransposed, s[1], s[2], s[3]), func(t *testing.T) {
					checkGemm(t, backend, lhsColMajor, rhsTransposed, s[0], s[1], s[2], s[3], rng)
				})
			}
		}
	}
}

func TestAVX512Transpose16x16(t *testing.T) {
	if !archsimd.X86.AVX512() {
		t.Skip("no AVX-512")
	}
	const srcStride, dstStride = 21, 19
	src := make([]float32, 16*srcStride)
	for i := range src {
		src[i] = float32(i)
	}
	dst := make([]float32, 16*dstStride)
	avx512Transpose16x16(unsafe.Pointer(&src[0]), srcStride*4, unsafe.Pointer(&dst[0]), dstStride*4)
	for i := range 16 {
		for j := range 16 {
			if dst[j*dstStride+i] != src[i*srcStride+j] {
				t.Fatalf("dst[%d][%d]=%g, want %g", j, i, dst[j*dstStride+i], src[i*srcStride+j])
			}
		}
	}
	for _, dims := range [][2]int{{1, 1}, {16, 16}, {17, 33}, {40, 7}, {64, 576}} {
		rows, cols := dims[0], dims[1]
		src := make([]float32, rows*cols)
		for i := range src {
			src[i] = float32(i)
		}
		dst := make([]float32, rows*cols)
		transposeFloat32(src, dst, rows, cols)
		for i := range rows {
			for j := range cols {
				if dst[j*rows+i] != src[i*cols+j] {
					t.Fatalf("%dx%d: dst[%d][%d] wrong", rows, cols, j, i)
				}
			}
		}
	}
}

// TestAVX512GemmVirtual checks the GEMM with a virtual patch matrix (implicit im2col) operand
// against the GEMM of the materialized patches, in every position and orientation.
func TestAVX512GemmVirtual(t *testing.T) {
	if !archsimd.X86.AVX512() {
		t.Skip("no AVX-512")
	}
	backend := compute.MustNew().(*gobackend.Backend)
	defer backend.Finalize()
	rng := rand.New(rand.NewPCG(9, 10))
	savedSplitMin, savedKc := GemmSplitKMinK, GemmKcMax
	defer func() { GemmSplitKMinK, GemmKcMax = savedSplitMin, savedKc }()
	for _, cfg := range [][6]int{{2, 10, 9, 64, 1, 0}, {2, 9, 9, 32, 2, 0}, {1, 16, 14, 48, 1, 1}, {3, 6, 6, 128, 2, 1}, {2, 13, 13, 64, 1, 1}, {2, 10, 9, 64, 1, 2},
		// K > M: split-K weight gradients, with few output channels the narrow in-place path.
		{2, 20, 18, 8, 1, 1}, {2, 34, 34, 32, 1, 1}, {2, 33, 33, 16, 2, 1}, {1, 12, 40, 7, 1, 1}} {
		GemmKcMax = savedKc
		if cfg[5] == 2 {
			GemmKcMax = 37 // Segments of 32 channels, blocks of one segment.
		}
		n, h, w, c, s, splitAll := cfg[0], cfg[1], cfg[2], cfg[3], cfg[4], cfg[5] == 1
		ho, wo := (h-3)/s+1, (w-3)/s+1
		var taps [][2]int
		for dy := range 3 {
			for dx := range 3 {
				taps = append(taps, [2]int{dy, dx})
			}
		}
		spec := &dot.Im2ColSpec{N: n, H: h, W: w, C: c, Ho: ho, Wo: wo, SY: s, SX: s, Taps: taps}
		src := make([]float32, n*h*w*c)
		for i := range src {
			src[i] = float32(rng.NormFloat64())
		}
		rows, cols := n*ho*wo, len(taps)*c
		patches := make([]float32, rows*cols)
		for r := range rows {
			x, y, b := r%wo, (r/wo)%ho, r/(wo*ho)
			for ti, tp := range taps {
				for ch := range c {
					patches[r*cols+ti*c+ch] = src[((b*h+y*s+tp[0])*w+x*s+tp[1])*c+ch]
				}
			}
		}
		other := func(n int) []float32 {
			o := make([]float32, n)
			for i := range o {
				o[i] = float32(rng.NormFloat64())
			}
			return o
		}
		if splitAll {
			GemmSplitKMinK = 2
		} else {
			GemmSplitKMinK = savedSplitMin
		}
		check := func(name string, want, got []float32) {
			t.Helper()
			for i := range want {
				if d := math.Abs(float64(want[i] - got[i])); d > 1e-4*(1+math.Abs(float64(want[i]))) {
					t.Fatalf("%v %s: [%d] got %g, want %g", cfg, name, i, got[i], want[i])
				}
			}
		}
		// Forward: P·W, P as a row-major lhs; 32 and 20 outputs take the narrow kernels, checked
		// against the materialized patches through the 6x64 ones.
		for _, nOut := range []int{70, 32, 20} {
			wts := other(cols * nOut)
			want, got := make([]float32, rows*nOut), make([]float32, rows*nOut)
			UseNarrowGemm = false
			avx512GemmFloat32(backend, patches, wts, want, false, false, 1, rows, nOut, cols)
			UseNarrowGemm = true
			avx512GemmFloat32V(backend, src, wts, got, false, false, spec, nil, 1, rows, nOut, cols)
			check(fmt.Sprintf("lhs=P, %d outputs", nOut), want, got)
		}
		const nOut = 70
		var want, got []float32
		// Weight gradient: dYᵀ·P, dY column-major lhs [rows, nOut], P as a rhs [rows, cols].
		dy := other(rows * nOut)
		want, got = make([]float32, nOut*cols), make([]float32, nOut*cols)
		avx512GemmFloat32(backend, dy, patches, want, true, false, 1, nOut, cols, rows)
		avx512GemmFloat32V(backend, dy, src, got, true, false, nil, spec, 1, nOut, cols, rows)
		check("rhs=P", want, got)
		// Its transposition: Pᵀ·dY, P as a column-major lhs; with 32 and 20 outputs (and split-K)
		// the narrow path reading P in place.
		for _, nw := range []int{nOut, 32, 20} {
			d := other(rows * nw)
			want, got = make([]float32, cols*nw), make([]float32, cols*nw)
			avx512GemmFloat32(backend, patches, d, want, true, false, 1, cols, nw, rows)
			avx512GemmFloat32V(backend, src, d, got, true, false, spec, nil, 1, cols, nw, rows)
			check(fmt.Sprintf("lhs=Pᵀ, %d outputs", nw), want, got)
		}
		// P as a transposed-layout rhs: Z·Pᵀ, Z [nOut, cols].
		z := other(nOut * cols)
		want, got = make([]float32, nOut*rows), make([]float32, nOut*rows)
		avx512GemmFloat32(backend, z, patches, want, false, true, 1, nOut, rows, cols)
		avx512GemmFloat32V(backend, z, src, got, false, true, nil, spec, 1, nOut, rows, cols)
		check("rhsT=P", want, got)
	}
}

// TestAVX512GemmCol2Im checks the GEMM fused with the col2im of a convolution's input gradient
// against the GEMM followed by an explicit col2im.
func TestAVX512GemmCol2Im(t *testing.T) {
	if !archsimd.X86.AVX512() {
		t.Skip("no AVX-512")
	}
	backend := compute.MustNew().(*gobackend.Backend)
	defer backend.Finalize()
	rng := rand.New(rand.NewPCG(13, 14))
	// With the narrow kernels (32 and 96 channels: strips of 32 within a tap) and without them
	// (32 channels through the scratch tile).
	defer func(saved bool) { UseNarrowGemm = saved }(UseNarrowGemm)
	for _, narrow := range []bool{true, false} {
		UseNarrowGemm = narrow
		for _, cfg := range [][6]int{{2, 8, 8, 64, 1, 64}, {2, 7, 9, 128, 2, 40}, {3, 5, 13, 64, 1, 600}, {1, 6, 6, 64, 2, 300},
			// 32 and 16 channels: several taps per strip, a partial last strip (9*32 = 4.5 strips).
			{2, 5, 13, 32, 1, 32}, {1, 4, 9, 32, 2, 300}, {2, 3, 16, 16, 1, 48}, {1, 5, 14, 96, 1, 40}} {
			n, ho, wo, c, s, k := cfg[0], cfg[1], cfg[2], cfg[3], cfg[4], cfg[5]
			if !GemmCol2ImChannelsOK(c) {
				continue
			}
			var taps [][2]int
			for dy := range 3 {
				for dx := range 3 {
					taps = append(taps, [2]int{dy, dx})
				}
			}
			fullH, fullW := (ho-1)*s+3, (wo-1)*s+3
			spec := &dot.Col2ImSpec{N: n, Ho: ho, Wo: wo, C: c, SY: s, SX: s, Taps: taps, FullH: fullH, FullW: fullW,
				WinY: 1, WinX: 1, OutH: fullH - 2, OutW: fullW - 2}
			M, N := n*ho*wo, len(taps)*c
			for _, rhsT := range []bool{false, true} {
				lhs := make([]float32, M*k)
				rhs := make([]float32, k*N)
				for i := range lhs {
					lhs[i] = float32(rng.NormFloat64())
				}
				for i := range rhs {
					rhs[i] = float32(rng.NormFloat64())
				}
				dp := make([]float32, M*N)
				avx512GemmFloat32(backend, lhs, rhs, dp, false, rhsT, 1, M, N, k)
				full := make([]float32, n*fullH*fullW*c)
				for m := range M {
					x, y, b := m%wo, (m/wo)%ho, m/(wo*ho)
					for ti, tp := range taps {
						for ch := range c {
							full[((b*fullH+y*s+tp[0])*fullW+x*s+tp[1])*c+ch] += dp[m*N+ti*c+ch]
						}
					}
				}
				want := make([]float32, n*spec.OutH*spec.OutW*c)
				for b := range n {
					for y := range spec.OutH {
						for x := range spec.OutW {
							copy(want[((b*spec.OutH+y)*spec.OutW+x)*c:][:c], full[((b*fullH+y+1)*fullW+x+1)*c:])
						}
					}
				}
				got := make([]float32, len(want))
				avx512GemmCol2Im(backend, lhs, rhs, got, rhsT, M, N, k, spec)
				for i := range want {
					if d := math.Abs(float64(want[i] - got[i])); d > 1e-4*(1+math.Abs(float64(want[i]))) {
						t.Fatalf("%v rhsT=%v: [%d] got %g, want %g", cfg, rhsT, i, got[i], want[i])
					}
				}
			}
		}
	}
}
