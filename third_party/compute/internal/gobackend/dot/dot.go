// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

// Package dot implements a general-purpose "dot product" ("Einsum")
// computation.
//
// It provides a registration system for the underlying "MatMul" (matrix
// multiplication) implementations -- to it allows pluggability of different
// implementations, so one can easily experiment with it. The sub-package `matmul`
// provides the base implementation (including some SIMD variants)
//
// The actual "MatMul" implementation used is in part selected at build-time
// (depending on the architecture and tags), at initialization time (based on
// presence of SIMD features) and during graph-build time, based on the input
// shapes, layout and dtypes.
//
// Environment variables that can be used to disable certain features:
//
//   - GOMLX_DOT_MATMUL: set to false to disable the default matmul implementation.
//     if you haven't added other plugin implementations, it will effectively disable DotGeneral.
//   - GOMLX_SIMD_AVX512: set to false to disable the AVX512 implementation, even if the runtime architecture allows it.
//   - GOMLX_SIMD_AVX2: set to false to disable the AVX2 implementation, even if the runtime architecture allows it.
package dot

import (
	"slices"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/internal/gobackend"
	"github.com/gomlx/compute/shapeinference"
	"github.com/gomlx/compute/shapes"
	"github.com/pkg/errors"
	"k8s.io/klog/v2"
)

// Generate the DTypeMag and DTypePairMap registrations:
//go:generate go run ../../cmd/gobackend_dtypemap

func init() {
	gobackend.SetNodeExecutor(compute.OpTypeDotGeneral, gobackend.PriorityGeneric, execDotGeneral)
	gobackend.RegisterDotGeneral.Register(DotGeneral, gobackend.PriorityGeneric)
}

// NodeData associated to a DotGeneral Node: gathered during graph building, it should include
// all the information needed to execute it.
type NodeData struct {
	InputDType, OutputDType                                dtypes.DType
	Config                                                 compute.DotGeneralConfig
	Layout                                                 Layout
	LHSContractingAxes, LHSBatchAxes                       []int
	RHSContractingAxes, RHSBatchAxes                       []int
	BatchSize, LHSCrossSize, RHSCrossSize, ContractingSize int

	// implementation for current layout.
	implementation *ImplementationRegistration

	// LHSColMajor (DreamTeacher-Go patch): the lhs input is stored [batch, contracting, lhsCross]
	// (a transposed lhs folded into the DotGeneral, see foldLHSTranspose).
	LHSColMajor bool

	// OutputTransposed (DreamTeacher-Go patch): the output is stored [batch, rhsCross, lhsCross]
	// (a transposition of the result folded into the DotGeneral, see dotOutputTransposeFusion).
	OutputTransposed bool

	// LHSIm2Col, RHSIm2Col (DreamTeacher-Go patch): when set, the operand is the (virtual) patch
	// matrix of a convolution, read from the input node (the convolution's padded input) instead
	// of being materialized, see Im2ColSpec.
	LHSIm2Col, RHSIm2Col *Im2ColSpec
}

// Im2ColSpec (DreamTeacher-Go patch) describes the patch matrix P [N*Ho*Wo, len(Taps)*C] of a
// convolution over a source tensor X [N, H, W, C] (row-major, float32):
//
//	P[(n*Ho + y)*Wo + x, t*C + c] = X[n, y*SY + Taps[t][0], x*SX + Taps[t][1], c].
type Im2ColSpec struct {
	N, H, W, C int
	Ho, Wo     int
	SY, SX     int
	Taps       [][2]int
}

// Col2ImSpec (DreamTeacher-Go patch) describes the col2im of a convolution's patch gradient
// dP [N*Ho*Wo, len(Taps)*C] (the product computed by GemmCol2ImFloat32) into the gradient of the
// convolution's input: a zero tensor X [N, FullH, FullW, C] gets
//
//	X[n, y*SY + Taps[t][0], x*SX + Taps[t][1], c] += dP[(n*Ho + y)*Wo + x, t*C + c],
//
// and the output is its window [N, OutH, OutW, C] starting at (WinY, WinX).
type Col2ImSpec struct {
	N, Ho, Wo, C int
	SY, SX       int
	Taps         [][2]int
	FullH, FullW int
	WinY, WinX   int
	OutH, OutW   int
}

// GemmCol2ImFloat32 (DreamTeacher-Go patch) computes dP = lhs·rhs (lhs row-major [M, K], rhs in
// the layout given by rhsTransposed, N = len(Taps)*C) and its col2im (see Col2ImSpec) into output,
// without materializing dP. Set by the AVX-512 matmul package.
var GemmCol2ImFloat32 func(backend *gobackend.Backend, lhs, rhs, output []float32, rhsTransposed bool,
	M, N, K int, spec *Col2ImSpec)

// GemmCol2ImChannelsOK (DreamTeacher-Go patch) reports whether GemmCol2ImFloat32 handles C
// channels. Set with it.
var GemmCol2ImChannelsOK func(c int) bool

// GemmFloat32V (DreamTeacher-Go patch) is GemmFloat32 where either operand may be a virtual patch
// matrix (lhsV, rhsV non-nil; the corresponding slice is then the source tensor of the patches).
var GemmFloat32V func(backend *gobackend.Backend, lhs, rhs, output []float32, lhsColMajor, rhsTransposed bool,
	lhsV, rhsV *Im2ColSpec, batchSize, lhsCrossSize, rhsCrossSize, contractingSize int)

// GemmFloat32 (DreamTeacher-Go patch) computes, in float32, output[b] = lhs[b]·rhs[b] where lhs
// is [batch, lhsCross, contracting] (or [batch, contracting, lhsCross] if lhsColMajor), rhs is in
// the layout given by rhsTransposed, and output is [batch, lhsCross, rhsCross]. It is set (by the
// AVX-512 matmul package) only where it is fast: DotGeneral folds transposed operands and results
// into the DotGeneral only when it is set.
var GemmFloat32 func(backend *gobackend.Backend, lhs, rhs, output []float32, lhsColMajor, rhsTransposed bool,
	batchSize, lhsCrossSize, rhsCrossSize, contractingSize int)

// SetSizes computes and sets the internal sizes (BatchSize, LHSCrossSize, RHSCrossSize, ContractingSize)
// from the concrete LHS and RHS shapes.
func (d *NodeData) SetSizes(lhsShape, rhsShape shapes.Shape) {
	numBatchAxes := len(d.LHSBatchAxes)
	d.BatchSize = 1
	for i := range numBatchAxes {
		d.BatchSize *= lhsShape.Dimensions[d.LHSBatchAxes[i]]
	}

	d.ContractingSize = 1
	for _, axis := range d.LHSContractingAxes {
		d.ContractingSize *= lhsShape.Dimensions[axis]
	}

	lhsRank := lhsShape.Rank()
	d.LHSCrossSize = 1
	isBatchOrContractingLHS := make([]bool, lhsRank)
	for _, axis := range d.LHSBatchAxes {
		isBatchOrContractingLHS[axis] = true
	}
	for _, axis := range d.LHSContractingAxes {
		isBatchOrContractingLHS[axis] = true
	}
	for axis := 0; axis < lhsRank; axis++ {
		if !isBatchOrContractingLHS[axis] {
			d.LHSCrossSize *= lhsShape.Dimensions[axis]
		}
	}

	rhsRank := rhsShape.Rank()
	d.RHSCrossSize = 1
	isBatchOrContractingRHS := make([]bool, rhsRank)
	for _, axis := range d.RHSBatchAxes {
		isBatchOrContractingRHS[axis] = true
	}
	for _, axis := range d.RHSContractingAxes {
		isBatchOrContractingRHS[axis] = true
	}
	for axis := 0; axis < rhsRank; axis++ {
		if !isBatchOrContractingRHS[axis] {
			d.RHSCrossSize *= rhsShape.Dimensions[axis]
		}
	}
}

// EqualNodeData implements nodeDataComparable for dotGeneralNodeData.
func (d *NodeData) EqualNodeData(other gobackend.NodeDataComparable) bool {
	o := other.(*NodeData)
	if d.LHSColMajor != o.LHSColMajor || d.OutputTransposed != o.OutputTransposed || d.Layout != o.Layout ||
		d.LHSIm2Col != o.LHSIm2Col || d.RHSIm2Col != o.RHSIm2Col {
		return false
	}
	if d.BatchSize != o.BatchSize ||
		d.LHSCrossSize != o.LHSCrossSize ||
		d.RHSCrossSize != o.RHSCrossSize ||
		d.ContractingSize != o.ContractingSize {
		return false
	}
	return slices.Equal(d.LHSContractingAxes, o.LHSContractingAxes) &&
		slices.Equal(d.LHSBatchAxes, o.LHSBatchAxes) &&
		slices.Equal(d.RHSContractingAxes, o.RHSContractingAxes) &&
		slices.Equal(d.RHSBatchAxes, o.RHSBatchAxes)
}

// Recompute implements gobackend.RecomputableNodeData for NodeData.
func (d *NodeData) Recompute(backend *gobackend.Backend, resolvedNodes []*gobackend.Node, originalNode *gobackend.Node) (any, error) {
	newData := &NodeData{
		InputDType:         d.InputDType,
		OutputDType:        d.OutputDType,
		Config:             d.Config,
		Layout:             d.Layout,
		LHSContractingAxes: slices.Clone(d.LHSContractingAxes),
		LHSBatchAxes:       slices.Clone(d.LHSBatchAxes),
		RHSContractingAxes: slices.Clone(d.RHSContractingAxes),
		RHSBatchAxes:       slices.Clone(d.RHSBatchAxes),
		LHSColMajor:        d.LHSColMajor,
		OutputTransposed:   d.OutputTransposed,
		LHSIm2Col:          d.LHSIm2Col,
		RHSIm2Col:          d.RHSIm2Col,
	}

	// Get resolved (concrete) input shapes.
	lhsShape := resolvedNodes[originalNode.Inputs[0].Index].Shape
	rhsShape := resolvedNodes[originalNode.Inputs[1].Index].Shape

	// Recompute sizes from concrete shapes.
	newData.SetSizes(lhsShape, rhsShape)

	// Re-find implementation (might change based on new sizes).
	newData.implementation = FindRegisteredImplementation(newData.Layout, newData.InputDType, newData.OutputDType)
	if newData.implementation == nil {
		return nil, errors.Errorf("specialization: no DotGeneral implementation found for layout=%s and dtypes=%s,%s",
			newData.Layout, newData.InputDType, newData.OutputDType)
	}

	return newData, nil
}

// DotGeneral takes as input lhs (left-hand-side) and rhs (right-hand-side) specifications
// for a general vector product -- a generalized "Einsum". Each axis can be:
//   - Just aligned (batch axes), so the output has the same axes as the inputs. The dimensions
//     must match in lhs and rhs.
//   - Crossed (default), in which case the output is the combination (concatenation) of the
//     dimensions.
//   - Contracted (contracting axes), where the output does multiply the values and reduce sum
//     those dimensions.
//
// The resulting shape is [batchIndices..., <lhs cross indices...>, <rhs cross indices...>], the
// indices come in the order they were provided.
// The output dtype is by default the same as the input, except if configured otherwise in config.OutputDType.
//
// This is the graph building part of DotGeneral. It reshapes and transposes the inputs as needed
// to transform them into one of the two layouts the implementation functions (see execDotGeneral)
// know how to handle.
func DotGeneral(f *gobackend.Function,
	lhsValue compute.Value, lhsContractingAxes, lhsBatchAxes []int,
	rhsValue compute.Value, rhsContractingAxes, rhsBatchAxes []int,
	config compute.DotGeneralConfig) (compute.Value, error) {

	// Get and sanity check graph nodes from values.
	directInputs, err := f.VerifyAndCastValues("DotGeneral", lhsValue, rhsValue)
	if err != nil {
		return nil, err
	}
	lhs, rhs := directInputs[0], directInputs[1]
	if klog.V(1).Enabled() {
		klog.Infof("DotGeneral lhs=%s rhs=%s contracting=%v,%v batch=%v,%v - config=%+v\n",
			lhs.Shape, rhs.Shape,
			lhsContractingAxes, rhsContractingAxes,
			lhsBatchAxes, rhsBatchAxes, config)
	}

	// Verify inputs validity for DotGeneral and compute the output shape.
	outputShape, err := shapeinference.DotGeneral(lhs.Shape, lhsContractingAxes, lhsBatchAxes, rhs.Shape, rhsContractingAxes, rhsBatchAxes, config)
	if err != nil {
		return nil, err
	}

	if folded, ok, err := foldLHSTranspose(f, lhs, lhsContractingAxes, lhsBatchAxes, rhs, rhsContractingAxes, rhsBatchAxes,
		config, outputShape); err != nil || ok {
		return folded, err
	}

	// Create node params or the "normalized" dot-general, after all reshaping/transposition.
	// - LayoutNonTransposed: lhs=[batch, lhsCross, contracting], rhs=[batch, contracting, rhsCross]
	// - LayoutTransposed:    lhs=[batch, lhsCross, contracting], rhs=[batch, rhsCross, contracting]
	// In usual MatMul works, B=batch, M=lhsCross, K=contracting, N=rhsCross.
	params := &NodeData{
		InputDType:         lhs.Shape.DType,
		OutputDType:        lhs.Shape.DType, // output DType for now is assumed to be the same as the input.
		Config:             config,
		LHSContractingAxes: lhsContractingAxes,
		LHSBatchAxes:       lhsBatchAxes,
		RHSContractingAxes: rhsContractingAxes,
		RHSBatchAxes:       rhsBatchAxes,
	}
	lhs, rhs, params, err = reshapeToSupportedLayout(f, lhs, rhs, params)
	if err != nil {
		return nil, err
	}

	// Only for half-types inputs we always output (accumulator dtype) Float32 for the "normalized" dot-general.
	if params.InputDType.IsHalfPrecision() {
		params.OutputDType = dtypes.Float32
	}

	// Accumulator dtype conversion: except Float32 accumulator for half precision inputs,
	// we simply convert the inputs to the accumulator dtype.
	lhs, rhs, params, err = convertToAccumulatorDType(f, lhs, rhs, params)
	if err != nil {
		return nil, err
	}

	// Find sizes of the normalized operands (batchSize, crossSizes and contractSize).
	// The shape is already normalized (to a LayoutNonTranposed or LayoutTransposed), so
	// there is at most one axis of each type.
	params.SetSizes(lhs.Shape, rhs.Shape)

	// Find a registered implementation for the current layout.
	inputs := []*gobackend.Node{lhs, rhs}
	params.implementation = FindRegisteredImplementation(params.Layout, params.InputDType, params.OutputDType)
	if klog.V(1).Enabled() {
		if params.implementation != nil {
			klog.Infof("Using DotGeneral implementation %q for layout=%s and dtypes=%s,%s",
				params.implementation.name, params.Layout, params.InputDType, params.OutputDType)
		} else {
			klog.Infof("No registered DotGeneral implementation found for layout=%s and dtypes=%s,%s",
				params.Layout, params.InputDType, params.OutputDType)

		}
	}
	if params.implementation == nil {
		return nil, errors.Errorf("no DotGeneral implementation found for layout=%s and dtypes=%s,%s",
			params.Layout, params.InputDType, params.OutputDType)
	}

	// Create dot-general node: it will generate a normalized output [batchSize, lhsCrossSize, rhsCrossSize].
	var normalizedOutputShape shapes.Shape
	if params.BatchSize == shapes.DynamicDim || params.LHSCrossSize == shapes.DynamicDim || params.RHSCrossSize == shapes.DynamicDim {
		axisNames := make([]string, 3)
		if params.BatchSize == shapes.DynamicDim {
			axisNames[0] = findDynamicAxisName(lhs.Shape, params.LHSBatchAxes)
		}
		if params.LHSCrossSize == shapes.DynamicDim {
			axisNames[1] = findDynamicCrossAxisName(lhs.Shape, params.LHSBatchAxes, params.LHSContractingAxes)
		}
		if params.RHSCrossSize == shapes.DynamicDim {
			axisNames[2] = findDynamicCrossAxisName(rhs.Shape, params.RHSBatchAxes, params.RHSContractingAxes)
		}
		normalizedOutputShape = shapes.MakeDynamic(params.OutputDType,
			[]int{params.BatchSize, params.LHSCrossSize, params.RHSCrossSize},
			axisNames)
	} else {
		normalizedOutputShape = shapes.Make(params.OutputDType, params.BatchSize, params.LHSCrossSize, params.RHSCrossSize)
	}
	result, _ := f.GetOrCreateNode(compute.OpTypeDotGeneral, normalizedOutputShape, inputs, params)
	if result.Shape.Equal(outputShape) {
		// If no de-normalization is needed, return the result immediately.
		return result, nil
	}

	// Reshape result to recover batch and cross dimensions.
	if result.Shape.DType != outputShape.DType {
		// Requires final DType conversion:
		resultValue, err := f.ConvertDType(result, outputShape.DType)
		if err != nil {
			return nil, err
		}
		result = resultValue.(*gobackend.Node)
	}
	if !result.Shape.Equal(outputShape) {
		// Reshape to axes that may have been merged during layout normalization.
		resultValue, err := f.Reshape(result, outputShape.Dimensions...)
		if err != nil {
			return nil, err
		}
		result = resultValue.(*gobackend.Node)
	}
	return result, nil
}

// reshapeToSupportedLayout reshapes/transposes lhs and rhs to a layout
// supported by the underlying execution backends.
//
// It returns the updated lhs, rhs and params (same as the input, with fields updated).
// The params.Layout field will be set to the supported layout.
func reshapeToSupportedLayout(
	f *gobackend.Function,
	lhs, rhs *gobackend.Node,
	params *NodeData,
) (lhsOut, rhsOut *gobackend.Node, paramsOut *NodeData, err error) {
	params.Layout = LayoutForDotGeneral(
		lhs.Shape, params.LHSContractingAxes, params.LHSBatchAxes,
		rhs.Shape, params.RHSContractingAxes, params.RHSBatchAxes)
	if params.Layout != LayoutIncompatible {
		// Already a supported layout.
		return lhs, rhs, params, nil
	}

	// First attempt to merge axes with same function:
	lhs, params.LHSContractingAxes, params.LHSBatchAxes,
		rhs, params.RHSContractingAxes, params.RHSBatchAxes, err = MergeAxes(
		f, lhs, params.LHSContractingAxes, params.LHSBatchAxes,
		rhs, params.RHSContractingAxes, params.RHSBatchAxes)
	if err != nil {
		return nil, nil, nil, err
	}
	params.Layout = LayoutForDotGeneral(lhs.Shape, params.LHSContractingAxes, params.LHSBatchAxes,
		rhs.Shape, params.RHSContractingAxes, params.RHSBatchAxes)
	if err != nil {
		return nil, nil, nil, err
	}
	if params.Layout != LayoutIncompatible {
		// Merged axes make a supported layout.
		return lhs, rhs, params, nil
	}

	// We need to transpose inputs to a supported layout. Since the
	// LayoutTransposed is the fastest, we transpose to that.
	targetLayout := LayoutTransposed
	lhs, params.LHSContractingAxes, params.LHSBatchAxes,
		rhs, params.RHSContractingAxes, params.RHSBatchAxes, err = TransposeToLayout(
		f,
		lhs, params.LHSContractingAxes, params.LHSBatchAxes,
		rhs, params.RHSContractingAxes, params.RHSBatchAxes,
		targetLayout)
	if err != nil {
		return nil, nil, nil, err
	}
	params.Layout = targetLayout
	return lhs, rhs, params, nil
}

// convertToAccumulatorDType if an accumulator dtype is specified -- for the algorithms that don't support a different accumulator type.
func convertToAccumulatorDType(f *gobackend.Function, lhs, rhs *gobackend.Node, params *NodeData) (*gobackend.Node, *gobackend.Node, *NodeData, error) {
	accDType := params.Config.AccumulatorDType
	if accDType == dtypes.InvalidDType || accDType == params.InputDType {
		return lhs, rhs, params, nil
	}
	if accDType == params.OutputDType {
		// The output dtype will be used already, no need to convert.
		return lhs, rhs, params, nil
	}

	// Exception: Half-Precision types automatically uses Float32 for the computation.
	if params.InputDType.IsHalfPrecision() && accDType == dtypes.Float32 {
		return lhs, rhs, params, nil
	}

	// Convert inputs to accumulator dtype.
	if klog.V(2).Enabled() {
		klog.Infof("Converting inputs from %s to accumulator DType=%s\n", lhs.Shape.DType, accDType)
	}
	lhsOp, err := f.ConvertDType(lhs, accDType)
	if err != nil {
		return nil, nil, nil, err
	}
	lhs = lhsOp.(*gobackend.Node)
	rhsOp, err := f.ConvertDType(rhs, accDType)
	if err != nil {
		return nil, nil, nil, err
	}
	rhs = rhsOp.(*gobackend.Node)
	params.InputDType = accDType
	params.OutputDType = accDType
	return lhs, rhs, params, nil
}

// execDotGeneral executes the DotGeneral operation.
func execDotGeneral(backend *gobackend.Backend, node *gobackend.Node, inputs []*gobackend.Buffer, _ []bool) (*gobackend.Buffer, error) {
	lhs, rhs := inputs[0], inputs[1]
	params := node.Data.(*NodeData)
	outputShape := node.Shape
	output, err := backend.GetBuffer(outputShape)

	if err != nil {
		return nil, err
	}

	if params.implementation == nil {
		return nil, errors.Errorf("no DotGeneral implementation found for layout=%s and dtypes=%s,%s",
			params.Layout, params.InputDType, params.OutputDType)
	}

	if params.LHSIm2Col != nil || params.RHSIm2Col != nil {
		lhsF, rhsF, outF := lhs.Flat.([]float32), rhs.Flat.([]float32), output.Flat.([]float32)
		if params.OutputTransposed {
			GemmFloat32V(backend, rhsF, lhsF, outF, params.Layout != LayoutTransposed, !params.LHSColMajor,
				params.RHSIm2Col, params.LHSIm2Col,
				params.BatchSize, params.RHSCrossSize, params.LHSCrossSize, params.ContractingSize)
		} else {
			GemmFloat32V(backend, lhsF, rhsF, outF, params.LHSColMajor, params.Layout == LayoutTransposed,
				params.LHSIm2Col, params.RHSIm2Col,
				params.BatchSize, params.LHSCrossSize, params.RHSCrossSize, params.ContractingSize)
		}
		return output, nil
	}
	if params.OutputTransposed {
		// outputᵀ = rhsᵀ·lhsᵀ: rhsᵀ is a column-major lhs if rhs is [K, N], a row-major one if rhs
		// is [N, K]; lhsᵀ is a transposed-layout rhs if lhs is row-major [M, K].
		GemmFloat32(backend, rhs.Flat.([]float32), lhs.Flat.([]float32), output.Flat.([]float32),
			params.Layout != LayoutTransposed, !params.LHSColMajor,
			params.BatchSize, params.RHSCrossSize, params.LHSCrossSize, params.ContractingSize)
		return output, nil
	}
	if params.LHSColMajor {
		GemmFloat32(backend, lhs.Flat.([]float32), rhs.Flat.([]float32), output.Flat.([]float32),
			true, params.Layout == LayoutTransposed,
			params.BatchSize, params.LHSCrossSize, params.RHSCrossSize, params.ContractingSize)
		return output, nil
	}

	// Use registered implementation.
	CallRegisteredImplementation(backend, params.implementation, lhs, rhs, output, params)
	return output, nil
}

func findDynamicAxisName(shape shapes.Shape, axes []int) string {
	for _, axis := range axes {
		if shape.Dimensions[axis] == shapes.DynamicDim {
			return shape.AxisName(axis)
		}
	}
	return ""
}

func findDynamicCrossAxisName(shape shapes.Shape, batchAxes, contractingAxes []int) string {
	isSpecial := make([]bool, shape.Rank())
	for _, axis := range batchAxes {
		isSpecial[axis] = true
	}
	for _, axis := range contractingAxes {
		isSpecial[axis] = true
	}
	for axis := 0; axis < shape.Rank(); axis++ {
		if !isSpecial[axis] {
			if shape.Dimensions[axis] == shapes.DynamicDim {
				return shape.AxisName(axis)
			}
		}
	}
	return ""
}

// foldLHSTranspose (DreamTeacher-Go patch) folds a 2-D transposed lhs into the DotGeneral:
// Dot(Transpose(x), rhs) reads x in place as a column-major lhs instead of materializing its
// transposition. GoMLX's gradient of a matmul (and internal/gomlxfix) builds such products for the
// weight gradients; the transposition of a [M, N] activation gradient was ~3% of a ResNet step.
//
// It returns ok=false (and builds nothing) when the pattern or the dtypes don't match, or when
// no fast column-major implementation is available.
func foldLHSTranspose(f *gobackend.Function,
	lhs *gobackend.Node, lhsContractingAxes, lhsBatchAxes []int,
	rhs *gobackend.Node, rhsContractingAxes, rhsBatchAxes []int,
	config compute.DotGeneralConfig, outputShape shapes.Shape) (compute.Value, bool, error) {
	if GemmFloat32 == nil || testRegisteredImplementations != nil {
		return nil, false, nil
	}
	if lhs.OpType != compute.OpTypeTranspose || lhs.Shape.Rank() != 2 || rhs.Shape.Rank() != 2 ||
		len(lhsBatchAxes) != 0 || len(rhsBatchAxes) != 0 ||
		len(lhsContractingAxes) != 1 || lhsContractingAxes[0] != 1 || len(rhsContractingAxes) != 1 {
		return nil, false, nil
	}
	if perm, ok := lhs.Data.([]int); !ok || len(perm) != 2 || perm[0] != 1 || perm[1] != 0 {
		return nil, false, nil
	}
	if lhs.Shape.DType != dtypes.Float32 || rhs.Shape.DType != dtypes.Float32 || outputShape.DType != dtypes.Float32 ||
		(config.AccumulatorDType != dtypes.InvalidDType && config.AccumulatorDType != dtypes.Float32) {
		return nil, false, nil
	}
	if lhs.Shape.IsDynamic() || rhs.Shape.IsDynamic() {
		return nil, false, nil
	}
	x := lhs.Inputs[0] // [contracting, lhsCross]
	params := &NodeData{
		InputDType:         dtypes.Float32,
		OutputDType:        dtypes.Float32,
		Config:             config,
		Layout:             LayoutNonTransposed,
		LHSContractingAxes: []int{0},
		LHSBatchAxes:       []int{},
		RHSContractingAxes: slices.Clone(rhsContractingAxes),
		RHSBatchAxes:       []int{},
		LHSColMajor:        true,
	}
	if rhsContractingAxes[0] == 1 {
		params.Layout = LayoutTransposed
	}
	params.SetSizes(x.Shape, rhs.Shape)
	params.implementation = FindRegisteredImplementation(params.Layout, dtypes.Float32, dtypes.Float32)
	normalizedOutputShape := shapes.Make(dtypes.Float32, params.BatchSize, params.LHSCrossSize, params.RHSCrossSize)
	result, _ := f.GetOrCreateNode(compute.OpTypeDotGeneral, normalizedOutputShape, []*gobackend.Node{x, rhs}, params)
	if result.Shape.Equal(outputShape) {
		return result, true, nil
	}
	resultValue, err := f.Reshape(result, outputShape.Dimensions...)
	if err != nil {
		return nil, false, err
	}
	return resultValue, true, nil
}
