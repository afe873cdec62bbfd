// Package flops counts the forward cost of a model from its built GoMLX graph, without running it.
//
// Convention: the count is of multiply-accumulates (MACs) in the ops that hold nearly all of a
// CNN's arithmetic — matrix multiplications (DotGeneral, FusedDense), convolutions (ConvGeneral)
// and depthwise convolutions lowered by models/nn — as torchvision's model tables, fvcore and
// ptflops count them: one MAC per multiply-add, padding taps included, element-wise ops
// (normalisation, activations, residual adds, pooling) not counted. FLOPs are 2 x MACs.
// torchvision lists ResNet-18 at 224x224 as "1.81 GFLOPS", which is 1.814 GMACs = 3.63 GFLOPs
// in this package's terms; Counts.String prints both.
//
// The count is the same whichever way models/nn lowers a convolution: a native ConvGeneral, the
// patches + DotGeneral of the Go backend (same MACs: one row of patches per output pixel), the
// reshape + matmul of a patchify convolution, or the per-tap products of a lowered depthwise
// convolution. Bilinear resizes built by nn.ResizeBilinear are matrix products and are counted
// (fvcore counts them differently); a graph that also holds a gradient is counted whole, so
// count a forward graph (see Inspect).
package flops

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	. "github.com/gomlx/gomlx/core/graph"
)

// Counts of multiply-accumulates by kind of op.
type Counts struct {
	DotGeneral  int64 // matrix products: linear layers, lowered and patchify convolutions, resizes
	ConvGeneral int64 // native convolutions
	FusedDense  int64 // fused linear layers
	Depthwise   int64 // depthwise convolutions lowered to per-tap products by models/nn
}

// MACs is the total number of multiply-accumulates.
func (c Counts) MACs() int64 { return c.DotGeneral + c.ConvGeneral + c.FusedDense + c.Depthwise }

// FLOPs is 2 x MACs.
func (c Counts) FLOPs() int64 { return 2 * c.MACs() }

// GFLOPs is FLOPs / 1e9.
func (c Counts) GFLOPs() float64 { return float64(c.FLOPs()) / 1e9 }

// GMACs is MACs / 1e9.
func (c Counts) GMACs() float64 { return float64(c.MACs()) / 1e9 }

// Add returns the sum of two counts.
func (c Counts) Add(o Counts) Counts {
	return Counts{c.DotGeneral + o.DotGeneral, c.ConvGeneral + o.ConvGeneral, c.FusedDense + o.FusedDense, c.Depthwise + o.Depthwise}
}

// String prints "3.638 GFLOPs (1.819 GMACs)".
func (c Counts) String() string {
	return fmt.Sprintf("%.3f GFLOPs (%.3f GMACs)", c.GFLOPs(), c.GMACs())
}

// Count counts every node of g, including nodes no output depends on.
func Count(g *Graph) Counts {
	var c Counts
	for _, n := range g.Nodes() {
		c = c.Add(NodeCounts(n))
	}
	return c
}

// CountFrom counts the nodes that the given outputs depend on.
func CountFrom(outputs ...*Node) Counts {
	var c Counts
	seen := map[*Node]bool{}
	stack := append([]*Node(nil), outputs...)
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n == nil || seen[n] {
			continue
		}
		seen[n] = true
		c = c.Add(NodeCounts(n))
		stack = append(stack, n.Inputs()...)
	}
	return c
}

// NodeCounts returns the MACs of one node (zero for the ops that are not counted).
func NodeCounts(n *Node) Counts {
	switch n.Type() {
	case NodeTypeDotGeneral:
		return Counts{DotGeneral: dotMACs(n)}
	case NodeTypeConvGeneral:
		return Counts{ConvGeneral: convMACs(n)}
	case NodeTypeFusedDense:
		// x [..., in] times weights [in, out...]: every output element is `in` MACs.
		return Counts{FusedDense: int64(n.Shape().Size()) * int64(n.Inputs()[0].Shape().Dim(-1))}
	case NodeTypeMul:
		if isLoweredDepthwiseTap(n) {
			return Counts{Depthwise: int64(n.Shape().Size())}
		}
	}
	return Counts{}
}

var (
	lhsContractingRE = regexp.MustCompile(`lhsContractingAxes=\[([0-9 ]*)\]`)
	kernelOutputRE   = regexp.MustCompile(`KernelOutputChannels:([0-9]+)`)
)

// dotMACs of a DotGeneral: its output holds batch x M x N elements, each a sum over the K
// elements of the contracting axes, so MACs = output size x K, with K the product of the lhs
// dimensions on its contracting axes. GoMLX does not export a node's axes; its description does.
func dotMACs(n *Node) int64 {
	m := lhsContractingRE.FindStringSubmatch(n.String())
	if m == nil {
		panic(fmt.Sprintf("flops: cannot read the contracting axes of %s", n))
	}
	lhs := n.Inputs()[0]
	k := int64(1)
	for _, f := range strings.Fields(m[1]) {
		axis, err := strconv.Atoi(f)
		if err != nil {
			panic(fmt.Sprintf("flops: bad contracting axis %q in %s", f, n))
		}
		k *= int64(lhs.Shape().Dim(axis))
	}
	return int64(n.Shape().Size()) * k
}

// convMACs of a ConvGeneral: every output element sums over one kernel window of
// kh x kw x (input channels / groups) taps, i.e. kernel size / output channels.
func convMACs(n *Node) int64 {
	kernel := n.Inputs()[1]
	outAxis := kernel.Rank() - 1 // HWIO, GoMLX's default
	if m := kernelOutputRE.FindStringSubmatch(n.String()); m != nil {
		outAxis, _ = strconv.Atoi(m[1])
	}
	perOutput := int64(kernel.Shape().Size()) / int64(kernel.Shape().Dim(outAxis))
	return int64(n.Shape().Size()) * perOutput
}

// isLoweredDepthwiseTap recognises one tap of a depthwise convolution lowered by models/nn on
// the Go backend: Mul(tap [N, H, W, C], Reshape(Slice(kernel)) [1, 1, 1, C]). Per-channel scales
// of normalisation layers and layer scale are Reshapes of whole variables, not of a Slice, and
// are not counted. The tests of this package check that a lowered depthwise convolution counts
// as much as the native one, so a change to the lowering shows up there.
func isLoweredDepthwiseTap(n *Node) bool {
	in := n.Inputs()
	if len(in) != 2 || n.Rank() != 4 {
		return false
	}
	for i, w := range in {
		x := in[1-i]
		c := n.Shape().Dim(3)
		if w.Rank() == 4 && w.Shape().Dim(0) == 1 && w.Shape().Dim(1) == 1 && w.Shape().Dim(2) == 1 && w.Shape().Dim(3) == c &&
			x.Shape().Equal(n.Shape()) && w.Type() == NodeTypeReshape && w.Inputs()[0].Type() == NodeTypeSlice {
			return true
		}
	}
	return false
}
