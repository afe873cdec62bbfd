// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

// DreamTeacher-Go patch 18: a fast float32 Transpose (see PATCHES.md). The generic executor walks
// every element with an index iterator; most transposes of a training step are either moves of
// unit axes (a reshape), moves of whole rows (the last axis stays last: row copies), or batched
// 2-D transposes once consecutive axes are merged.

package ops

import (
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/internal/gobackend"
)

func init() {
	if !gobackend.DTPatchesEnabled {
		return
	}
	gobackend.SetNodeExecutor(compute.OpTypeTranspose, gobackend.PriorityArch, execTransposeFast)
}

// dtTransposePlan merges the axes of a transpose of dims by perm (output axis i = input axis
// perm[i]): unit axes are dropped and consecutive input axes that stay consecutive in the output
// are merged. It returns the merged input dimensions and the permutation over them.
func dtTransposePlan(dims, perm []int) (mdims, mperm []int) {
	reduced := make([]int, len(dims)) // Index of each non-unit input axis among the non-unit ones.
	var rdims []int
	for a, d := range dims {
		reduced[a] = len(rdims)
		if d > 1 {
			rdims = append(rdims, d)
		}
	}
	// Groups of consecutive reduced input axes, in output order.
	var starts, ends []int
	for _, a := range perm {
		if dims[a] == 1 {
			continue
		}
		r := reduced[a]
		if n := len(ends); n > 0 && ends[n-1]+1 == r {
			ends[n-1] = r
			continue
		}
		starts, ends = append(starts, r), append(ends, r)
	}
	// The merged input axes are the groups in input order.
	k := len(starts)
	mperm = make([]int, k)
	mdims = make([]int, k)
	for i, s := range starts {
		rank := 0
		for _, s2 := range starts {
			if s2 < s {
				rank++
			}
		}
		mperm[i] = rank
		size := 1
		for r := s; r <= ends[i]; r++ {
			size *= rdims[r]
		}
		mdims[rank] = size
	}
	return mdims, mperm
}

func execTransposeFast(backend *gobackend.Backend, node *gobackend.Node, inputs []*gobackend.Buffer, inputsOwned []bool) (*gobackend.Buffer, error) {
	operand := inputs[0]
	perm, ok := node.Data.([]int)
	if !ok || !dtFastElementwise || node.Shape.DType != dtypes.Float32 || operand.RawShape.DType != dtypes.Float32 ||
		node.Shape.IsDynamic() || operand.RawShape.IsDynamic() {
		return execTranspose(backend, node, inputs, inputsOwned)
	}
	mdims, mperm := dtTransposePlan(operand.RawShape.Dimensions, perm)
	k := len(mdims)
	if k <= 1 {
		return reshapeToShape(backend, node.Shape, inputs, inputsOwned) // Only unit axes moved.
	}
	batched := true // mperm = [0, ..., k-3, k-1, k-2]: batched 2-D transposes.
	for i := range k - 2 {
		batched = batched && mperm[i] == i
	}
	batched = batched && mperm[k-2] == k-1 && mperm[k-1] == k-2
	if mperm[k-1] != k-1 && !batched {
		return execTranspose(backend, node, inputs, inputsOwned)
	}
	output, err := backend.GetBuffer(node.Shape)
	if err != nil {
		return nil, err
	}
	src, dst := operand.Flat.([]float32), output.Flat.([]float32)
	if batched {
		rows, cols := mdims[k-2], mdims[k-1]
		batch := len(src) / (rows * cols)
		// Tasks: (batch, block of 16 source rows).
		rowBlocks := (rows + 15) / 16
		dtParallelFor(backend, batch*rowBlocks, 16*cols, func(start, end int) {
			for t := start; t < end; t++ {
				b, i0 := t/rowBlocks, (t%rowBlocks)*16
				i1 := min(rows, i0+16)
				s, d := src[b*rows*cols:(b+1)*rows*cols], dst[b*rows*cols:(b+1)*rows*cols]
				for j0 := 0; j0 < cols; j0 += 16 {
					j1 := min(cols, j0+16)
					for i := i0; i < i1; i++ {
						row := s[i*cols : i*cols+cols]
						for j := j0; j < j1; j++ {
							d[j*rows+i] = row[j]
						}
					}
				}
			}
		})
		return output, nil
	}
	// The last axis stays last: copy rows of mdims[k-1] elements, in output order.
	rowLen := mdims[k-1]
	inStrides := make([]int, k)
	stride := 1
	for a := k - 1; a >= 0; a-- {
		inStrides[a] = stride
		stride *= mdims[a]
	}
	outDims := make([]int, k-1) // Output axes but the last, and their input strides.
	outStrides := make([]int, k-1)
	for i := range k - 1 {
		outDims[i], outStrides[i] = mdims[mperm[i]], inStrides[mperm[i]]
	}
	numRows := len(dst) / rowLen
	dtParallelFor(backend, numRows, rowLen, func(start, end int) {
		// Input offset of output row `start`, then an odometer over the output axes.
		idx := make([]int, k-1)
		r, off := start, 0
		for i := k - 2; i >= 0; i-- {
			idx[i] = r % outDims[i]
			r /= outDims[i]
			off += idx[i] * outStrides[i]
		}
		for row := start; row < end; row++ {
			copy(dst[row*rowLen:(row+1)*rowLen], src[off:off+rowLen])
			for i := k - 2; i >= 0; i-- {
				idx[i]++
				off += outStrides[i]
				if idx[i] < outDims[i] {
					break
				}
				off -= idx[i] * outStrides[i]
				idx[i] = 0
			}
		}
	})
	return output, nil
}
