// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

// DreamTeacher-Go patch: fast float32 element-wise binary ops (with broadcasting), Sign and
// ReduceSum: contiguous (SIMD) inner loops instead of a per-element index iterator, in parallel
// for large tensors. See PATCHES.md.

package ops

import (
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/internal/gobackend"
)

// dtFastElementwise: the fast float32 paths of the binary ops, Sign and ReduceSum
// (GOMLX_DT_DISABLE=elementwise turns them off; the fused nodes still need these executors).
var dtFastElementwise = !gobackend.DTPatchDisabled("elementwise")

func init() {
	if !gobackend.DTPatchesEnabled {
		return
	}
	for _, op := range []compute.OpType{compute.OpTypeAdd, compute.OpTypeSub, compute.OpTypeMul, compute.OpTypeDiv,
		compute.OpTypeMax, compute.OpTypeMin} {
		gobackend.SetNodeExecutor(op, gobackend.PriorityArch, execBinaryFloat32Fast)
	}
	gobackend.SetNodeExecutor(compute.OpTypeSign, gobackend.PriorityArch, execSignFast)
	gobackend.SetNodeExecutor(compute.OpTypeLogistic, gobackend.PriorityArch, execLogisticFast)
	gobackend.SetNodeExecutor(compute.OpTypeReduceSum, gobackend.PriorityArch, execReduceSumFast)
}

// dtBinaryGenericExec are the original executors, for the cases the fast path doesn't handle.
func dtBinaryGenericExec(op compute.OpType) gobackend.NodeExecutor {
	switch op { //nolint:exhaustive
	case compute.OpTypeAdd:
		return execAdd
	case compute.OpTypeSub:
		return execSub
	case compute.OpTypeMul:
		return execMul
	case compute.OpTypeDiv:
		return execDiv
	case compute.OpTypeMax:
		return execMax
	case compute.OpTypeMin:
		return execMin
	}
	return nil
}

// dtBroadcastGroup is a run of consecutive output axes where each operand is either full
// (its dimension equals the output's) or broadcast (dimension 1).
type dtBroadcastGroup struct {
	size                            int
	lhsFull, rhsFull                bool
	lhsStride, rhsStride, outStride int
}

// dtBroadcastGroups merges the axes of a broadcasting binary op. ok is false for shapes it
// doesn't handle.
func dtBroadcastGroups(lhsDims, rhsDims, outDims []int) (groups []dtBroadcastGroup, ok bool) {
	rank := len(outDims)
	lhsScalar, rhsScalar := len(lhsDims) == 0, len(rhsDims) == 0
	if (!lhsScalar && len(lhsDims) != rank) || (!rhsScalar && len(rhsDims) != rank) {
		return nil, false
	}
	for a, d := range outDims {
		if d == 1 {
			continue
		}
		lf := !lhsScalar && lhsDims[a] == d
		rf := !rhsScalar && rhsDims[a] == d
		if (!lhsScalar && !lf && lhsDims[a] != 1) || (!rhsScalar && !rf && rhsDims[a] != 1) || (!lf && !rf) {
			return nil, false
		}
		if n := len(groups); n > 0 && groups[n-1].lhsFull == lf && groups[n-1].rhsFull == rf {
			groups[n-1].size *= d
			continue
		}
		groups = append(groups, dtBroadcastGroup{size: d, lhsFull: lf, rhsFull: rf})
	}
	ls, rs, os := 1, 1, 1
	for g := len(groups) - 1; g >= 0; g-- {
		groups[g].outStride = os
		os *= groups[g].size
		if groups[g].lhsFull {
			groups[g].lhsStride = ls
			ls *= groups[g].size
		}
		if groups[g].rhsFull {
			groups[g].rhsStride = rs
			rs *= groups[g].size
		}
	}
	return groups, true
}

func dtF32BinaryKernels(op compute.OpType) (vv func(dst, a, b []float32), vs func(dst, a []float32, b float32), sv func(dst []float32, a float32, b []float32)) {
	switch op { //nolint:exhaustive
	case compute.OpTypeAdd:
		return dtF32AddVV, dtF32AddVS, dtF32AddSV
	case compute.OpTypeSub:
		return dtF32SubVV, dtF32SubVS, dtF32SubSV
	case compute.OpTypeMul:
		return dtF32MulVV, dtF32MulVS, dtF32MulSV
	case compute.OpTypeDiv:
		return dtF32DivVV, dtF32DivVS, dtF32DivSV
	case compute.OpTypeMax:
		return func(dst, a, b []float32) {
				b = b[:len(a)]
				for i := range a {
					dst[i] = max(a[i], b[i])
				}
			}, func(dst, a []float32, b float32) {
				for i := range a {
					dst[i] = max(a[i], b)
				}
			}, func(dst []float32, a float32, b []float32) {
				for i := range b {
					dst[i] = max(a, b[i])
				}
			}
	case compute.OpTypeMin:
		return func(dst, a, b []float32) {
				b = b[:len(a)]
				for i := range a {
					dst[i] = min(a[i], b[i])
				}
			}, func(dst, a []float32, b float32) {
				for i := range a {
					dst[i] = min(a[i], b)
				}
			}, func(dst []float32, a float32, b []float32) {
				for i := range b {
					dst[i] = min(a, b[i])
				}
			}
	}
	return nil, nil, nil
}

func execBinaryFloat32Fast(backend *gobackend.Backend, node *gobackend.Node, inputs []*gobackend.Buffer, inputsOwned []bool) (*gobackend.Buffer, error) {
	if ps, ok := node.Data.(*dtPadSumNode); ok {
		return execPadSum(backend, node, inputs, ps)
	}
	if fused, ok := node.Data.(*dtFusedNode); ok {
		return execFused(backend, node, inputs, inputsOwned, fused)
	}
	if gc, ok := node.Data.(*dtGemmCol2ImNode); ok {
		return execGemmCol2Im(backend, node, inputs, gc)
	}
	lhsIn, rhsIn := inputs[0], inputs[1]
	if !dtFastElementwise || node.Shape.DType != dtypes.Float32 || node.Shape.IsDynamic() ||
		lhsIn.RawShape.DType != dtypes.Float32 || rhsIn.RawShape.DType != dtypes.Float32 {
		return dtBinaryGenericExec(node.OpType)(backend, node, inputs, inputsOwned)
	}
	outShape := node.Shape
	lhsDims, rhsDims := lhsIn.RawShape.Dimensions, rhsIn.RawShape.Dimensions
	if lhsIn.RawShape.Size() == 1 {
		lhsDims = nil
	}
	if rhsIn.RawShape.Size() == 1 {
		rhsDims = nil
	}
	groups, ok := dtBroadcastGroups(lhsDims, rhsDims, outShape.Dimensions)
	if !ok {
		return dtBinaryGenericExec(node.OpType)(backend, node, inputs, inputsOwned)
	}
	// Output: reuse an owned full-size input, like the generic executors.
	var output *gobackend.Buffer
	switch {
	case inputsOwned[1] && rhsIn.RawShape.Equal(outShape):
		output = rhsIn
		inputs[1] = nil
	case inputsOwned[0] && lhsIn.RawShape.Equal(outShape):
		output = lhsIn
		inputs[0] = nil
	default:
		var err error
		output, err = backend.GetBuffer(outShape)
		if err != nil {
			return nil, err
		}
	}
	lhs, rhs, out := lhsIn.Flat.([]float32), rhsIn.Flat.([]float32), output.Flat.([]float32)
	n := outShape.Size()
	if n == 0 {
		return output, nil
	}
	vv, vs, sv := dtF32BinaryKernels(node.OpType)
	if len(groups) == 0 {
		// All dimensions 1.
		groups = []dtBroadcastGroup{{size: 1, lhsFull: true, rhsFull: true, lhsStride: 1, rhsStride: 1, outStride: 1}}
	}
	inner := groups[len(groups)-1]
	// apply computes the inner run [i0, i1) of the inner group at offsets (lo, ro, oo).
	apply := func(lo, ro, oo, i0, i1 int) {
		switch {
		case inner.lhsFull && inner.rhsFull:
			vv(out[oo+i0:oo+i1], lhs[lo+i0:lo+i1], rhs[ro+i0:ro+i1])
		case inner.lhsFull:
			vs(out[oo+i0:oo+i1], lhs[lo+i0:lo+i1], rhs[ro])
		default:
			sv(out[oo+i0:oo+i1], lhs[lo], rhs[ro+i0:ro+i1])
		}
	}
	outer := groups[:len(groups)-1]
	numOuter := n / inner.size
	if numOuter == 1 {
		dtParallelFor(backend, inner.size, 1, func(start, end int) { apply(0, 0, 0, start, end) })
		return output, nil
	}
	dtParallelFor(backend, numOuter, inner.size, func(start, end int) {
		// Decompose start into the outer groups' indices.
		idx := make([]int, len(outer))
		lo, ro, oo := 0, 0, 0
		rem := start
		for g := len(outer) - 1; g >= 0; g-- {
			idx[g] = rem % outer[g].size
			rem /= outer[g].size
			lo += idx[g] * outer[g].lhsStride
			ro += idx[g] * outer[g].rhsStride
			oo += idx[g] * outer[g].outStride
		}
		for range end - start {
			apply(lo, ro, oo, 0, inner.size)
			for g := len(outer) - 1; g >= 0; g-- {
				idx[g]++
				lo += outer[g].lhsStride
				ro += outer[g].rhsStride
				oo += outer[g].outStride
				if idx[g] < outer[g].size {
					break
				}
				idx[g] = 0
				lo -= outer[g].size * outer[g].lhsStride
				ro -= outer[g].size * outer[g].rhsStride
				oo -= outer[g].size * outer[g].outStride
			}
		}
	})
	return output, nil
}

func execSignFast(backend *gobackend.Backend, node *gobackend.Node, inputs []*gobackend.Buffer, inputsOwned []bool) (*gobackend.Buffer, error) {
	if fused, ok := node.Data.(*dtFusedNode); ok {
		return execFused(backend, node, inputs, inputsOwned, fused)
	}
	if !dtFastElementwise || node.Shape.DType != dtypes.Float32 || inputs[0].RawShape.DType != dtypes.Float32 {
		return execSign(backend, node, inputs, inputsOwned)
	}
	input, output, err := unaryOperandAndOutput(backend, inputs, inputsOwned)
	if err != nil {
		return nil, err
	}
	x, y := input.Flat.([]float32), output.Flat.([]float32)
	dtParallelFor(backend, len(y), 1, func(start, end int) { dtF32Sign(y[start:end], x[start:end]) })
	return output, nil
}

// execLogisticFast is the float32 sigmoid (SiLU's, in every ADM ResBlock) in SIMD lanes and in
// parallel (patch 17): it was ~18% of an adm_camvid training step as a scalar loop.
func execLogisticFast(backend *gobackend.Backend, node *gobackend.Node, inputs []*gobackend.Buffer, inputsOwned []bool) (*gobackend.Buffer, error) {
	if !dtFastElementwise || node.Shape.DType != dtypes.Float32 || inputs[0].RawShape.DType != dtypes.Float32 {
		return execLogistic(backend, node, inputs, inputsOwned)
	}
	input, output, err := unaryOperandAndOutput(backend, inputs, inputsOwned)
	if err != nil {
		return nil, err
	}
	x, y := input.Flat.([]float32), output.Flat.([]float32)
	dtParallelFor(backend, len(y), 8, func(start, end int) { dtF32Logistic(y[start:end], x[start:end]) })
	return output, nil
}

// execReduceSumFast handles float32 sums over a set of axes that, after merging consecutive axes,
// is [keep, reduce] (row sums), [reduce, keep] (column sums) or [keep, reduce, keep].
func execReduceSumFast(backend *gobackend.Backend, node *gobackend.Node, inputs []*gobackend.Buffer, inputsOwned []bool) (*gobackend.Buffer, error) {
	operand := inputs[0]
	reduceAxes, _ := node.Data.([]int)
	if !dtFastElementwise || node.Shape.DType != dtypes.Float32 || operand.RawShape.DType != dtypes.Float32 || node.Shape.IsDynamic() ||
		len(reduceAxes) == 0 {
		return execReduce(backend, node, inputs, inputsOwned)
	}
	dims := operand.RawShape.Dimensions
	isReduced := make([]bool, len(dims))
	for _, a := range reduceAxes {
		if a < 0 || a >= len(dims) {
			return execReduce(backend, node, inputs, inputsOwned)
		}
		isReduced[a] = true
	}
	// Merge axes into [outer keep?] [reduce] [inner keep?].
	type group struct {
		size    int
		reduced bool
	}
	var groups []group
	for a, d := range dims {
		if d == 1 {
			continue
		}
		if n := len(groups); n > 0 && groups[n-1].reduced == isReduced[a] {
			groups[n-1].size *= d
			continue
		}
		groups = append(groups, group{d, isReduced[a]})
	}
	outer, red, inner := 1, 1, 1
	switch {
	case len(groups) == 0:
	case len(groups) == 1 && groups[0].reduced:
		red = groups[0].size
	case len(groups) == 1:
		inner = groups[0].size
	case len(groups) == 2 && groups[0].reduced:
		red, inner = groups[0].size, groups[1].size
	case len(groups) == 2:
		outer, red = groups[0].size, groups[1].size
	case len(groups) == 3 && groups[1].reduced:
		outer, red, inner = groups[0].size, groups[1].size, groups[2].size
	default:
		return execReduce(backend, node, inputs, inputsOwned)
	}
	output, err := backend.GetBuffer(node.Shape)
	if err != nil {
		return nil, err
	}
	x, y := operand.Flat.([]float32), output.Flat.([]float32)
	if inner == 1 {
		// Row sums: y[o] = Σ_r x[o, r].
		dtParallelFor(backend, outer, red, func(start, end int) {
			for o := start; o < end; o++ {
				y[o] = dtF32Sum(x[o*red : (o+1)*red])
			}
		})
		return output, nil
	}
	// Column sums: y[o, i] = Σ_r x[o, r, i], accumulated in r order; split over r in fixed chunks
	// (partial sums added in chunk order) when there is one outer block and many rows.
	clear(y)
	if outer > 1 || red*inner < 4*dtParallelMinWork {
		dtParallelFor(backend, outer, red*inner, func(start, end int) {
			for o := start; o < end; o++ {
				dtF32AccumulateRows(y[o*inner:(o+1)*inner], x[o*red*inner:(o+1)*red*inner], red)
			}
		})
		return output, nil
	}
	const numChunks = 8
	chunkRows := (red + numChunks - 1) / numChunks
	partials := make([]float32, numChunks*inner)
	dtParallelFor(backend, numChunks, chunkRows*inner, func(start, end int) {
		for c := start; c < end; c++ {
			r0 := min(red, c*chunkRows)
			r1 := min(red, r0+chunkRows)
			dtF32AccumulateRows(partials[c*inner:(c+1)*inner], x[r0*inner:r1*inner], r1-r0)
		}
	})
	for c := range numChunks {
		dtF32AccumulateRows(y, partials[c*inner:(c+1)*inner], 1)
	}
	return output, nil
}
