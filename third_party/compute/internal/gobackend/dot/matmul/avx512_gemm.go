// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

//go:build amd64 && goexperiment.simd

// DreamTeacher-Go patch: a float32 GEMM for AVX-512 with an assembly micro-kernel (see PATCHES.md).
//
// C[M,N] = A[M,K] · B[K,N], with:
//
//   - A read in place with any strides (the micro-kernel broadcasts its elements): row-major
//     lhs, or column-major lhs (a transposed operand folded into the DotGeneral).
//   - B packed into strips of 64 columns ([kc][64] per strip and k-block), shared by all
//     workers; from a row-major rhs (plain copies) or a column-major one (16x16 transposes).
//   - C written in place (row-major), accumulated over the k-blocks.
//
// If N > M the product is computed transposed (Cᵀ = Bᵀ·Aᵀ): the packed operand is then the
// smaller one, and Cᵀ goes to a scratch buffer transposed into C at the end.
//
// The micro-kernel (avx512_gemm_amd64.s) computes a 6x64 tile of C with 24 ZMM accumulators:
// per k it loads 4 vectors of the B strip and broadcasts 6 elements of A, for 24 FMAs.

package matmul

import (
	"runtime"
	"simd/archsimd"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/gomlx/compute/internal/gobackend"
	"github.com/gomlx/compute/internal/gobackend/dot"
)

// avx512GemmKernel6x64 is implemented in avx512_gemm_amd64.s.
//
//go:noescape
func avx512GemmKernel6x64(a unsafe.Pointer, rsA, csA uintptr, b unsafe.Pointer, c unsafe.Pointer, ldc uintptr, kc int, accumulate bool, pf unsafe.Pointer)

// avx512GemmKernel6x64Multi is implemented in avx512_gemm_amd64.s: avx512GemmKernel6x64 on
// numTiles consecutive tiles (A advances by aTileStride bytes, C by 6 rows).
//
//go:noescape
func avx512GemmKernel6x64Multi(a unsafe.Pointer, rsA, csA uintptr, b unsafe.Pointer, c unsafe.Pointer, ldc uintptr, kc int, accumulate bool, numTiles int, aTileStride uintptr)

// avx512GemmKernel6x64Segs is implemented in avx512_gemm_amd64.s: the k-steps
// [s*segLen, (s+1)*segLen) read A at aPtrs[s] (an array of numSegs addresses); numTiles
// consecutive tiles, aPtrs[s] advancing by aTileStride (the array is modified) and C by 6 rows.
//
//go:noescape
func avx512GemmKernel6x64Segs(aPtrs unsafe.Pointer, numSegs, segLen int, rsA, csA uintptr, b unsafe.Pointer, c unsafe.Pointer, ldc uintptr, accumulate bool, numTiles int, aTileStride uintptr)

// avx512GemmKernel6x32, avx512GemmKernel6x32Multi and avx512GemmKernel6x32Segs (patch 19) are the
// kernels above for 6x32 tiles: B strips of 32 columns ([kc][32]), for products with at most 32
// columns (a 6x64 tile would multiply half zeros).
//
//go:noescape
func avx512GemmKernel6x32(a unsafe.Pointer, rsA, csA uintptr, b unsafe.Pointer, c unsafe.Pointer, ldc uintptr, kc int, accumulate bool, pf unsafe.Pointer)

//go:noescape
func avx512GemmKernel6x32Multi(a unsafe.Pointer, rsA, csA uintptr, b unsafe.Pointer, c unsafe.Pointer, ldc uintptr, kc int, accumulate bool, numTiles int, aTileStride uintptr)

//go:noescape
func avx512GemmKernel6x32Segs(aPtrs unsafe.Pointer, numSegs, segLen int, rsA, csA uintptr, b unsafe.Pointer, c unsafe.Pointer, ldc uintptr, accumulate bool, numTiles int, aTileStride uintptr)

// avx512Transpose16x16 is implemented in avx512_gemm_amd64.s.
//
//go:noescape
func avx512Transpose16x16(src unsafe.Pointer, srcStride uintptr, dst unsafe.Pointer, dstStride uintptr)

const (
	gemmMR = 6  // Rows of the micro-kernel tile.
	gemmNR = 64 // Columns of the micro-kernel tile (4 ZMM registers).
	// gemmNRNarrow is the tile width of the narrow kernels (2 ZMM registers), used when C has at
	// most that many columns.
	gemmNRNarrow = 32
)

// UseNarrowGemm selects the 6x32 kernels for products with at most 32 columns (patch 19).
var UseNarrowGemm = gobackend.DTPatchesEnabled && !gobackend.DTPatchDisabled("narrow")

// gemmStripWidth is the width of the B strips (and C tiles) of a product with N columns.
func gemmStripWidth(N int) int {
	if UseNarrowGemm && N <= gemmNRNarrow {
		return gemmNRNarrow
	}
	return gemmNR
}

// GemmKcMax is the largest k-block (contracting panel) of the AVX-512 float32 GEMM: one packed
// strip of B is GemmKcMax*64*4 bytes and should stay in L1. Exposed for tuning.
var GemmKcMax = 256

// UseAVX512Gemm selects this GEMM for large float32 matmuls (instead of the original packed kernel).
var UseAVX512Gemm = gobackend.DTPatchesEnabled && !gobackend.DTPatchDisabled("gemm")

// GemmPackAMinStrips: a row-major A is also packed into tiles when C has at least this many
// strips of 64 columns (the tiles are then reused that many times); 0 disables.
var GemmPackAMinStrips = 0

// GemmTileMajor: for C with several strips, always loop over the A tiles outside the strips of
// B (for experiments; by default only when K fits one k-block and B is small).
var GemmTileMajor = false

// GemmMcTilesMax is the largest number of micro-tiles (of gemmMR rows) in one parallel task.
var GemmMcTilesMax = 32

// gemmMatrix is a float32 matrix view with strides counted in elements, or (if v != nil) a
// virtual patch matrix V of a convolution (or Vᵀ if vt).
type gemmMatrix struct {
	ptr    unsafe.Pointer
	rs, cs int
	v      *gemmVirtual
	vt     bool
}

func (m gemmMatrix) at(i, j int) unsafe.Pointer {
	if m.v != nil {
		if m.vt {
			return m.v.ptr(j, i)
		}
		return m.v.ptr(i, j)
	}
	return unsafe.Add(m.ptr, (i*m.rs+j*m.cs)*4)
}

func (m gemmMatrix) transposed() gemmMatrix { return gemmMatrix{m.ptr, m.cs, m.rs, m.v, !m.vt} }

// rowMajor reports whether the rows of m are contiguous (plain row-major, or V).
func (m gemmMatrix) rowMajor() bool { return (m.v == nil && m.cs == 1) || (m.v != nil && !m.vt) }

// colMajor reports whether the columns of m are contiguous (plain column-major, or Vᵀ).
func (m gemmMatrix) colMajor() bool { return (m.v == nil && m.rs == 1) || (m.v != nil && m.vt) }

// rowRun returns the number of contiguous elements of row i from column j on (for a rowMajor m).
func (m gemmMatrix) rowRun(i, j int) int {
	if m.v != nil {
		return m.v.c - j%m.v.c
	}
	return 1 << 40
}

// colRun returns the number of contiguous elements of column j from row i on (for a colMajor m).
func (m gemmMatrix) colRun(i, j int) int {
	if m.v != nil {
		return m.v.c - i%m.v.c
	}
	return 1 << 40
}

// gemmVirtual is the patch matrix of a convolution over src [n, h, w, c] (float32, row-major):
// V[(b*ho + y)*wo + x, t*c + ch] = src[b, y*sy + taps[t][0], x*sx + taps[t][1], ch], i.e.
// src[rowBase(r) + colOff(col)] (offsets in elements).
type gemmVirtual struct {
	src                        unsafe.Pointer
	n, h, w, c, ho, wo, sy, sx int
	taps                       [][2]int
	tapOff                     []int // (dy*w + dx)*c for each tap.
}

// rowBase is the offset of the element (b, y*sy, x*sx, 0) of src for row r = (b*ho + y)*wo + x.
func (v *gemmVirtual) rowBase(r int) int {
	x := r % v.wo
	r /= v.wo
	y := r % v.ho
	b := r / v.ho
	return ((b*v.h+y*v.sy)*v.w + x*v.sx) * v.c
}

// colOff is the offset of column col relative to rowBase.
func (v *gemmVirtual) colOff(col int) int { return v.tapOff[col/v.c] + col%v.c }

// ptr returns the address of V[r, col]; V[r, col:col+(c-col%c)] is contiguous.
func (v *gemmVirtual) ptr(r, col int) unsafe.Pointer {
	return unsafe.Add(v.src, 4*(v.rowBase(r)+v.colOff(col)))
}

// gemmRowIter walks the rows of a gemmVirtual (rowBase without divisions).
type gemmRowIter struct {
	v             *gemmVirtual
	x, y, b, base int
}

func (v *gemmVirtual) rows(r int) gemmRowIter {
	it := gemmRowIter{v: v, x: r % v.wo, y: (r / v.wo) % v.ho, b: r / (v.wo * v.ho)}
	it.base = v.rowBase(r)
	return it
}

// next moves to the next row.
func (it *gemmRowIter) next() {
	v := it.v
	it.x++
	it.base += v.sx * v.c
	if it.x < v.wo {
		return
	}
	it.x = 0
	it.y++
	if it.y < v.ho {
		it.base = ((it.b*v.h + it.y*v.sy) * v.w) * v.c
		return
	}
	it.y = 0
	it.b++
	it.base = (it.b * v.h * v.w) * v.c
}

// regularRows returns the stride in bytes between the rows r0..r0+n-1 of V if they are equally
// spaced in src (same output image row).
func (v *gemmVirtual) regularRows(r0, n int) (uintptr, bool) {
	x := r0 % v.wo
	if x+n > v.wo {
		return 0, false
	}
	return uintptr(v.sx * v.c * 4), true
}

// gemmKAlign returns the alignment of the k-blocks: for a virtual row-major A (read in place), the
// channels (a k-block is then made of whole segments of one tap each), else 1.
func gemmKAlign(a, b gemmMatrix) int {
	if a.v != nil && !a.vt {
		return a.v.c
	}
	return 1
}

// avx512GemmFloat32 computes a batch of C = A·B.
//   - lhs: [batch, M, K] (row-major), or [batch, K, M] if lhsColMajor.
//   - rhs: [batch, K, N] if !rhsTransposed, else [batch, N, K].
//   - output: [batch, M, N].
func avx512GemmFloat32(backend *gobackend.Backend, lhs, rhs, output []float32, lhsColMajor, rhsTransposed bool,
	batchSize, M, N, K int) {
	if batchSize == 0 || M == 0 || N == 0 {
		return
	}
	if K == 0 {
		clear(output[:batchSize*M*N])
		return
	}
	workers := 1
	if backend != nil {
		workers = backend.Workers.AdjustedMaxParallelism()
	}
	// Computing Cᵀ = Bᵀ·Aᵀ packs A instead of B, and costs a transposition of C. With a split
	// contracting axis (small C), both are packed, and packing A (into 6-row tiles) is the costlier:
	// A should be the smaller side.
	swap := N > M && K*N > 2*(K*M+2*M*N)
	if gemmUseSplitK(M, N, K) {
		swap = M > N
	}
	gemmBatches(backend, workers, lhs, rhs, output, lhsColMajor, rhsTransposed, nil, nil, swap, batchSize, M, N, K)
}

// avx512GemmFloat32V is avx512GemmFloat32 where either operand may be a virtual patch matrix
// (lhsV, rhsV; batchSize must then be 1 and the corresponding slice holds its source tensor).
func avx512GemmFloat32V(backend *gobackend.Backend, lhs, rhs, output []float32, lhsColMajor, rhsTransposed bool,
	lhsV, rhsV *dot.Im2ColSpec, batchSize, M, N, K int) {
	if batchSize == 0 || M == 0 || N == 0 {
		return
	}
	if K == 0 {
		clear(output[:batchSize*M*N])
		return
	}
	if batchSize != 1 {
		panic("gemm: virtual operands need a batch of 1")
	}
	workers := 1
	if backend != nil {
		workers = backend.Workers.AdjustedMaxParallelism()
	}
	swap := N > M && K*N > 2*(K*M+2*M*N)
	if gemmUseSplitK(M, N, K) {
		swap = M > N
	}
	if lhsV != nil && !lhsColMajor {
		swap = false // V would become a transposed-layout B (packed element by element).
	}
	if rhsV != nil && rhsTransposed {
		swap = true // Idem.
	}
	if lhsV != nil && lhsColMajor && rhsV == nil && !rhsTransposed && gemmWeightGradNarrowOK(lhsV, M, N, K) {
		gemmWeightGradNarrow(backend, workers, newGemmVirtual(lhs, lhsV), rhs, output, M, N, K)
		return
	}
	gemmBatches(backend, workers, lhs, rhs, output, lhsColMajor, rhsTransposed, lhsV, rhsV, swap, batchSize, M, N, K)
}

// gemmWeightGradNarrowOK reports whether gemmWeightGradNarrow computes Vᵀ·dY: a convolution's
// weight gradient with at most 32 output channels (N) and at least 6 input channels.
func gemmWeightGradNarrowOK(spec *dot.Im2ColSpec, M, N, K int) bool {
	return UseNarrowGemm && N <= gemmNRNarrow && spec.C >= gemmMR && gemmUseSplitK(M, N, K) &&
		spec.Wo <= GemmKcMax && M == len(spec.Taps)*spec.C && K == spec.N*spec.Ho*spec.Wo
}

// gemmWeightGradNarrow computes C[M, N] = Vᵀ·dY, V the virtual patch matrix [K, M] of a
// convolution (K = output pixels, M = taps x channels) and dY [K, N] row-major, N <= 32 (patch
// 19): the weight gradient of a convolution with few output channels. Packing V (9x the input)
// cost more than the product; here the tiles of A = Vᵀ are read in place: a tile is 6 channels of
// one tap, and a k-block is a few output image rows, one segment each (the pixels of a row are
// equally spaced in the input). dY rows are the B strip as they are (N = 32; zero-padded copies
// otherwise). K is split across the workers into partial sums added in a fixed order, as
// gemmSplitK.
func gemmWeightGradNarrow(backend *gobackend.Backend, workers int, v *gemmVirtual, dy, out []float32, M, N, K int) {
	const width = gemmNRNarrow
	imageRows := v.n * v.ho
	rowsPerBlock := max(1, min(gemmMaxSegs, GemmKcMax/v.wo))
	numKBlocks := (imageRows + rowsPerBlock - 1) / rowsPerBlock
	numSegments := max(1, min(numKBlocks, 2*workers))
	// Tiles: per tap, channels ch0 = 0, 6, ...; the last one starts at c-6 (overlapping the one
	// before it) so that a tile never reads past its tap, and only its new rows are kept.
	var tileCh []int
	for ch0 := 0; ch0 < v.c; ch0 += gemmMR {
		tileCh = append(tileCh, min(ch0, v.c-gemmMR))
	}
	// Segment 0 sums into C itself, the others into partials added after, as gemmSplitK.
	clear(out[:M*N])
	partials := make([][]float32, numSegments)
	partials[0] = out[:M*N]
	for s := 1; s < numSegments; s++ {
		partials[s] = gemmScratch(M * N)
		clear(partials[s])
		defer gemmRelease(partials[s])
	}
	csA := uintptr(v.sx * v.c * 4) // Between consecutive pixels of an output row.
	runParallel(backend, workers, numSegments, func(seg int) {
		part := partials[seg]
		var cEdge [gemmMR * width]float32
		var segs, rowBases [gemmMaxSegs]uintptr
		var bPad []float32
		if N < width {
			bPad = gemmScratch(rowsPerBlock * v.wo * width)
			defer gemmRelease(bPad)
		}
		kb0, kb1 := seg*numKBlocks/numSegments, (seg+1)*numKBlocks/numSegments
		for kb := kb0; kb < kb1; kb++ {
			row0 := kb * rowsPerBlock
			numRows := min(rowsPerBlock, imageRows-row0)
			k0, kc := row0*v.wo, numRows*v.wo
			bStrip := unsafe.Pointer(&dy[k0*N])
			if N < width {
				for k := range kc {
					dst := bPad[k*width : (k+1)*width]
					copy(dst, dy[(k0+k)*N:(k0+k+1)*N])
					clear(dst[N:])
				}
				bStrip = unsafe.Pointer(&bPad[0])
			}
			for r := range numRows {
				rowBases[r] = uintptr(unsafe.Add(v.src, 4*v.rowBase((row0+r)*v.wo)))
			}
			for t, tapOff := range v.tapOff {
				prevEnd := 0
				for _, ch0 := range tileCh {
					for r := range numRows {
						segs[r] = rowBases[r] + uintptr(4*(tapOff+ch0))
					}
					avx512GemmKernel6x32Segs(unsafe.Pointer(&segs[0]), numRows, v.wo, 4, csA, bStrip, unsafe.Pointer(&cEdge[0]),
						width*4, false, 1, 0)
					for r := max(0, prevEnd-ch0); r < gemmMR; r++ {
						dst := part[(t*v.c+ch0+r)*N : (t*v.c+ch0+r+1)*N]
						for j, x := range cEdge[r*width : r*width+N] {
							dst[j] += x
						}
					}
					prevEnd = ch0 + gemmMR
				}
			}
		}
		runtime.KeepAlive(dy)
	})
	gemmAddPartials(backend, workers, unsafe.Pointer(&out[0]), N, M, N, partials[1:])
}

func newGemmVirtual(src []float32, spec *dot.Im2ColSpec) *gemmVirtual {
	v := &gemmVirtual{src: unsafe.Pointer(&src[0]), n: spec.N, h: spec.H, w: spec.W, c: spec.C,
		ho: spec.Ho, wo: spec.Wo, sy: spec.SY, sx: spec.SX, taps: spec.Taps}
	for _, t := range spec.Taps {
		v.tapOff = append(v.tapOff, (t[0]*v.w+t[1])*v.c)
	}
	return v
}

func gemmBatches(backend *gobackend.Backend, workers int, lhs, rhs, output []float32, lhsColMajor, rhsTransposed bool,
	lhsV, rhsV *dot.Im2ColSpec, swap bool, batchSize, M, N, K int) {
	for b := range batchSize {
		var a, bm gemmMatrix
		if lhsV != nil {
			a = gemmMatrix{v: newGemmVirtual(lhs, lhsV), vt: lhsColMajor}
		} else {
			lhsB := unsafe.Pointer(&lhs[b*M*K])
			a = gemmMatrix{ptr: lhsB, rs: K, cs: 1}
			if lhsColMajor {
				a = gemmMatrix{ptr: lhsB, rs: 1, cs: M}
			}
		}
		if rhsV != nil {
			bm = gemmMatrix{v: newGemmVirtual(rhs, rhsV), vt: rhsTransposed}
		} else {
			rhsB := unsafe.Pointer(&rhs[b*K*N])
			bm = gemmMatrix{ptr: rhsB, rs: N, cs: 1}
			if rhsTransposed {
				bm = gemmMatrix{ptr: rhsB, rs: 1, cs: K}
			}
		}
		outB := output[b*M*N : (b+1)*M*N]
		if !swap {
			gemmParallel(backend, workers, a, bm, unsafe.Pointer(&outB[0]), N, M, N, K)
			continue
		}
		// Cᵀ[N,M] = Bᵀ·Aᵀ into a scratch buffer, then transposed into C.
		scratch := gemmScratch(N * M)
		gemmParallel(backend, workers, bm.transposed(), a.transposed(), unsafe.Pointer(&scratch[0]), M, N, M, K)
		transposeFloat32(scratch, outB, N, M)
		gemmRelease(scratch)
	}
}

// gemmPackedB is B packed for the micro-kernel: for each k-block p (rows kStart[p]..kStart[p+1]),
// numStrips strips of [kc][width] floats (width 64, or 32 for the narrow kernels); block p starts
// at kStart[p]*numStrips*width.
type gemmPackedB struct {
	data      []float32
	kStarts   []int
	numStrips int
	width     int
}

func (pb *gemmPackedB) strip(p, s int) unsafe.Pointer {
	k0, kc := pb.kStarts[p], pb.kStarts[p+1]-pb.kStarts[p]
	return unsafe.Pointer(&pb.data[k0*pb.numStrips*pb.width+s*kc*pb.width])
}

// gemmKBlocks splits K into blocks of equal size (at most GemmKcMax), or (align > 1) into blocks
// that are the largest divisor of align not above GemmKcMax.
func gemmKBlocks(K, align int) []int {
	n := (K + GemmKcMax - 1) / GemmKcMax
	kc := (K + n - 1) / n
	if align > 1 {
		// Whole segments (of segLen, dividing align) per block, as many as fit GemmKcMax.
		segLen := gemmAlignedKc(align, GemmKcMax)
		numSegs := K / segLen
		segsPerBlock := (numSegs + n - 1) / n
		kc = segsPerBlock * segLen
	}
	starts := make([]int, 0, n+1)
	for k := 0; k < K; k += kc {
		starts = append(starts, k)
	}
	return append(starts, K)
}

// runParallel runs fn(task) for task in [0, numTasks) on up to `workers` goroutines of the pool.
func runParallel(backend *gobackend.Backend, workers, numTasks int, fn func(task int)) {
	if workers <= 1 || numTasks <= 1 || backend == nil {
		for t := range numTasks {
			fn(t)
		}
		return
	}
	var next atomic.Int64
	backend.Workers.Saturate(func() {
		for {
			t := int(next.Add(1) - 1)
			if t >= numTasks {
				return
			}
			fn(t)
		}
	})
}

// gemmParallel computes C[M,N] = A[M,K]·B[K,N], with C row-major (row stride ldc elements).
func gemmParallel(backend *gobackend.Backend, workers int, a, b gemmMatrix, c unsafe.Pointer, ldc int, M, N, K int) {
	if gemmUseSplitK(M, N, K) {
		gemmSplitK(backend, workers, a, b, c, ldc, M, N, K)
		return
	}
	kStarts := gemmKBlocks(K, gemmKAlign(a, b))
	numKBlocks := len(kStarts) - 1
	width := gemmStripWidth(N)
	numStrips := (N + width - 1) / width
	pb := &gemmPackedB{kStarts: kStarts, numStrips: numStrips, width: width}
	packedLen := K * numStrips * width
	var packedRef *gobackend.Buffer
	if backend != nil {
		var ok bool
		packedRef, pb.data, ok = GetBuffer[float32](backend, packedLen)
		if !ok {
			return
		}
		defer ReleaseBuffer(packedRef)
	} else {
		pb.data = make([]float32, packedLen)
	}

	// Pack B, in parallel over (k-block, strip).
	runParallel(backend, workers, numKBlocks*numStrips, func(task int) {
		p, s := task/numStrips, task%numStrips
		gemmPackBStrip(b, kStarts[p], kStarts[p+1]-kStarts[p], s*width, min(width, N-s*width), pb.strip(p, s), width)
	})

	// Compute, in parallel over chunks of rows.
	numTiles := (M + gemmMR - 1) / gemmMR
	chunkTiles := max(1, min(GemmMcTilesMax, (numTiles+4*workers-1)/(4*workers)))
	numChunks := (numTiles + chunkTiles - 1) / chunkTiles
	runParallel(backend, workers, numChunks, func(chunk int) {
		r0 := chunk * chunkTiles * gemmMR
		r1 := min(M, r0+chunkTiles*gemmMR)
		gemmRows(a, pb, c, ldc, r0, r1, N)
	})
}

// gemmRows computes rows [r0, r1) of C, r1-r0 <= GemmMcTilesMax*gemmMR.
//
// A row-major A is read in place. Otherwise (e.g. column-major, where a tile would read 6 floats
// per k at a large stride, whose lines fall in few L1 sets), each k-block of the rows is first
// packed into contiguous tiles (gemmPackATiles).
func gemmRows(a gemmMatrix, pb *gemmPackedB, c unsafe.Pointer, ldc int, r0, r1, N int) {
	maxKc := 0
	for p := range len(pb.kStarts) - 1 {
		maxKc = max(maxKc, pb.kStarts[p+1]-pb.kStarts[p])
	}
	aEdge := gemmScratch(gemmMR * maxKc)
	defer gemmRelease(aEdge)
	var aSegs [gemmMaxSegs]uintptr
	var aTiles []float32
	numRows := r1 - r0
	numTiles := (numRows + gemmMR - 1) / gemmMR
	if !a.rowMajor() || (GemmPackAMinStrips > 0 && pb.numStrips >= GemmPackAMinStrips) {
		aTiles = gemmScratch(numTiles * gemmMR * maxKc)
		defer gemmRelease(aTiles)
	}
	numKBlocks := len(pb.kStarts) - 1
	for p := range numKBlocks {
		k0 := pb.kStarts[p]
		kc := pb.kStarts[p+1] - k0
		accumulate := p > 0
		var tileA gemmTileFn
		if aTiles != nil {
			gemmPackATiles(a, r0, numRows, k0, kc, aTiles)
			tileA = func(t int, _ bool) gemmTile {
				return gemmTile{ptr: unsafe.Pointer(&aTiles[t*gemmMR*kc]), rs: 4, cs: gemmMR * 4,
					regular: true, tileStride: uintptr(gemmMR * kc * 4)}
			}
		} else {
			rsA, csA := uintptr(a.rs*4), uintptr(a.cs*4)
			var segLen int
			if a.v != nil {
				segLen = gemmAlignedKc(a.v.c, GemmKcMax)
			}
			tileA = func(t int, peek bool) gemmTile {
				i := t * gemmMR
				mr := min(gemmMR, numRows-i)
				if a.v != nil && mr == gemmMR && kc%segLen == 0 && kc/segLen <= gemmMaxSegs {
					// A tile of a virtual patch matrix within one output row is, for each tap, a
					// strided block of the source.
					if rs, ok := a.v.regularRows(r0+i, gemmMR); ok {
						if peek {
							return gemmTile{}
						}
						base := a.v.rowBase(r0 + i)
						numSegs := kc / segLen
						for sg := range numSegs {
							aSegs[sg] = uintptr(unsafe.Add(a.v.src, 4*(base+a.v.colOff(k0+sg*segLen))))
						}
						// The tiles that follow in the same output row are regular too.
						run := (a.v.wo - (r0+i)%a.v.wo) / gemmMR
						return gemmTile{rs: rs, cs: 4, segs: &aSegs, numSegs: numSegs, segLen: segLen,
							regular: true, tileStride: gemmMR * rs, runTiles: run}
					}
				} else if a.v == nil && mr == gemmMR {
					return gemmTile{ptr: a.at(r0+i, k0), rs: rsA, cs: csA, regular: true, tileStride: gemmMR * rsA}
				}
				// Partial or irregular tile: its rows are copied.
				if peek {
					return gemmTile{}
				}
				gemmCopyEdgeRows(a, r0+i, mr, k0, kc, aEdge)
				return gemmTile{ptr: unsafe.Pointer(&aEdge[0]), rs: uintptr(kc * 4), cs: 4}
			}
		}
		// With a single k-block (small K) C is written once: loop over the A tiles outside the
		// strips (C written row-block by row-block) if all of B stays in L2.
		tileMajor := GemmTileMajor || (numKBlocks == 1 && kc*N*4 <= 1<<20)
		if tileMajor && pb.numStrips > 1 {
			// Each A tile (in L1) against all the strips of B (streamed from L2).
			for t := range numTiles {
				i := t * gemmMR
				rows := min(gemmMR, numRows-i)
				tA := func(_ int, peek bool) gemmTile { return tileA(t, peek) }
				for s := range pb.numStrips {
					j0 := s * pb.width
					gemmTilesStrip(tA, 1, rows, pb.strip(p, s), unsafe.Add(c, ((r0+i)*ldc+j0)*4), ldc, min(pb.width, N-j0), pb.width, kc, accumulate)
				}
			}
			continue
		}
		for s := range pb.numStrips {
			j0 := s * pb.width
			gemmTilesStrip(tileA, numTiles, numRows, pb.strip(p, s), unsafe.Add(c, (r0*ldc+j0)*4), ldc, min(pb.width, N-j0), pb.width, kc, accumulate)
		}
	}
	runtime.KeepAlive(pb)
	runtime.KeepAlive(aTiles)
}

// gemmTile is a tile of A for the micro-kernel: at ptr with strides (rs, cs) in bytes, or in
// numSegs segments of segLen k-steps at segs[0:numSegs] (same strides).
type gemmTile struct {
	ptr             unsafe.Pointer
	rs, cs          uintptr
	segs            *[gemmMaxSegs]uintptr
	numSegs, segLen int

	// regular: the following tiles (while full) are at ptr + i*tileStride, with the same strides
	// (for segments: runTiles tiles at segs[s] + i*tileStride).
	regular    bool
	tileStride uintptr
	runTiles   int
}

const gemmMaxSegs = 32

// gemmTileFn returns tile t of A. With peek (for a prefetch) it may return a nil address instead of
// preparing the tile.
type gemmTileFn func(t int, peek bool) gemmTile

// kernel runs the micro-kernel of the strip width (64 or 32) on the tile.
func (tl gemmTile) kernel(width int, b, c unsafe.Pointer, ldc uintptr, kc int, accumulate bool, pf unsafe.Pointer) {
	if tl.segs != nil {
		gemmKernelSegs(width, unsafe.Pointer(&tl.segs[0]), tl.numSegs, tl.segLen, tl.rs, tl.cs, b, c, ldc, accumulate, 1, 0)
		return
	}
	gemmKernel(width, tl.ptr, tl.rs, tl.cs, b, c, ldc, kc, accumulate, pf)
}

// gemmKernel, gemmKernelMulti and gemmKernelSegs call the micro-kernel of a strip width: 6x32
// for gemmNRNarrow, else 6x64. (Direct calls, not function values: the assembly kernels'
// noescape keeps the callers' scratch tiles on the stack.)
func gemmKernel(width int, a unsafe.Pointer, rsA, csA uintptr, b, c unsafe.Pointer, ldc uintptr, kc int, accumulate bool, pf unsafe.Pointer) {
	if width == gemmNRNarrow {
		avx512GemmKernel6x32(a, rsA, csA, b, c, ldc, kc, accumulate, pf)
		return
	}
	avx512GemmKernel6x64(a, rsA, csA, b, c, ldc, kc, accumulate, pf)
}

func gemmKernelMulti(width int, a unsafe.Pointer, rsA, csA uintptr, b, c unsafe.Pointer, ldc uintptr, kc int, accumulate bool,
	numTiles int, aTileStride uintptr) {
	if width == gemmNRNarrow {
		avx512GemmKernel6x32Multi(a, rsA, csA, b, c, ldc, kc, accumulate, numTiles, aTileStride)
		return
	}
	avx512GemmKernel6x64Multi(a, rsA, csA, b, c, ldc, kc, accumulate, numTiles, aTileStride)
}

func gemmKernelSegs(width int, aPtrs unsafe.Pointer, numSegs, segLen int, rsA, csA uintptr, b, c unsafe.Pointer, ldc uintptr,
	accumulate bool, numTiles int, aTileStride uintptr) {
	if width == gemmNRNarrow {
		avx512GemmKernel6x32Segs(aPtrs, numSegs, segLen, rsA, csA, b, c, ldc, accumulate, numTiles, aTileStride)
		return
	}
	avx512GemmKernel6x64Segs(aPtrs, numSegs, segLen, rsA, csA, b, c, ldc, accumulate, numTiles, aTileStride)
}

// gemmTilesStrip computes C[0:numRows, 0:nr] (+)= A·Bstrip for the tiles of A given by tileA, with
// the kernels of the strip width (64, or 32: the narrow kernels).
func gemmTilesStrip(tileA gemmTileFn, numTiles, numRows int,
	bStrip, c unsafe.Pointer, ldc, nr, width, kc int, accumulate bool) {
	var cEdge [gemmMR * gemmNR]float32
	ldcBytes := uintptr(ldc * 4)
	for t := 0; t < numTiles; t++ {
		i := t * gemmMR
		mr := min(gemmMR, numRows-i)
		cTile := unsafe.Add(c, i*ldc*4)
		tile := tileA(t, false)
		if tile.regular && nr == width {
			if tile.segs != nil {
				// A run of tiles of a virtual patch matrix in one call.
				n := min(tile.runTiles, numRows/gemmMR-t)
				if n > 0 {
					gemmKernelSegs(width, unsafe.Pointer(&tile.segs[0]), tile.numSegs, tile.segLen, tile.rs, tile.cs, bStrip, cTile,
						ldcBytes, accumulate, n, tile.tileStride)
					t += n - 1
					continue
				}
			} else if n := numRows/gemmMR - t; n > 0 {
				// All the remaining full tiles in one call.
				gemmKernelMulti(width, tile.ptr, tile.rs, tile.cs, bStrip, cTile, ldcBytes, kc, accumulate, n, tile.tileStride)
				t += n - 1
				continue
			}
		}
		if mr == gemmMR && nr == width {
			pf := tile.ptr
			if t+2 < numTiles {
				if next := tileA(t+1, true); next.ptr != nil {
					pf = next.ptr
				}
			}
			tile.kernel(width, bStrip, cTile, ldcBytes, kc, accumulate, pf)
			continue
		}
		// Edge tile: partial rows and/or columns, through cEdge (rows of width).
		tile.kernel(width, bStrip, unsafe.Pointer(&cEdge[0]), uintptr(width*4), kc, false, tile.ptr)
		for ii := range mr {
			row := unsafe.Slice((*float32)(unsafe.Add(cTile, ii*ldc*4)), nr)
			src := cEdge[ii*width : ii*width+nr]
			if accumulate {
				for j, v := range src {
					row[j] += v
				}
			} else {
				copy(row, src)
			}
		}
	}
}

// gemmPackATiles packs A[r0:r0+numRows, k0:k0+kc] into dst as tiles [numTiles][kc][gemmMR]
// (rows past numRows are zero): the micro-kernel reads tile t at dst[t*kc*gemmMR:] with strides
// (4, 4*gemmMR) bytes.
func gemmPackATiles(a gemmMatrix, r0, numRows, k0, kc int, dst []float32) {
	numTiles := (numRows + gemmMR - 1) / gemmMR
	dst = dst[:numTiles*kc*gemmMR]
	fullTiles := numRows / gemmMR
	if a.v != nil && a.vt {
		gemmPackATilesVT(a.v, r0, numRows, k0, kc, dst)
		return
	}
	if a.colMajor() {
		// The rows of a tile are contiguous for each k (within a tap of a virtual Vᵀ).
		for k := range kc {
			var src []float32
			if a.v == nil {
				src = unsafe.Slice((*float32)(a.at(r0, k0+k)), numRows)
			}
			for t := range fullTiles {
				d := dst[t*kc*gemmMR+k*gemmMR : t*kc*gemmMR+k*gemmMR+gemmMR]
				var s []float32
				if src != nil {
					s = src[t*gemmMR : t*gemmMR+gemmMR]
				} else if i := r0 + t*gemmMR; a.colRun(i, k0+k) >= gemmMR {
					s = unsafe.Slice((*float32)(a.at(i, k0+k)), gemmMR)
				} else {
					for r := range gemmMR {
						d[r] = *(*float32)(a.at(i+r, k0+k))
					}
					continue
				}
				d[0], d[1], d[2], d[3], d[4], d[5] = s[0], s[1], s[2], s[3], s[4], s[5]
			}
			if fullTiles < numTiles {
				t := fullTiles
				d := dst[t*kc*gemmMR+k*gemmMR : t*kc*gemmMR+k*gemmMR+gemmMR]
				for r := range gemmMR {
					if i := t*gemmMR + r; i < numRows {
						d[r] = *(*float32)(a.at(r0+i, k0+k))
					} else {
						d[r] = 0
					}
				}
			}
		}
		return
	}
	for t := range numTiles {
		tile := dst[t*kc*gemmMR : (t+1)*kc*gemmMR]
		for r := range gemmMR {
			i := t*gemmMR + r
			if i >= numRows {
				for k := range kc {
					tile[k*gemmMR+r] = 0
				}
				continue
			}
			if a.rowMajor() {
				for k := 0; k < kc; {
					run := min(a.rowRun(r0+i, k0+k), kc-k)
					for kk, v := range unsafe.Slice((*float32)(a.at(r0+i, k0+k)), run) {
						tile[(k+kk)*gemmMR+r] = v
					}
					k += run
				}
				continue
			}
			for k := range kc {
				tile[k*gemmMR+r] = *(*float32)(a.at(r0+i, k0+k))
			}
		}
	}
}

// gemmPackATilesVT is gemmPackATiles for A = Vᵀ (A[i, k] = V[k, i]): for each k, the row k of V
// holds the column k of A, contiguous within each tap.
func gemmPackATilesVT(v *gemmVirtual, r0, numRows, k0, kc int, dst []float32) {
	numTiles := (numRows + gemmMR - 1) / gemmMR
	// Offset (in the row of V) of each tile, or -1 if it crosses a tap (or the end).
	offs := make([]int, numTiles)
	for t := range offs {
		i := r0 + t*gemmMR
		if t*gemmMR+gemmMR <= numRows && i%v.c+gemmMR <= v.c {
			offs[t] = v.colOff(i)
		} else {
			offs[t] = -1
		}
	}
	src := unsafe.Slice((*float32)(v.src), v.n*v.h*v.w*v.c)
	it := v.rows(k0)
	for k := range kc {
		base := it.base
		for t, off := range offs {
			d := dst[t*kc*gemmMR+k*gemmMR : t*kc*gemmMR+k*gemmMR+gemmMR]
			if off >= 0 {
				s := src[base+off : base+off+gemmMR]
				d[0], d[1], d[2], d[3], d[4], d[5] = s[0], s[1], s[2], s[3], s[4], s[5]
				continue
			}
			for r := range gemmMR {
				if i := t*gemmMR + r; i < numRows {
					d[r] = src[base+v.colOff(r0+i)]
				} else {
					d[r] = 0
				}
			}
		}
		it.next()
	}
}

// GemmSplitKMinK is the smallest contracting size for which a GEMM with a small output
// (at most GemmSplitKMaxOutput elements) splits the contracting axis across workers.
var (
	GemmSplitKMinK      = 1024
	GemmSplitKMaxOutput = 1 << 20
	GemmKcSplitK        = 128
)

func gemmUseSplitK(M, N, K int) bool {
	return K >= GemmSplitKMinK && M*N <= GemmSplitKMaxOutput && K > max(M, N)
}

// gemmSplitK computes C = A·B when K is large and C small (e.g. the weight gradient of a
// convolution): K is cut in segments computed in parallel into partial sums (segment 0 into C),
// added to C in segment order (deterministic for a given number of workers). Each segment packs,
// per k-block, all of B into strips and all of A into tiles (both read sequentially).
func gemmSplitK(backend *gobackend.Backend, workers int, a, b gemmMatrix, c unsafe.Pointer, ldc int, M, N, K int) {
	kc := GemmKcSplitK
	numKBlocks := (K + kc - 1) / kc
	numSegments := max(1, min(numKBlocks, 2*workers))
	numTiles := (M + gemmMR - 1) / gemmMR
	numStrips := (N + gemmNR - 1) / gemmNR
	partials := make([][]float32, numSegments) // partials[0] is nil: segment 0 writes to C.
	for s := 1; s < numSegments; s++ {
		partials[s] = gemmScratch(M * N)
		defer gemmRelease(partials[s])
	}
	runParallel(backend, workers, numSegments, func(seg int) {
		kb0, kb1 := seg*numKBlocks/numSegments, (seg+1)*numKBlocks/numSegments
		cSeg, ldcSeg := c, ldc
		if seg > 0 {
			cSeg, ldcSeg = unsafe.Pointer(&partials[seg][0]), N
		}
		aTiles := gemmScratch(numTiles * kc * gemmMR)
		defer gemmRelease(aTiles)
		bStrips := gemmScratch(numStrips * kc * gemmNR)
		defer gemmRelease(bStrips)
		for kb := kb0; kb < kb1; kb++ {
			k0 := kb * kc
			kcb := min(kc, K-k0)
			for s := range numStrips {
				gemmPackBStrip(b, k0, kcb, s*gemmNR, min(gemmNR, N-s*gemmNR), unsafe.Pointer(&bStrips[s*kcb*gemmNR]), gemmNR)
			}
			gemmPackATiles(a, 0, M, k0, kcb, aTiles)
			tileA := func(t int, _ bool) gemmTile {
				return gemmTile{ptr: unsafe.Pointer(&aTiles[t*kcb*gemmMR]), rs: 4, cs: gemmMR * 4,
					regular: true, tileStride: uintptr(gemmMR * kcb * 4)}
			}
			for s := range numStrips {
				j0 := s * gemmNR
				gemmTilesStrip(tileA, numTiles, M, unsafe.Pointer(&bStrips[s*kcb*gemmNR]), unsafe.Add(cSeg, j0*4), ldcSeg,
					min(gemmNR, N-j0), gemmNR, kcb, kb > kb0)
			}
		}
		runtime.KeepAlive(aTiles)
		runtime.KeepAlive(bStrips)
	})
	gemmAddPartials(backend, workers, c, ldc, M, N, partials[1:])
}

// gemmAddPartials adds the partial sums [M, N] of a split contracting axis into C (row stride
// ldc), in their order, in parallel over rows: deterministic for a given split.
func gemmAddPartials(backend *gobackend.Backend, workers int, c unsafe.Pointer, ldc, M, N int, partials [][]float32) {
	if len(partials) == 0 {
		return
	}
	numTasks := min(M, 4*workers)
	runParallel(backend, workers, numTasks, func(task int) {
		i0, i1 := task*M/numTasks, (task+1)*M/numTasks
		for i := i0; i < i1; i++ {
			row := unsafe.Slice((*float32)(unsafe.Add(c, i*ldc*4)), N)
			for _, p := range partials {
				for j, v := range p[i*N : (i+1)*N] {
					row[j] += v
				}
			}
		}
	})
}

// gemmCopyEdgeRows copies A[i0:i0+mr, k0:k0+kc] into dst as a row-major [gemmMR, kc] matrix,
// with the rows after mr set to zero.
func gemmCopyEdgeRows(a gemmMatrix, i0, mr, k0, kc int, dst []float32) {
	for i := range gemmMR {
		row := dst[i*kc : (i+1)*kc]
		if i >= mr {
			clear(row)
			continue
		}
		if a.rowMajor() {
			for k := 0; k < kc; {
				run := min(a.rowRun(i0+i, k0+k), kc-k)
				copy(row[k:k+run], unsafe.Slice((*float32)(a.at(i0+i, k0+k)), run))
				k += run
			}
			continue
		}
		for k := range kc {
			row[k] = *(*float32)(a.at(i0+i, k0+k))
		}
	}
}

// gemmPackBStrip packs B[k0:k0+kc, j0:j0+nr] into dst as [kc][width] (width 64, or 32 for the
// narrow kernels), zero-padding columns nr..width-1.
func gemmPackBStrip(b gemmMatrix, k0, kc, j0, nr int, dst unsafe.Pointer, width int) {
	out := unsafe.Slice((*float32)(dst), kc*width)
	switch {
	case b.v != nil && !b.vt:
		// Rows of a virtual patch matrix: each row of the strip is one contiguous run per tap it
		// covers (one run when the channels are a multiple of 64, several for fewer channels).
		v := b.v
		type run struct{ off, j, n int }
		var runsBuf [gemmNR]run
		runs := runsBuf[:0]
		for j := 0; j < nr; {
			n := min(v.c-(j0+j)%v.c, nr-j)
			runs = append(runs, run{v.colOff(j0 + j), j, n})
			j += n
		}
		src := unsafe.Slice((*float32)(v.src), v.n*v.h*v.w*v.c)
		it := v.rows(k0)
		for k := range kc {
			row := out[k*width : (k+1)*width]
			for _, r := range runs {
				copy(row[r.j:r.j+r.n], src[it.base+r.off:it.base+r.off+r.n])
			}
			if nr < width {
				clear(row[nr:])
			}
			it.next()
		}
	case b.rowMajor() && b.rowRun(k0, j0) >= nr:
		for k := range kc {
			row := out[k*width : (k+1)*width]
			copy(row, unsafe.Slice((*float32)(b.at(k0+k, j0)), nr))
			if nr < width {
				clear(row[nr:])
			}
		}
	case b.v == nil && b.rs == 1:
		// Column j of B is contiguous along k: transpose 16x16 blocks.
		srcStride := uintptr(b.cs * 4)
		jFull := nr / 16 * 16
		kFull := kc / 16 * 16
		for jj := 0; jj < jFull; jj += 16 {
			for kk := 0; kk < kFull; kk += 16 {
				avx512Transpose16x16(b.at(k0+kk, j0+jj), srcStride, unsafe.Pointer(&out[kk*width+jj]), uintptr(width*4))
			}
			for k := kFull; k < kc; k++ {
				for j := jj; j < jj+16; j++ {
					out[k*width+j] = *(*float32)(b.at(k0+k, j0+j))
				}
			}
		}
		for j := jFull; j < width; j++ {
			if j >= nr {
				for k := range kc {
					out[k*width+j] = 0
				}
				continue
			}
			col := unsafe.Slice((*float32)(b.at(k0, j0+j)), (kc-1)*b.rs+1)
			for k := range kc {
				out[k*width+j] = col[k]
			}
		}
	default:
		for k := range kc {
			for j := range width {
				if j < nr {
					out[k*width+j] = *(*float32)(b.at(k0+k, j0+j))
				} else {
					out[k*width+j] = 0
				}
			}
		}
	}
}

// transposeFloat32 writes dst[j*rows+i] = src[i*cols+j] for src [rows, cols].
func transposeFloat32(src, dst []float32, rows, cols int) {
	_ = src[rows*cols-1]
	_ = dst[rows*cols-1]
	i := 0
	for ; i+16 <= rows; i += 16 {
		j := 0
		for ; j+16 <= cols; j += 16 {
			avx512Transpose16x16(unsafe.Pointer(&src[i*cols+j]), uintptr(cols*4), unsafe.Pointer(&dst[j*rows+i]), uintptr(rows*4))
		}
		for ; j < cols; j++ {
			for ii := i; ii < i+16; ii++ {
				dst[j*rows+ii] = src[ii*cols+j]
			}
		}
	}
	for ; i < rows; i++ {
		for j := range cols {
			dst[j*rows+i] = src[i*cols+j]
		}
	}
}

// gemmAlignedKc is the largest divisor of align not above kcMax (at least 1).
func gemmAlignedKc(align, kcMax int) int {
	for kc := min(align, kcMax); kc > 1; kc-- {
		if align%kc == 0 {
			return kc
		}
	}
	return 1
}

// gemmScratchPools hold scratch float32 slices by size class (powers of 2), reused across calls.
var gemmScratchPools [48]sync.Pool

func gemmSizeClass(n int) int {
	c := 0
	for (1 << c) < n {
		c++
	}
	return c
}

// gemmScratch returns a float32 slice of length n (not zeroed).
func gemmScratch(n int) []float32 {
	c := gemmSizeClass(max(n, 1))
	if v := gemmScratchPools[c].Get(); v != nil {
		return (*v.(*[]float32))[:n]
	}
	return make([]float32, n, 1<<c)
}

// gemmRelease returns a slice obtained from gemmScratch.
func gemmRelease(s []float32) {
	c := gemmSizeClass(max(cap(s), 1))
	if 1<<c != cap(s) {
		return
	}
	s = s[:cap(s)]
	gemmScratchPools[c].Put(&s)
}

// avx512GemmCol2Im computes dP = lhs·rhs (lhs row-major [M, K]) and accumulates it into the
// gradient of a convolution's input (dot.Col2ImSpec) without materializing dP: in parallel over
// the images, each image's (padded) gradient is a scratch slab (in L2) that the micro-kernel
// accumulates into directly (the C tile of 6 consecutive output pixels and 64 channels of one tap
// is a strided block of the slab), then the window is copied to the output.
//
// Channels that are a multiple of 32 but not of 64 (adm_camvid's 32, 96) use strips of 32 columns
// and the narrow kernels, so that a strip stays within one tap. With 16 channels a strip of 64
// columns holds four taps: each tile goes through a 6x64 scratch whose pieces of C channels are
// added into the slab at their taps' positions.
func avx512GemmCol2Im(backend *gobackend.Backend, lhs, rhs, output []float32, rhsTransposed bool, M, N, K int, spec *dot.Col2ImSpec) {
	workers := 1
	if backend != nil {
		workers = backend.Workers.AdjustedMaxParallelism()
	}
	c := spec.C
	if !GemmCol2ImChannelsOK(c) || N != len(spec.Taps)*c || M != spec.N*spec.Ho*spec.Wo {
		panic("gemm col2im: inconsistent shapes")
	}
	a := gemmMatrix{ptr: unsafe.Pointer(&lhs[0]), rs: K, cs: 1}
	b := gemmMatrix{ptr: unsafe.Pointer(&rhs[0]), rs: N, cs: 1}
	if rhsTransposed {
		b = gemmMatrix{ptr: unsafe.Pointer(&rhs[0]), rs: 1, cs: K}
	}
	// Pack all of B (shared by the images).
	kStarts := gemmKBlocks(K, 1)
	numKBlocks := len(kStarts) - 1
	// Strips within one tap: 64 columns when the channels are a multiple of 64, else 32 (the
	// narrow kernels) when they are a multiple of 32; 16 channels: strips of 64 over 4 taps.
	width := gemmNR
	if c%gemmNR != 0 && c%gemmNRNarrow == 0 && UseNarrowGemm {
		width = gemmNRNarrow
	}
	numStrips := (N + width - 1) / width
	pb := &gemmPackedB{kStarts: kStarts, numStrips: numStrips, width: width}
	pb.data = gemmScratch(K * numStrips * width)
	defer gemmRelease(pb.data)
	runParallel(backend, workers, numKBlocks*numStrips, func(task int) {
		p, s := task/numStrips, task%numStrips
		gemmPackBStrip(b, kStarts[p], kStarts[p+1]-kStarts[p], s*width, min(width, N-s*width), pb.strip(p, s), width)
	})

	fullH, fullW := spec.FullH, spec.FullW
	slabLen := fullH * fullW * c
	rsBytes := uintptr(K * 4)
	ldc := uintptr(spec.SX * c * 4) // Between the pixels of a tile (consecutive x).
	fullTiles, rem := spec.Wo/gemmMR, spec.Wo%gemmMR
	runParallel(backend, workers, spec.N, func(img int) {
		slab := gemmScratch(slabLen)
		defer gemmRelease(slab)
		clear(slab)
		var cEdge [gemmMR * gemmNR]float32
		aEdge := gemmScratch(gemmMR * GemmKcMax)
		defer gemmRelease(aEdge)
		for p := range numKBlocks {
			k0 := kStarts[p]
			kc := kStarts[p+1] - k0
			for s := range numStrips {
				j0 := s * width
				bStrip := pb.strip(p, s)
				for y := range spec.Ho {
					m0 := (img*spec.Ho + y) * spec.Wo
					if c%width != 0 {
						// Several taps per strip: tile by tile through cEdge.
						for x0 := 0; x0 < spec.Wo; x0 += gemmMR {
							mr := min(gemmMR, spec.Wo-x0)
							aTile, rsTile := a.at(m0+x0, k0), rsBytes
							if mr < gemmMR {
								gemmCopyEdgeRows(a, m0+x0, mr, k0, kc, aEdge)
								aTile, rsTile = unsafe.Pointer(&aEdge[0]), uintptr(kc*4)
							}
							avx512GemmKernel6x64(aTile, rsTile, 4, bStrip, unsafe.Pointer(&cEdge[0]), gemmNR*4, kc, false, aTile)
							for q := 0; q < gemmNR && j0+q < N; q += c {
								tap := spec.Taps[(j0+q)/c]
								off := ((y*spec.SY+tap[0])*fullW + x0*spec.SX + tap[1]) * c
								for r := range mr {
									gemmAddInto(slab[off+r*spec.SX*c:off+r*spec.SX*c+c], cEdge[r*gemmNR+q:r*gemmNR+q+c])
								}
							}
						}
						continue
					}
					tap := spec.Taps[j0/c]
					c0 := j0 % c
					slabRow := (y*spec.SY + tap[0]) * fullW
					// C element (x, ch) of this row and strip is at slab[(slabRow + x*SX + tap[1])*c + c0 + ch].
					if fullTiles > 0 {
						cPtr := unsafe.Pointer(&slab[(slabRow+tap[1])*c+c0])
						gemmKernelMulti(width, a.at(m0, k0), rsBytes, 4, bStrip, cPtr, ldc, kc, true, fullTiles, gemmMR*rsBytes)
					}
					if rem > 0 {
						x0 := fullTiles * gemmMR
						gemmCopyEdgeRows(a, m0+x0, rem, k0, kc, aEdge)
						gemmKernel(width, unsafe.Pointer(&aEdge[0]), uintptr(kc*4), 4, bStrip, unsafe.Pointer(&cEdge[0]), uintptr(width*4), kc, false,
							unsafe.Pointer(&aEdge[0]))
						for r := range rem {
							off := (slabRow+(x0+r)*spec.SX+tap[1])*c + c0
							gemmAddInto(slab[off:off+width], cEdge[r*width:(r+1)*width])
						}
					}
				}
			}
		}
		// The window of the slab into the output.
		rowLen := spec.OutW * c
		for y := range spec.OutH {
			src := slab[((spec.WinY+y)*fullW+spec.WinX)*c:]
			dst := output[((img*spec.OutH)+y)*rowLen:]
			copy(dst[:rowLen], src[:rowLen])
		}
	})
	runtime.KeepAlive(lhs)
	runtime.KeepAlive(rhs)
}

// GemmCol2ImChannelsOK reports whether avx512GemmCol2Im handles convolutions with c channels:
// multiples of 64, or of 32 with the narrow kernels (strips within one tap, accumulated into the
// slab directly), or 16 and 32 (whole taps per strip, added through a scratch tile).
func GemmCol2ImChannelsOK(c int) bool {
	return c > 0 && (c%gemmNR == 0 || (gemmNR%c == 0 && c%16 == 0) || (UseNarrowGemm && c%gemmNRNarrow == 0))
}

// gemmAddInto adds src to dst (same length, a multiple of 16).
func gemmAddInto(dst, src []float32) {
	src = src[:len(dst)]
	for i := 0; i+16 <= len(dst); i += 16 {
		archsimd.LoadFloat32x16Slice(dst[i:]).Add(archsimd.LoadFloat32x16Slice(src[i:])).StoreSlice(dst[i:])
	}
}
