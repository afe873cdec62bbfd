// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

// DreamTeacher-Go patch: compile-time fusions for the patch extraction of convolutions lowered to
// matrix multiplications (models/nn), and for its gradient. See PATCHES.md.
//
//   - Concatenate of Slices: the Concatenate reads its sliced inputs in place from the sliced
//     tensors (the im2col of a convolution: 9 shifted slices concatenated on the channels), instead
//     of first materializing each slice.
//   - Sums of zero-Pads (of Slices), and Slices of such sums: the gradient of the patch
//     extraction (col2im) is, as built by autodiff, 9 slices of the patches' gradient, each padded
//     back to the input's shape with zeros, added up, and cropped. It becomes one op that
//     accumulates the 9 (sliced) terms into the (cropped) output, one image at a time.
//
// Only float32 (PadSum) and whole-byte dtypes (Concatenate) with static shapes are fused;
// intermediate nodes are fused only when they have no other use. The results are the same, except
// that a PadSum adds its terms to a zero-initialized output (so a sum of -0 terms is +0).

package ops

import (
	"slices"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/internal/gobackend"
	"github.com/gomlx/compute/internal/gobackend/dot"
	"github.com/gomlx/compute/shapes"
)

func init() {
	if !gobackend.DTPatchesEnabled || gobackend.DTPatchDisabled("convfusion") {
		return
	}
	// After ImplicitBroadcastFusion (priority 100).
	gobackend.RegisterTransformation(50, &dtConvFusion{})
}

// DTFusionsEnabled can disable the fusions (for tests and benchmarks).
var DTFusionsEnabled = true

type dtConvFusion struct{}

func (p *dtConvFusion) Name() string { return "DreamTeacherConvFusion" }

// dtConcatSlicesNode is the Data of a fused Concatenate: input i is read through slices[i] (if not nil).
type dtConcatSlicesNode struct {
	axis   int
	slices []*sliceNode
}

// EqualNodeData implements gobackend.NodeDataComparable.
func (d *dtConcatSlicesNode) EqualNodeData(other gobackend.NodeDataComparable) bool {
	o, ok := other.(*dtConcatSlicesNode)
	if !ok || d.axis != o.axis || len(d.slices) != len(o.slices) {
		return false
	}
	for i := range d.slices {
		if (d.slices[i] == nil) != (o.slices[i] == nil) || (d.slices[i] != nil && !d.slices[i].EqualNodeData(o.slices[i])) {
			return false
		}
	}
	return true
}

// dtPadSumTerm is one term of a PadSum: a block of its input tensor (elements at srcBase +
// Σ idx[a]*srcStrides[a]), added to the output at positions dstStart[a] + idx[a]*dstStep[a].
type dtPadSumTerm struct {
	srcBase           int
	srcStrides, dims  []int
	dstStart, dstStep []int
	empty             bool
}

// dtPadSumNode is the Data of a fused sum of zero-padded terms (an OpTypeAdd node whose input i
// is the source of terms[i]): the terms are added into a zero tensor of shape full, and the
// node's output is the window of it starting at windowStart (nil: the whole of it).
type dtPadSumNode struct {
	terms       []dtPadSumTerm
	full        []int
	windowStart []int
}

// EqualNodeData implements gobackend.NodeDataComparable.
func (d *dtPadSumNode) EqualNodeData(other gobackend.NodeDataComparable) bool {
	return d == other
}

func dtIsStaticFloat32(s shapes.Shape) bool {
	return s.DType == dtypes.Float32 && !s.IsDynamic()
}

// dtIsZeroConstant reports whether n is a scalar constant 0.
func dtIsZeroConstant(n *gobackend.Node) bool {
	if n.OpType != compute.OpTypeConstant || n.Shape.Size() != 1 {
		return false
	}
	buf, ok := n.Data.(*gobackend.Buffer)
	if !ok {
		return false
	}
	b, err := buf.MutableBytes()
	if err != nil || len(b) == 0 {
		return false
	}
	for _, v := range b {
		if v != 0 {
			return false
		}
	}
	return true
}

func (p *dtConvFusion) Apply(b *gobackend.Builder) (bool, error) {
	if !DTFusionsEnabled {
		return false, nil
	}
	modified := false
	for _, f := range b.Functions {
		if f.RawParent != nil {
			continue // closures keep the unfused graph (see dt_ewfusion.go)
		}
		// Uses by live nodes only (reachable from the outputs): autodiff leaves dead nodes (e.g. the
		// gradients of constants) that would otherwise count as uses.
		live := make(map[*gobackend.Node]bool)
		var visit func(n *gobackend.Node)
		visit = func(n *gobackend.Node) {
			if live[n] {
				return
			}
			live[n] = true
			for _, in := range n.Inputs {
				visit(in)
			}
			for _, captures := range n.CapturedInputs {
				for _, in := range captures {
					visit(in)
				}
			}
		}
		for _, out := range f.Outputs {
			visit(out)
		}
		uses := make(map[*gobackend.Node]int)
		for _, n := range f.Nodes {
			if !live[n] {
				continue
			}
			for _, in := range n.Inputs {
				uses[in]++
			}
			for _, captures := range n.CapturedInputs {
				for _, in := range captures {
					uses[in]++
				}
			}
		}
		for _, out := range f.Outputs {
			uses[out]++
		}
		for _, n := range f.Nodes {
			if !live[n] {
				continue
			}
			switch n.OpType { //nolint:exhaustive
			case compute.OpTypeConcatenate:
				if dtFuseConcatSlices(n) {
					modified = true
				}
			case compute.OpTypeAdd:
				if dtFusePadSum(n, uses) {
					modified = true
				}
			case compute.OpTypeSlice:
				if dtFuseSliceOfPadSum(n, uses) {
					modified = true
				}
			}
		}
	}
	return modified, nil
}

func dtFuseConcatSlices(n *gobackend.Node) bool {
	axis, ok := n.Data.(int)
	if !ok || !dtByteCopyable(n.Shape) {
		return false
	}
	fused := &dtConcatSlicesNode{axis: axis, slices: make([]*sliceNode, len(n.Inputs))}
	inputs := slices.Clone(n.Inputs)
	fusedAny := false
	for i, in := range n.Inputs {
		if in.OpType != compute.OpTypeSlice || !dtByteCopyable(in.Shape) || len(in.Inputs) != 1 || !dtByteCopyable(in.Inputs[0].Shape) {
			continue
		}
		params, ok := in.Data.(*sliceNode)
		if !ok {
			continue
		}
		fused.slices[i] = params
		inputs[i] = in.Inputs[0]
		fusedAny = true
	}
	if !fusedAny {
		return false
	}
	n.Inputs = inputs
	n.Data = fused
	return true
}

// dtPadTerms returns the PadSum terms (and their inputs) of n, if n is a zero-Pad of a float32
// tensor, or an already fused PadSum.
func dtPadTerms(n *gobackend.Node, outShape shapes.Shape, uses map[*gobackend.Node]int) ([]dtPadSumTerm, []*gobackend.Node, bool) {
	if uses[n] != 1 || !n.Shape.Equal(outShape) {
		return nil, nil, false
	}
	if ps, ok := n.Data.(*dtPadSumNode); ok && n.OpType == compute.OpTypeAdd {
		if ps.windowStart != nil {
			return nil, nil, false
		}
		return ps.terms, n.Inputs, true
	}
	if n.OpType != compute.OpTypePad || len(n.Inputs) != 2 || !dtIsZeroConstant(n.Inputs[1]) {
		return nil, nil, false
	}
	params, ok := n.Data.(*padNode)
	operand := n.Inputs[0]
	if !ok || !dtIsStaticFloat32(operand.Shape) {
		return nil, nil, false
	}
	rank := operand.Shape.Rank()
	if len(params.axesConfig) > rank {
		return nil, nil, false
	}
	t := dtPadSumTerm{
		dims:     slices.Clone(operand.Shape.Dimensions),
		dstStart: make([]int, rank),
		dstStep:  make([]int, rank),
	}
	for a := range rank {
		t.dstStep[a] = 1
		if a < len(params.axesConfig) {
			c := params.axesConfig[a]
			if c.Start < 0 || c.End < 0 || c.Interior < 0 {
				return nil, nil, false
			}
			t.dstStart[a] = c.Start
			t.dstStep[a] = 1 + c.Interior
		}
	}
	src := operand
	strides := dtRowMajorByteStrides(operand.Shape.Dimensions, 1)
	if operand.OpType == compute.OpTypeSlice && len(operand.Inputs) == 1 && dtIsStaticFloat32(operand.Inputs[0].Shape) {
		if sp, ok := operand.Data.(*sliceNode); ok {
			src = operand.Inputs[0]
			var base int
			base, strides = dtSliceSource(src.Shape.Dimensions, sp, 1)
			t.srcBase = base
		}
	}
	t.srcStrides = strides
	for _, d := range t.dims {
		if d == 0 {
			t.empty = true
		}
	}
	return []dtPadSumTerm{t}, []*gobackend.Node{src}, true
}

func dtFusePadSum(n *gobackend.Node, uses map[*gobackend.Node]int) bool {
	if n.Data != nil || len(n.Inputs) != 2 || !dtIsStaticFloat32(n.Shape) {
		return false
	}
	lt, li, ok := dtPadTerms(n.Inputs[0], n.Shape, uses)
	if !ok {
		return false
	}
	rt, ri, ok := dtPadTerms(n.Inputs[1], n.Shape, uses)
	if !ok {
		return false
	}
	terms := append(slices.Clone(lt), rt...)
	n.Inputs = append(slices.Clone(li), ri...)
	n.Data = &dtPadSumNode{terms: terms, full: slices.Clone(n.Shape.Dimensions)}
	return true
}

// dtFuseSliceOfPadSum turns Slice(PadSum) or Slice(zero-Pad) (stride 1) into a PadSum with a
// (narrower) window.
func dtFuseSliceOfPadSum(n *gobackend.Node, uses map[*gobackend.Node]int) bool {
	if len(n.Inputs) != 1 || !dtIsStaticFloat32(n.Shape) {
		return false
	}
	src := n.Inputs[0]
	params, ok := n.Data.(*sliceNode)
	if !ok || uses[src] != 1 {
		return false
	}
	for _, st := range params.strides {
		if st != 1 {
			return false
		}
	}
	var base *dtPadSumNode
	var inputs []*gobackend.Node
	if ps, ok := src.Data.(*dtPadSumNode); ok && src.OpType == compute.OpTypeAdd {
		base, inputs = ps, src.Inputs
	} else if terms, ins, ok := dtPadTerms(src, src.Shape, uses); ok {
		base, inputs = &dtPadSumNode{terms: terms, full: slices.Clone(src.Shape.Dimensions)}, ins
	} else {
		return false
	}
	window := slices.Clone(params.starts)
	if base.windowStart != nil {
		for a := range window {
			window[a] += base.windowStart[a]
		}
	}
	n.OpType = compute.OpTypeAdd
	n.Inputs = slices.Clone(inputs)
	n.Data = &dtPadSumNode{terms: base.terms, full: base.full, windowStart: window}
	return true
}

// execConcatSlices executes a fused Concatenate.
func execConcatSlices(backend *gobackend.Backend, node *gobackend.Node, inputs []*gobackend.Buffer, fused *dtConcatSlicesNode) (*gobackend.Buffer, error) {
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
	dstStrides := dtRowMajorByteStrides(output.RawShape.Dimensions, elemBytes)
	var parts []dtCopyPart
	offset := 0
	for i, in := range inputs {
		var dims, srcStrides []int
		srcBase := 0
		if s := fused.slices[i]; s != nil {
			dims = make([]int, len(s.starts))
			for a := range dims {
				dims[a] = (s.limits[a] - s.starts[a] + s.strides[a] - 1) / s.strides[a]
			}
			srcBase, srcStrides = dtSliceSource(in.RawShape.Dimensions, s, elemBytes)
		} else {
			dims = in.RawShape.Dimensions
			srcStrides = dtRowMajorByteStrides(dims, elemBytes)
		}
		size := 1
		for _, d := range dims {
			size *= d
		}
		axisSize := dims[fused.axis]
		if size == 0 {
			offset += axisSize
			continue
		}
		srcBytes, err := in.MutableBytes()
		if err != nil {
			return nil, err
		}
		plan := newDTCopyPlan(dims, srcStrides, dstStrides, srcBase, offset*dstStrides[fused.axis], elemBytes)
		offset += axisSize
		parts = append(parts, dtCopyPart{plan, srcBytes, plan.numOuter()})
	}
	dtRunParts(backend, parts, dstBytes)
	return output, nil
}

// dtCopyPart is one input of a concatenation.
type dtCopyPart struct {
	plan *dtCopyPlan
	src  []byte
	n    int
}

// dtRunParts runs the plans of the inputs of a concatenation, in parallel: interleaved (writing
// whole rows of the output) when they have the same structure.
func dtRunParts(backend *gobackend.Backend, parts []dtCopyPart, dstBytes []byte) {
	if len(parts) == 0 {
		return
	}
	plans := make([]*dtCopyPlan, len(parts))
	srcs := make([][]byte, len(parts))
	for i, p := range parts {
		plans[i], srcs[i] = p.plan, p.src
	}
	if len(parts) > 1 && dtSameStructure(plans) {
		dtParallelFor(backend, parts[0].n, len(parts)*max(plans[0].runElems, 1), func(start, end int) {
			dtRunInterleaved(plans, dstBytes, srcs, start, end)
		})
		return
	}
	type task struct{ part, start, end int }
	var tasks []task
	for i, p := range parts {
		chunk := max(1, dtParallelGrain/max(p.plan.runElems, 1))
		for s := 0; s < p.n; s += chunk {
			tasks = append(tasks, task{i, s, min(p.n, s+chunk)})
		}
	}
	dtParallelFor(backend, len(tasks), dtParallelGrain, func(start, end int) {
		for _, t := range tasks[start:end] {
			p := parts[t.part]
			p.plan.runRange(dstBytes, p.src, t.start, t.end)
		}
	})
}

// execPadSum executes a fused sum of zero-padded terms: a zero tensor (of the full shape) plus each
// term, in order, then cropped to the window. When no term pads the first axis (and the window
// doesn't crop it), it runs one slab of the first axis at a time (in parallel), in a scratch slab
// that stays in cache; the terms are added interleaved (one row of their source at a time) when
// they have the same structure, as in the gradient of an im2col.
func execPadSum(backend *gobackend.Backend, node *gobackend.Node, inputs []*gobackend.Buffer, ps *dtPadSumNode) (*gobackend.Buffer, error) {
	output, err := backend.GetBuffer(node.Shape)
	if err != nil {
		return nil, err
	}
	out := output.Flat.([]float32)
	if len(out) == 0 {
		return output, nil
	}
	full := ps.full
	rank := len(full)
	fullStrides := dtRowMajorByteStrides(full, 1)
	outDims := output.RawShape.Dimensions
	srcs := make([][]byte, len(inputs))
	for i, in := range inputs {
		srcs[i] = dtF32Bytes(in.Flat.([]float32))
	}
	bySlab := rank > 1 && (ps.windowStart == nil || (ps.windowStart[0] == 0 && outDims[0] == full[0]))
	for _, t := range ps.terms {
		if !t.empty && (t.dstStart[0] != 0 || t.dstStep[0] != 1 || t.dims[0] != full[0]) {
			bySlab = false
		}
	}
	// addTerms adds all terms, restricted to [i0, i1) on the first axis, into dst (the full
	// tensor, or the slab i0 of it if slab).
	addTerms := func(dst []byte, i0, i1 int, slab bool) {
		var plans []*dtCopyPlan
		var planSrcs [][]byte
		for ti, t := range ps.terms {
			if t.empty {
				continue
			}
			dims := slices.Clone(t.dims)
			srcStrides := make([]int, rank)
			dstStrides := make([]int, rank)
			dstBase := 0
			for a := range rank {
				srcStrides[a] = t.srcStrides[a] * 4
				dstStrides[a] = fullStrides[a] * t.dstStep[a] * 4
				dstBase += t.dstStart[a] * fullStrides[a] * 4
			}
			srcBase := t.srcBase * 4
			if slab {
				dims[0] = i1 - i0
				srcBase += i0 * srcStrides[0]
				dstBase = dstBase - t.dstStart[0]*fullStrides[0]*4 // The slab starts at row 0 of dst.
			}
			plan := newDTCopyPlan(dims, srcStrides, dstStrides, srcBase, dstBase, 4)
			plan.accumulateF32 = true
			plans = append(plans, plan)
			planSrcs = append(planSrcs, srcs[ti])
		}
		if len(plans) == 0 {
			return
		}
		if dtSameStructure(plans) {
			dtRunInterleaved(plans, dst, planSrcs, 0, plans[0].numOuter())
			return
		}
		for i, plan := range plans {
			plan.runRange(dst, planSrcs[i], 0, plan.numOuter())
		}
	}
	// cropInto copies the window of the full tensor src (rows [i0, i0+n) on the first axis, or all)
	// into out.
	windowPlan := func(dims []int, srcBase, dstBase int) *dtCopyPlan {
		srcStrides := make([]int, len(dims))
		for a := range dims {
			srcStrides[a] = fullStrides[a] * 4
		}
		return newDTCopyPlan(dims, srcStrides, dtRowMajorByteStrides(outDims, 4), srcBase, dstBase, 4)
	}
	windowBase := 0
	for a, w := range ps.windowStart {
		windowBase += w * fullStrides[a] * 4
	}

	if !bySlab {
		scratch := out
		if ps.windowStart != nil {
			scratch = dtScratch(fullStrides[0] * full[0])
			defer dtRelease(scratch)
		}
		clear(scratch) // pooled scratch holds stale values: the terms accumulate into it
		addTerms(dtF32Bytes(scratch), 0, full[0], false)
		if ps.windowStart != nil {
			plan := windowPlan(outDims, windowBase, 0)
			plan.run(backend, dtF32Bytes(out), dtF32Bytes(scratch))
		}
		return output, nil
	}
	fullSlab := fullStrides[0]
	outSlab := output.RawShape.Size() / outDims[0]
	dtParallelFor(backend, full[0], fullSlab*(len(ps.terms)+1), func(start, end int) {
		var scratch []float32
		if ps.windowStart != nil {
			scratch = dtScratch(fullSlab)
			defer dtRelease(scratch)
		}
		for i := start; i < end; i++ {
			if scratch == nil {
				dst := out[i*outSlab : (i+1)*outSlab]
				clear(dst)
				addTerms(dtF32Bytes(dst), i, i+1, true)
				continue
			}
			clear(scratch)
			addTerms(dtF32Bytes(scratch), i, i+1, true)
			dims := slices.Clone(outDims)
			dims[0] = 1
			plan := windowPlan(dims, windowBase, i*outSlab*4)
			plan.runRange(dtF32Bytes(out), dtF32Bytes(scratch), 0, plan.numOuter())
		}
	})
	return output, nil
}

// dtIm2ColFusion (priority 35, after the fusions above and the DotGeneral transposition fusion)
// makes the DotGenerals that multiply the patch matrix of a convolution (Reshape of a fused
// Concatenate of strided slices of one tensor: the im2col of models/nn's lowering) read it in
// place from the convolution's input (dot.Im2ColSpec): the patch matrix (9x the input) is then
// neither written nor read, and the Concatenate is dead when all its users read it in place.
type dtIm2ColFusion struct{}

func (p *dtIm2ColFusion) Name() string { return "DreamTeacherIm2ColFusion" }

func init() {
	if !gobackend.DTPatchesEnabled || gobackend.DTPatchDisabled("im2col") {
		return
	}
	gobackend.RegisterTransformation(35, &dtIm2ColFusion{})
}

// DTIm2ColEnabled can disable the implicit im2col (tests, benchmarks).
var DTIm2ColEnabled = true

// dtIm2ColSpec returns the im2col description of x, if x is the [N*Ho*Wo, T*C] patch matrix of a
// convolution over a float32 tensor [N, H, W, C] (returned as src).
func dtIm2ColSpec(x *gobackend.Node) (spec *dot.Im2ColSpec, src *gobackend.Node, ok bool) {
	if x.OpType != compute.OpTypeReshape || len(x.Inputs) != 1 || x.Shape.Rank() != 2 || !dtIsStaticFloat32(x.Shape) {
		return nil, nil, false
	}
	cat := x.Inputs[0]
	fused, isFused := cat.Data.(*dtConcatSlicesNode)
	if cat.OpType != compute.OpTypeConcatenate || !isFused || fused.axis != 3 || cat.Shape.Rank() != 4 || len(cat.Inputs) == 0 {
		return nil, nil, false
	}
	src = cat.Inputs[0]
	if src.Shape.Rank() != 4 || !dtIsStaticFloat32(src.Shape) {
		return nil, nil, false
	}
	n, h, w, c := src.Shape.Dimensions[0], src.Shape.Dimensions[1], src.Shape.Dimensions[2], src.Shape.Dimensions[3]
	ho, wo := cat.Shape.Dimensions[1], cat.Shape.Dimensions[2]
	if c < 32 || c%16 != 0 || cat.Shape.Dimensions[0] != n || cat.Shape.Dimensions[3] != len(cat.Inputs)*c {
		return nil, nil, false
	}
	spec = &dot.Im2ColSpec{N: n, H: h, W: w, C: c, Ho: ho, Wo: wo}
	for i, in := range cat.Inputs {
		sl := fused.slices[i]
		if in != src || sl == nil {
			return nil, nil, false
		}
		if sl.starts[0] != 0 || sl.limits[0] != n || sl.strides[0] != 1 || sl.starts[3] != 0 || sl.limits[3] != c || sl.strides[3] != 1 {
			return nil, nil, false
		}
		if i == 0 {
			spec.SY, spec.SX = sl.strides[1], sl.strides[2]
		} else if sl.strides[1] != spec.SY || sl.strides[2] != spec.SX {
			return nil, nil, false
		}
		dy, dx := sl.starts[1], sl.starts[2]
		if (sl.limits[1]-dy+spec.SY-1)/spec.SY != ho || (sl.limits[2]-dx+spec.SX-1)/spec.SX != wo ||
			dy+(ho-1)*spec.SY >= h || dx+(wo-1)*spec.SX >= w {
			return nil, nil, false
		}
		spec.Taps = append(spec.Taps, [2]int{dy, dx})
	}
	if x.Shape.Dimensions[0] != n*ho*wo || x.Shape.Dimensions[1] != len(spec.Taps)*c {
		return nil, nil, false
	}
	return spec, src, true
}

func (p *dtIm2ColFusion) Apply(b *gobackend.Builder) (bool, error) {
	if !DTIm2ColEnabled || dot.GemmFloat32V == nil {
		return false, nil
	}
	for _, f := range b.Functions {
		if f.RawParent != nil {
			continue // closures keep the unfused graph (see dt_ewfusion.go)
		}
		for _, d := range f.Nodes {
			params, ok := d.Data.(*dot.NodeData)
			if d.OpType != compute.OpTypeDotGeneral || !ok || params.BatchSize != 1 ||
				params.InputDType != dtypes.Float32 || params.OutputDType != dtypes.Float32 || len(d.Inputs) != 2 {
				continue
			}
			if spec, src, ok := dtIm2ColSpec(d.Inputs[0]); ok && params.LHSIm2Col == nil {
				params.LHSIm2Col = spec
				d.Inputs[0] = src
			}
			if spec, src, ok := dtIm2ColSpec(d.Inputs[1]); ok && params.RHSIm2Col == nil {
				params.RHSIm2Col = spec
				d.Inputs[1] = src
			}
		}
	}
	return false, nil
}

// dtCol2ImFusion (priority 34) fuses the GEMM that computes a convolution's patch gradient dP into
// the PadSum (col2im) that consumes it: dtGemmCol2ImNode, executed by dot.GemmCol2ImFloat32,
// accumulates the GEMM's tiles into the input gradient directly, without writing dP (9x the
// input) and reading it back.
type dtCol2ImFusion struct{}

func (p *dtCol2ImFusion) Name() string { return "DreamTeacherCol2ImFusion" }

func init() {
	if !gobackend.DTPatchesEnabled || gobackend.DTPatchDisabled("col2im") {
		return
	}
	gobackend.RegisterTransformation(34, &dtCol2ImFusion{})
}

// DTCol2ImEnabled can disable the GEMM-col2im fusion (tests, benchmarks).
var DTCol2ImEnabled = true

// dtGemmCol2ImNode is the Data of a fused GEMM + col2im (an OpTypeAdd node whose inputs are the
// GEMM's lhs and rhs).
type dtGemmCol2ImNode struct {
	rhsTransposed bool
	m, n, k       int
	spec          *dot.Col2ImSpec
}

// EqualNodeData implements gobackend.NodeDataComparable.
func (d *dtGemmCol2ImNode) EqualNodeData(other gobackend.NodeDataComparable) bool { return d == other }

func (p *dtCol2ImFusion) Apply(b *gobackend.Builder) (bool, error) {
	if !DTCol2ImEnabled || dot.GemmCol2ImFloat32 == nil {
		return false, nil
	}
	for _, f := range b.Functions {
		if f.RawParent != nil {
			continue // closures keep the unfused graph (see dt_ewfusion.go)
		}
		_, uses := dtLiveUses(f)
		for _, ps := range f.Nodes {
			data, ok := ps.Data.(*dtPadSumNode)
			if ps.OpType != compute.OpTypeAdd || !ok || len(ps.Inputs) == 0 || len(data.terms) != len(ps.Inputs) {
				continue
			}
			if fused, ok := dtCol2ImOf(ps, data, uses); ok {
				ps.Inputs = []*gobackend.Node{fused.lhs, fused.rhs}
				ps.Data = fused.node
			}
		}
	}
	return false, nil
}

type dtCol2ImMatch struct {
	lhs, rhs *gobackend.Node
	node     *dtGemmCol2ImNode
}

// dtCol2ImOf matches a PadSum whose terms are the channel slices (one per tap) of a reshaped
// DotGeneral [N*Ho*Wo, T*C] used only by it.
func dtCol2ImOf(ps *gobackend.Node, data *dtPadSumNode, uses map[*gobackend.Node]int) (dtCol2ImMatch, bool) {
	var none dtCol2ImMatch
	r := ps.Inputs[0]
	numTaps := len(ps.Inputs)
	for _, in := range ps.Inputs {
		if in != r {
			return none, false
		}
	}
	if r.OpType != compute.OpTypeReshape || len(r.Inputs) != 1 || r.Shape.Rank() != 4 || uses[r] != numTaps || !dtIsStaticFloat32(r.Shape) {
		return none, false
	}
	d := r.Inputs[0]
	for d.OpType == compute.OpTypeReshape && len(d.Inputs) == 1 && uses[d] == 1 {
		d = d.Inputs[0] // The DotGeneral's own reshape of its [1, M, N] result.
	}
	params, ok := d.Data.(*dot.NodeData)
	if d.OpType != compute.OpTypeDotGeneral || !ok || uses[d] != 1 || params.BatchSize != 1 || params.LHSColMajor ||
		params.OutputTransposed || params.LHSIm2Col != nil || params.RHSIm2Col != nil ||
		params.InputDType != dtypes.Float32 || params.OutputDType != dtypes.Float32 || len(d.Inputs) != 2 {
		return none, false
	}
	n, ho, wo, tc := r.Shape.Dimensions[0], r.Shape.Dimensions[1], r.Shape.Dimensions[2], r.Shape.Dimensions[3]
	if tc%numTaps != 0 {
		return none, false
	}
	c := tc / numTaps
	// Narrow images (Wo < 16) leave too many partial tiles of 6 pixels: the unfused GEMM is faster.
	if dot.GemmCol2ImChannelsOK == nil || !dot.GemmCol2ImChannelsOK(c) || wo < 16 || params.LHSCrossSize != n*ho*wo || params.RHSCrossSize != tc || len(data.full) != 4 || data.full[0] != n || data.full[3] != c {
		return none, false
	}
	spec := &dot.Col2ImSpec{N: n, Ho: ho, Wo: wo, C: c, FullH: data.full[1], FullW: data.full[2]}
	// Each term is one tap (a block of c columns of dP, in any order: autodiff adds the gradients of
	// the slices in its own order).
	wantStrides := []int{ho * wo * tc, wo * tc, tc, 1}
	spec.Taps = make([][2]int, numTaps)
	seen := make([]bool, numTaps)
	for t, term := range data.terms {
		if term.empty || term.srcBase%c != 0 || !slices.Equal(term.srcStrides, wantStrides) || !slices.Equal(term.dims, []int{n, ho, wo, c}) ||
			term.dstStart[0] != 0 || term.dstStep[0] != 1 || term.dstStart[3] != 0 || term.dstStep[3] != 1 {
			return none, false
		}
		tap := term.srcBase / c
		if tap >= numTaps || seen[tap] {
			return none, false
		}
		seen[tap] = true
		if t == 0 {
			spec.SY, spec.SX = term.dstStep[1], term.dstStep[2]
		} else if term.dstStep[1] != spec.SY || term.dstStep[2] != spec.SX {
			return none, false
		}
		spec.Taps[tap] = [2]int{term.dstStart[1], term.dstStart[2]}
	}
	out := ps.Shape.Dimensions
	if data.windowStart != nil {
		if data.windowStart[0] != 0 || data.windowStart[3] != 0 || out[0] != n || out[3] != c {
			return none, false
		}
		spec.WinY, spec.WinX = data.windowStart[1], data.windowStart[2]
	}
	spec.OutH, spec.OutW = out[1], out[2]
	return dtCol2ImMatch{lhs: d.Inputs[0], rhs: d.Inputs[1], node: &dtGemmCol2ImNode{
		rhsTransposed: params.Layout == dot.LayoutTransposed,
		m:             params.LHSCrossSize, n: params.RHSCrossSize, k: params.ContractingSize, spec: spec,
	}}, true
}

func execGemmCol2Im(backend *gobackend.Backend, node *gobackend.Node, inputs []*gobackend.Buffer, data *dtGemmCol2ImNode) (*gobackend.Buffer, error) {
	output, err := backend.GetBuffer(node.Shape)
	if err != nil {
		return nil, err
	}
	dot.GemmCol2ImFloat32(backend, inputs[0].Flat.([]float32), inputs[1].Flat.([]float32), output.Flat.([]float32),
		data.rhsTransposed, data.m, data.n, data.k, data.spec)
	return output, nil
}
