// Copyright 2023-2026 The GoMLX Authors. SPDX-License-Identifier: Apache-2.0

// DreamTeacher-Go patch: fusion of chains of float32 element-wise ops, see PATCHES.md.
//
// A training step is full of chains of element-wise ops over the same activation (BatchNorm,
// ReLU and their gradients; the Adam update of each weight): executed one op at a time, each op
// reads and writes whole tensors from memory. A fused group reads its inputs and writes its
// output once, and evaluates the ops block by block (32K elements, whose temps stay in L2). Each op is
// computed exactly as the unfused op (same IEEE operation per element): results are identical.
//
// A group is a tree of ops (Add, Sub, Mul, Div, Max, Min, Neg, Abs, Sign, Sqrt) of the same
// float32 output shape whose intermediate results have no other use; its leaves are tensors of
// the output shape, scalars, or vectors broadcast along the last axis ([1, ..., 1, C]).

package ops

import (
	"slices"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/internal/gobackend"
	"github.com/gomlx/compute/shapes"
)

func init() {
	if !gobackend.DTPatchesEnabled || gobackend.DTPatchDisabled("ewfusion") {
		return
	}
	gobackend.RegisterTransformation(45, &dtElementwiseFusion{})
	gobackend.SetNodeExecutor(compute.OpTypeNeg, gobackend.PriorityArch, dtUnaryFusedOr(execNeg))
	gobackend.SetNodeExecutor(compute.OpTypeAbs, gobackend.PriorityArch, dtUnaryFusedOr(execAbs))
	gobackend.SetNodeExecutor(compute.OpTypeSqrt, gobackend.PriorityArch, dtUnaryFusedOr(execSqrt))
}

// DTEWFusionEnabled can disable the element-wise fusion (tests, benchmarks).
var DTEWFusionEnabled = true

type dtLeafKind int

const (
	dtLeafFull   dtLeafKind = iota // Same shape as the output.
	dtLeafScalar                   // One element.
	dtLeafInner                    // [1, ..., 1, C], broadcast along the last axis.
)

// dtOperand of an instruction: leaf (input) i or temp (result of instruction) i.
type dtOperand struct {
	leaf bool
	idx  int
}

type dtInstr struct {
	op   compute.OpType
	a, b dtOperand // b unused for unary ops.
	out  int       // Temp slot.
}

// dtFusedNode is the Data of a fused element-wise group (the root node of the group, whose inputs
// are the leaves).
type dtFusedNode struct {
	leafKinds []dtLeafKind
	instrs    []dtInstr
	numTemps  int
	lastDim   int
}

// EqualNodeData implements gobackend.NodeDataComparable.
func (d *dtFusedNode) EqualNodeData(other gobackend.NodeDataComparable) bool { return d == other }

func dtIsEWUnary(op compute.OpType) bool {
	switch op { //nolint:exhaustive
	case compute.OpTypeNeg, compute.OpTypeAbs, compute.OpTypeSign, compute.OpTypeSqrt:
		return true
	}
	return false
}

func dtIsEWBinary(op compute.OpType) bool {
	switch op { //nolint:exhaustive
	case compute.OpTypeAdd, compute.OpTypeSub, compute.OpTypeMul, compute.OpTypeDiv, compute.OpTypeMax, compute.OpTypeMin:
		return true
	}
	return false
}

// dtLeafKindOf classifies a tensor of shape s as a leaf of a group of output shape out.
func dtLeafKindOf(s, out shapes.Shape) (dtLeafKind, bool) {
	if s.DType != out.DType || s.IsDynamic() {
		return 0, false
	}
	if s.Equal(out) {
		return dtLeafFull, true
	}
	if s.Size() == 1 {
		return dtLeafScalar, true
	}
	r := out.Rank()
	if r == 0 || s.Rank() != r || s.Dimensions[r-1] != out.Dimensions[r-1] {
		return 0, false
	}
	for _, d := range s.Dimensions[:r-1] {
		if d != 1 {
			return 0, false
		}
	}
	return dtLeafInner, true
}

// dtEWEligible reports whether n can be a node of a group of output shape out: a plain (unfused)
// element-wise float32 op of that shape, whose inputs are valid leaves.
func dtEWEligible(n *gobackend.Node, out shapes.Shape) bool {
	if n.Data != nil || !n.Shape.Equal(out) || !dtIsStaticFloat32(n.Shape) {
		return false
	}
	switch {
	case dtIsEWUnary(n.OpType):
		if len(n.Inputs) != 1 {
			return false
		}
	case dtIsEWBinary(n.OpType):
		if len(n.Inputs) != 2 {
			return false
		}
	default:
		return false
	}
	for _, in := range n.Inputs {
		if _, ok := dtLeafKindOf(in.Shape, out); !ok {
			return false
		}
	}
	return true
}

type dtElementwiseFusion struct{}

func (p *dtElementwiseFusion) Name() string { return "DreamTeacherElementwiseFusion" }

func (p *dtElementwiseFusion) Apply(b *gobackend.Builder) (bool, error) {
	if !DTEWFusionEnabled {
		return false, nil
	}
	for _, f := range b.Functions {
		if f.RawParent != nil {
			// Closures (While, If, Sort bodies) are left alone: their executables are built
			// with the dependency counts of the unfused graph, and a fused root there never
			// became ready (a Mask R-CNN step hung in a While body).
			continue
		}
		live, uses := dtLiveUses(f)
		inGroup := make(map[*gobackend.Node]bool)
		// Roots: from the last node backwards, so that a group takes its whole tree.
		for i := len(f.Nodes) - 1; i >= 0; i-- {
			root := f.Nodes[i]
			if !live[root] || inGroup[root] || !dtEWEligible(root, root.Shape) {
				continue
			}
			out := root.Shape
			var members []*gobackend.Node // Post-order (inputs first).
			var visit func(n *gobackend.Node)
			visit = func(n *gobackend.Node) {
				inGroup[n] = true
				for _, in := range n.Inputs {
					if !inGroup[in] && uses[in] == 1 && in.Function == f && dtEWEligible(in, out) {
						visit(in)
					}
				}
				members = append(members, n)
			}
			visit(root)
			if len(members) < 2 {
				continue
			}
			dtBuildFused(root, members, out)
		}
	}
	return false, nil
}

// dtLiveUses returns the nodes of f reachable from its outputs, and the number of uses of each by
// live nodes (and outputs).
func dtLiveUses(f *gobackend.Function) (map[*gobackend.Node]bool, map[*gobackend.Node]int) {
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
	return live, uses
}

// dtBuildFused rewrites root into the fused node of the group members (in post-order, root last).
func dtBuildFused(root *gobackend.Node, members []*gobackend.Node, out shapes.Shape) {
	tempOf := make(map[*gobackend.Node]int, len(members))
	leafOf := make(map[*gobackend.Node]int)
	fused := &dtFusedNode{}
	if r := out.Rank(); r > 0 {
		fused.lastDim = out.Dimensions[r-1]
	}
	var leaves []*gobackend.Node
	operand := func(in *gobackend.Node) dtOperand {
		if t, ok := tempOf[in]; ok {
			return dtOperand{idx: t}
		}
		if l, ok := leafOf[in]; ok {
			return dtOperand{leaf: true, idx: l}
		}
		kind, _ := dtLeafKindOf(in.Shape, out)
		leafOf[in] = len(leaves)
		leaves = append(leaves, in)
		fused.leafKinds = append(fused.leafKinds, kind)
		return dtOperand{leaf: true, idx: leafOf[in]}
	}
	// Temp slots: reuse a slot once its value has been consumed (each temp has one use).
	var free []int
	for _, m := range members {
		ins := dtInstr{op: m.OpType}
		ins.a = operand(m.Inputs[0])
		if len(m.Inputs) > 1 {
			ins.b = operand(m.Inputs[1])
		}
		ops := []dtOperand{ins.a}
		if len(m.Inputs) > 1 {
			ops = append(ops, ins.b)
		}
		for _, o := range ops {
			if !o.leaf {
				free = append(free, o.idx)
			}
		}
		if len(free) > 0 {
			ins.out = free[len(free)-1]
			free = free[:len(free)-1]
		} else {
			ins.out = fused.numTemps
			fused.numTemps++
		}
		tempOf[m] = ins.out
		fused.instrs = append(fused.instrs, ins)
	}
	root.Inputs = slices.Clone(leaves)
	root.Data = fused
}

// dtUnaryFusedOr wraps the executor of a unary op: fused groups rooted at it run execFused.
func dtUnaryFusedOr(exec gobackend.NodeExecutor) gobackend.NodeExecutor {
	return func(backend *gobackend.Backend, node *gobackend.Node, inputs []*gobackend.Buffer, inputsOwned []bool) (*gobackend.Buffer, error) {
		if fused, ok := node.Data.(*dtFusedNode); ok {
			return execFused(backend, node, inputs, inputsOwned, fused)
		}
		return exec(backend, node, inputs, inputsOwned)
	}
}

// DTFusedBlockTarget is the target number of elements of a block of a fused group: the temps
// of a block stay in L2, and the inputs are read in long runs (blocks of 512 elements ran slower
// than the unfused ops: short runs defeat the hardware prefetchers).
var DTFusedBlockTarget = 32768

// dtFusedBlock is the number of elements evaluated at a time: a multiple of the last dimension
// (so that vectors broadcast along it repeat exactly within a block).
func dtFusedBlock(lastDim int) int {
	target := DTFusedBlockTarget
	if lastDim <= 0 || lastDim >= target {
		return max(lastDim, target)
	}
	return lastDim * (target / lastDim)
}

func execFused(backend *gobackend.Backend, node *gobackend.Node, inputs []*gobackend.Buffer, inputsOwned []bool, fused *dtFusedNode) (*gobackend.Buffer, error) {
	leaves := make([][]float32, len(inputs))
	for i, in := range inputs {
		leaves[i] = in.Flat.([]float32)
	}
	// The output may reuse an owned input of the output's shape: each block of the output is
	// written after all the reads of the same block of the inputs, and no other block is read.
	var output *gobackend.Buffer
	for i, in := range inputs {
		if inputsOwned[i] && fused.leafKinds[i] == dtLeafFull && in.RawShape.Equal(node.Shape) && !slices.Contains(inputs[:i], in) &&
			!slices.Contains(inputs[i+1:], in) {
			output = in
			inputs[i] = nil
			break
		}
	}
	if output == nil {
		var err error
		output, err = backend.GetBuffer(node.Shape)
		if err != nil {
			return nil, err
		}
	}
	out := output.Flat.([]float32)
	n := len(out)
	if n == 0 {
		return output, nil
	}
	block := dtFusedBlock(fused.lastDim)
	if fused.lastDim == 0 {
		block = DTFusedBlockTarget
	}
	numBlocks := (n + block - 1) / block
	dtParallelFor(backend, numBlocks, block*(len(inputs)+1), func(start, end int) {
		// Scratch: temps, and the broadcast vectors repeated over a block.
		scratch := dtScratch(block * (fused.numTemps + len(inputs)))
		defer dtRelease(scratch)
		var tempsArr [16][]float32
		temps := tempsArr[:0]
		if fused.numTemps > len(tempsArr) {
			temps = make([][]float32, 0, fused.numTemps)
		}
		temps = temps[:fused.numTemps]
		for t := range temps {
			temps[t] = scratch[t*block : (t+1)*block]
		}
		var tiledArr [16][]float32
		tiled := tiledArr[:0]
		if len(inputs) > len(tiledArr) {
			tiled = make([][]float32, 0, len(inputs))
		}
		tiled = tiled[:len(inputs)]
		for i, kind := range fused.leafKinds {
			if kind != dtLeafInner {
				continue
			}
			tiled[i] = scratch[(fused.numTemps+i)*block : (fused.numTemps+i+1)*block]
			c := fused.lastDim
			for j := 0; j < block; j += c {
				copy(tiled[i][j:j+c], leaves[i])
			}
		}
		for blk := start; blk < end; blk++ {
			i0 := blk * block
			m := min(block, n-i0)
			// operand returns the values of o for this block (nil, v for a scalar leaf).
			operand := func(o dtOperand) ([]float32, float32) {
				if !o.leaf {
					return temps[o.idx][:m], 0
				}
				switch fused.leafKinds[o.idx] {
				case dtLeafScalar:
					return nil, leaves[o.idx][0]
				case dtLeafInner:
					return tiled[o.idx][:m], 0
				default:
					return leaves[o.idx][i0 : i0+m], 0
				}
			}
			for k, ins := range fused.instrs {
				dst := temps[ins.out][:m]
				if k == len(fused.instrs)-1 {
					dst = out[i0 : i0+m]
				}
				a, av := operand(ins.a)
				if dtIsEWUnary(ins.op) {
					if a == nil {
						a = []float32{av}
						// A unary op of a scalar leaf: compute once, then broadcast.
						var r [1]float32
						dtF32Unary(ins.op, r[:], a)
						for j := range dst {
							dst[j] = r[0]
						}
						continue
					}
					dtF32Unary(ins.op, dst, a)
					continue
				}
				b, bv := operand(ins.b)
				vv, vs, sv := dtF32BinaryKernels(ins.op)
				switch {
				case a != nil && b != nil:
					vv(dst, a, b)
				case a != nil:
					vs(dst, a, bv)
				case b != nil:
					sv(dst, av, b)
				default:
					var r [1]float32
					vv(r[:], []float32{av}, []float32{bv})
					for j := range dst {
						dst[j] = r[0]
					}
				}
			}
		}
	})
	return output, nil
}

func dtF32Unary(op compute.OpType, dst, x []float32) {
	switch op { //nolint:exhaustive
	case compute.OpTypeNeg:
		dtF32Neg(dst, x)
	case compute.OpTypeAbs:
		dtF32Abs(dst, x)
	case compute.OpTypeSign:
		dtF32Sign(dst, x)
	case compute.OpTypeSqrt:
		dtF32Sqrt(dst, x)
	}
}
