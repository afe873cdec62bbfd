// Package gomlxfix works around measured problems of GoMLX v0.28.2's automatic differentiation.
// It is imported for its side effects by models/nn, so every model gets the fixes.
//
//   - The gradient of DotGeneral ends with a TransposeAllAxes back to the operand's axis order,
//     which GoMLX builds even when the permutation is the identity, and the Go backend executes
//     as a full element-by-element copy. For the patches of a convolution lowered to a matmul
//     that copy was 30% of a ResNet-18 training step. The fix drops identity transposes from
//     DotGeneral's gradient.
//   - For a plain matrix product C = A·B (A [M,K], B [K,N]) GoMLX computes dB = Aᵀ·dC as a
//     DotGeneral contracting the first axis of both operands, which the Go backend can only run
//     after transposing both of them, the large A included (A holds the patches of a lowered
//     convolution, 9x the size of its output). The fix transposes only the smaller of A and dC.
package gomlxfix

import (
	"fmt"
	"strings"

	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
)

func init() {
	dotVJP := VJPRegistration[NodeTypeDotGeneral]
	VJPRegistration[NodeTypeDotGeneral] = func(node *Node, v []*Node, outputShape shapes.Shape) []*Node {
		if a, b, ok := isMatMul(node); ok {
			return matMulVJP(a, b, v[0])
		}
		grads := dotVJP(node, v, outputShape)
		for i, g := range grads {
			if g != nil && isIdentityTranspose(g) {
				grads[i] = g.Inputs()[0]
			}
		}
		return grads
	}
}

// isIdentityTranspose reports whether n is a Transpose whose permutation is 0, 1, ..., rank-1.
// GoMLX does not export a node's permutation; its description does ("permutation=[0 1 2]").
func isIdentityTranspose(n *Node) bool {
	if n.Type() != NodeTypeTranspose || !n.Shape().Equal(n.Inputs()[0].Shape()) {
		return false
	}
	identity := make([]int, n.Rank())
	for i := range identity {
		identity[i] = i
	}
	return strings.Contains(n.String(), fmt.Sprintf("permutation=%v", identity))
}

// isMatMul reports whether node is Dot(a, b).Product() of two matrices, with default config.
func isMatMul(node *Node) (a, b *Node, ok bool) {
	in := node.Inputs()
	if len(in) != 2 || in[0].Rank() != 2 || in[1].Rank() != 2 || in[0].DType() != in[1].DType() {
		return nil, nil, false
	}
	want := fmt.Sprintf("DotGeneral(lhs=[#%d], lhsContractingAxes=[1], lhsBatchAxes=[], rhs=[#%d], rhsContractingAxes=[0], rhsBatchAxes=[], config={AccumulatorDType:InvalidDType OutputDType:InvalidDType})",
		in[0].Id(), in[1].Id())
	return in[0], in[1], strings.Contains(node.String(), want)
}

// matMulVJP returns dA = dC·Bᵀ and dB = Aᵀ·dC in layouts the Go backend multiplies directly.
func matMulVJP(a, b, dc *Node) []*Node {
	da := Dot(dc, b).General([]int{1}, nil, []int{1}, nil) // [M,N]x[K,N] -> [M,K]
	var db *Node
	if dc.Shape().Dim(1) <= a.Shape().Dim(1) {
		db = Transpose(Dot(Transpose(dc, 0, 1), a).Product(), 0, 1) // ([N,M]·[M,K])ᵀ
	} else {
		db = Dot(Transpose(a, 0, 1), dc).Product() // [K,M]·[M,N]
	}
	return []*Node{da, db}
}
