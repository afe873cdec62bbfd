// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

// DreamTeacher-Go patch: fast Slice and Concatenate (memmove of contiguous runs, in parallel),
// see PATCHES.md. The generic Slice walked an index per element (~15% of a ResNet-18 training
// step, where the patch extraction of the convolutions and its gradient are slices).

package ops

import (
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/internal/gobackend"
	"github.com/gomlx/compute/shapes"
)

// dtFastSlice: the fast paths of Slice and Concatenate (GOMLX_DT_DISABLE=slice turns them off;
// the fused Concatenate still needs this executor).
var dtFastSlice = !gobackend.DTPatchDisabled("slice")

func init() {
	if !gobackend.DTPatchesEnabled {
		return
	}
	gobackend.SetNodeExecutor(compute.OpTypeSlice, gobackend.PriorityArch, execSliceFast)
	gobackend.SetNodeExecutor(compute.OpTypeConcatenate, gobackend.PriorityArch, execConcatenateFast)
}

// dtByteCopyable reports whether elements of dtype are whole bytes.
func dtByteCopyable(shape shapes.Shape) bool {
	return shape.DType.Bits()%8 == 0 && shape.DType.Size() >= 1 && !shape.IsDynamic()
}

func execSliceFast(backend *gobackend.Backend, node *gobackend.Node, inputs []*gobackend.Buffer, inputsOwned []bool) (*gobackend.Buffer, error) {
	operand := inputs[0]
	params, ok := node.Data.(*sliceNode)
	if !ok || !dtFastSlice || !dtByteCopyable(node.Shape) || !dtByteCopyable(operand.RawShape) {
		return execSlice(backend, node, inputs, inputsOwned)
	}
	output, err := backend.GetBuffer(node.Shape)
	if err != nil {
		return nil, err
	}
	if output.RawShape.Size() == 0 {
		return output, nil
	}
	elemBytes := node.Shape.DType.Size()
	srcBytes, err := operand.MutableBytes()
	if err != nil {
		return nil, err
	}
	dstBytes, err := output.MutableBytes()
	if err != nil {
		return nil, err
	}
	srcBase, srcStrides := dtSliceSource(operand.RawShape.Dimensions, params, elemBytes)
	dstStrides := dtRowMajorByteStrides(output.RawShape.Dimensions, elemBytes)
	plan := newDTCopyPlan(output.RawShape.Dimensions, srcStrides, dstStrides, srcBase, 0, elemBytes)
	plan.run(backend, dstBytes, srcBytes)
	return output, nil
}

func execConcatenateFast(backend *gobackend.Backend, node *gobackend.Node, inputs []*gobackend.Buffer, inputsOwned []bool) (*gobackend.Buffer, error) {
	if fused, ok := node.Data.(*dtConcatSlicesNode); ok {
		return execConcatSlices(backend, node, inputs, fused)
	}
	axis, ok := node.Data.(int)
	if !ok || !dtFastSlice || !dtByteCopyable(node.Shape) {
		return execConcatenate(backend, node, inputs, inputsOwned)
	}
	output, err := backend.GetBuffer(node.Shape)
	if err != nil {
		return nil, err
	}
	if output.RawShape.Size() == 0 {
		return output, nil
	}
	dstBytes, err := output.MutableBytes()
	if err != nil {
		return nil, err
	}
	elemBytes := node.Shape.DType.Size()
	outDims := output.RawShape.Dimensions
	dstStrides := dtRowMajorByteStrides(outDims, elemBytes)
	var parts []dtCopyPart
	offset := 0
	for _, in := range inputs {
		dims := in.RawShape.Dimensions
		if in.RawShape.Size() == 0 {
			continue
		}
		srcBytes, err := in.MutableBytes()
		if err != nil {
			return nil, err
		}
		plan := newDTCopyPlan(dims, dtRowMajorByteStrides(dims, elemBytes), dstStrides, 0, offset*dstStrides[axis], elemBytes)
		offset += dims[axis]
		parts = append(parts, dtCopyPart{plan, srcBytes, plan.numOuter()})
	}
	dtRunParts(backend, parts, dstBytes)
	return output, nil
}
