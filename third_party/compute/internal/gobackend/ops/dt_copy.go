// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

// DreamTeacher-Go patch: a strided copy engine (used by the fast Slice, Concatenate and the
// fused Concatenate-of-Slices), see PATCHES.md.

package ops

import (
	"slices"
	"unsafe"

	"github.com/gomlx/compute/internal/gobackend"
)

// dtCopyPlan copies a block of dims elements from src to dst, where the element at multi-index
// idx is read at srcBase + Σ idx[a]*srcStrides[a] and written at dstBase + Σ idx[a]*dstStrides[a]
// (all in bytes). Axes are merged where both sides are contiguous, and the innermost contiguous
// run is copied with memmove.
type dtCopyPlan struct {
	dims                   []int
	srcStrides, dstStrides []int
	srcBase, dstBase       int
	elemBytes              int
	runElems               int // Elements of the innermost axis, when it is contiguous on both sides (else 0).

	// accumulateF32: add the (float32) source to the destination instead of copying.
	accumulateF32 bool
}

// dtF32Bytes is the byte view of a float32 slice.
func dtF32Bytes(x []float32) []byte {
	if len(x) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&x[0])), 4*len(x))
}

// dtBytesF32 is the float32 view of n floats at the start of b.
func dtBytesF32(b []byte, n int) []float32 {
	_ = b[4*n-1]
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), n)
}

func newDTCopyPlan(dims, srcStrides, dstStrides []int, srcBase, dstBase, elemBytes int) *dtCopyPlan {
	p := &dtCopyPlan{srcBase: srcBase, dstBase: dstBase, elemBytes: elemBytes}
	for a, d := range dims {
		if d == 1 {
			continue
		}
		n := len(p.dims)
		if n > 0 && p.srcStrides[n-1] == srcStrides[a]*d && p.dstStrides[n-1] == dstStrides[a]*d {
			// Merge with the previous axis.
			p.dims[n-1] *= d
			p.srcStrides[n-1] = srcStrides[a]
			p.dstStrides[n-1] = dstStrides[a]
			continue
		}
		p.dims = append(p.dims, d)
		p.srcStrides = append(p.srcStrides, srcStrides[a])
		p.dstStrides = append(p.dstStrides, dstStrides[a])
	}
	if n := len(p.dims); n > 0 && p.srcStrides[n-1] == elemBytes && p.dstStrides[n-1] == elemBytes {
		p.runElems = p.dims[n-1]
		p.dims = p.dims[:n-1]
		p.srcStrides = p.srcStrides[:n-1]
		p.dstStrides = p.dstStrides[:n-1]
	}
	return p
}

// numOuter is the number of innermost runs (or of elements, when runElems == 0).
func (p *dtCopyPlan) numOuter() int {
	n := 1
	for _, d := range p.dims {
		n *= d
	}
	return n
}

// run executes the plan, in parallel over the outer index when large.
func (p *dtCopyPlan) run(backend *gobackend.Backend, dst, src []byte) {
	if len(dst) == 0 || len(src) == 0 {
		return
	}
	n := p.numOuter()
	runElems := max(p.runElems, 1)
	dtParallelFor(backend, n, runElems, func(start, end int) { p.runRange(dst, src, start, end) })
}

// runRange copies the outer indices [start, end).
func (p *dtCopyPlan) runRange(dst, src []byte, start, end int) {
	rank := len(p.dims)
	var idxArr [8]int
	idx := idxArr[:0]
	if rank > len(idxArr) {
		idx = make([]int, 0, rank)
	}
	idx = idx[:rank]
	srcOff, dstOff := p.srcBase, p.dstBase
	rem := start
	for a := rank - 1; a >= 0; a-- {
		idx[a] = rem % p.dims[a]
		rem /= p.dims[a]
		srcOff += idx[a] * p.srcStrides[a]
		dstOff += idx[a] * p.dstStrides[a]
	}
	srcPtr := unsafe.Pointer(unsafe.SliceData(src))
	dstPtr := unsafe.Pointer(unsafe.SliceData(dst))
	runBytes := p.runElems * p.elemBytes
	for i := start; i < end; i++ {
		if p.accumulateF32 {
			if runBytes > 0 {
				d := dtBytesF32(dst[dstOff:dstOff+runBytes], p.runElems)
				dtF32AddVV(d, d, dtBytesF32(src[srcOff:srcOff+runBytes], p.runElems))
			} else {
				_, _ = dst[dstOff+3], src[srcOff+3]
				*(*float32)(unsafe.Add(dstPtr, dstOff)) += *(*float32)(unsafe.Add(srcPtr, srcOff))
			}
		} else if runBytes > 0 {
			copy(dst[dstOff:dstOff+runBytes], src[srcOff:srcOff+runBytes])
		} else {
			_, _ = dst[dstOff+p.elemBytes-1], src[srcOff+p.elemBytes-1]
			switch p.elemBytes {
			case 4:
				*(*uint32)(unsafe.Add(dstPtr, dstOff)) = *(*uint32)(unsafe.Add(srcPtr, srcOff))
			case 8:
				*(*uint64)(unsafe.Add(dstPtr, dstOff)) = *(*uint64)(unsafe.Add(srcPtr, srcOff))
			case 2:
				*(*uint16)(unsafe.Add(dstPtr, dstOff)) = *(*uint16)(unsafe.Add(srcPtr, srcOff))
			default:
				copy(dst[dstOff:dstOff+p.elemBytes], src[srcOff:srcOff+p.elemBytes])
			}
		}
		// Advance the odometer.
		for a := rank - 1; a >= 0; a-- {
			idx[a]++
			srcOff += p.srcStrides[a]
			dstOff += p.dstStrides[a]
			if idx[a] < p.dims[a] {
				break
			}
			srcOff -= p.dims[a] * p.srcStrides[a]
			dstOff -= p.dims[a] * p.dstStrides[a]
			idx[a] = 0
		}
	}
}

// dtRowMajorByteStrides returns the row-major strides in bytes of dims.
func dtRowMajorByteStrides(dims []int, elemBytes int) []int {
	strides := make([]int, len(dims))
	s := elemBytes
	for a := len(dims) - 1; a >= 0; a-- {
		strides[a] = s
		s *= dims[a]
	}
	return strides
}

// dtSlicePlanSource describes where a slice of a tensor reads its elements: the base offset and
// the per-output-axis strides, in bytes.
func dtSliceSource(operandDims []int, params *sliceNode, elemBytes int) (base int, strides []int) {
	opStrides := dtRowMajorByteStrides(operandDims, elemBytes)
	strides = make([]int, len(operandDims))
	for a := range operandDims {
		base += params.starts[a] * opStrides[a]
		strides[a] = params.strides[a] * opStrides[a]
	}
	return
}

// dtSameStructure reports whether the plans iterate the same index space (same merged dims and
// runs), so that they can run interleaved.
func dtSameStructure(plans []*dtCopyPlan) bool {
	for _, p := range plans[1:] {
		if p.runElems != plans[0].runElems || p.elemBytes != plans[0].elemBytes || p.accumulateF32 != plans[0].accumulateF32 ||
			!slices.Equal(p.dims, plans[0].dims) {
			return false
		}
	}
	return true
}

// dtRunInterleaved runs the outer indices [start, end) of plans with the same structure, all
// plans at each index before moving to the next: e.g. the 9 taps of an im2col write whole rows of
// the patches (or read whole rows of their gradient) instead of 9 strided passes.
func dtRunInterleaved(plans []*dtCopyPlan, dst []byte, srcs [][]byte, start, end int) {
	p0 := plans[0]
	rank := len(p0.dims)
	np := len(plans)
	var idxArr [8]int
	var offsArr [2 * 16]int
	idx := idxArr[:0]
	if rank > len(idxArr) {
		idx = make([]int, 0, rank)
	}
	idx = idx[:rank]
	offs := offsArr[:0]
	if 2*np > len(offsArr) {
		offs = make([]int, 0, 2*np)
	}
	offs = offs[:2*np]
	srcOffs, dstOffs := offs[:np], offs[np:]
	rem := start
	for a := rank - 1; a >= 0; a-- {
		idx[a] = rem % p0.dims[a]
		rem /= p0.dims[a]
	}
	for i, p := range plans {
		srcOffs[i], dstOffs[i] = p.srcBase, p.dstBase
		for a := range rank {
			srcOffs[i] += idx[a] * p.srcStrides[a]
			dstOffs[i] += idx[a] * p.dstStrides[a]
		}
	}
	runBytes := p0.runElems * p0.elemBytes
	for range end - start {
		for i, p := range plans {
			so, do := srcOffs[i], dstOffs[i]
			if runBytes == 0 {
				p.runRangeAt(dst, srcs[i], so, do)
				continue
			}
			if p.accumulateF32 {
				d := dtBytesF32(dst[do:do+runBytes], p.runElems)
				dtF32AddVV(d, d, dtBytesF32(srcs[i][so:so+runBytes], p.runElems))
			} else {
				copy(dst[do:do+runBytes], srcs[i][so:so+runBytes])
			}
		}
		for a := rank - 1; a >= 0; a-- {
			idx[a]++
			for i, p := range plans {
				srcOffs[i] += p.srcStrides[a]
				dstOffs[i] += p.dstStrides[a]
			}
			if idx[a] < p0.dims[a] {
				break
			}
			for i, p := range plans {
				srcOffs[i] -= p0.dims[a] * p.srcStrides[a]
				dstOffs[i] -= p0.dims[a] * p.dstStrides[a]
			}
			idx[a] = 0
		}
	}
}

// runRangeAt copies (or adds) the single element at the given offsets (plans without runs).
func (p *dtCopyPlan) runRangeAt(dst, src []byte, srcOff, dstOff int) {
	_, _ = dst[dstOff+p.elemBytes-1], src[srcOff+p.elemBytes-1]
	if p.accumulateF32 {
		*(*float32)(unsafe.Pointer(&dst[dstOff])) += *(*float32)(unsafe.Pointer(&src[srcOff]))
		return
	}
	copy(dst[dstOff:dstOff+p.elemBytes], src[srcOff:srcOff+p.elemBytes])
}
