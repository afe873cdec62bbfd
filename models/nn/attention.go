package nn

import (
	"math"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// SelfAttention is multi-head self-attention over the positions of x [N, T, C] (a feature map
// flattened to T = H*W positions). One linear layer "qkv" makes queries, keys and values with
// guided-diffusion's legacy channel order (per head: q, k, v of C/heads channels each), softmax
// attention with scale 1/sqrt(C/heads), and a linear output "proj" (zero-initialised when
// zeroInitOut, so that a residual attention block starts as the identity).
func SelfAttention(scope *model.Scope, x *Node, heads int, zeroInitOut bool) *Node {
	if x.Rank() != 3 {
		exceptions.Panicf("SelfAttention at %q: want x [N, T, C], got %s", scope.Scope(), x.Shape())
	}
	n, t, c := x.Shape().Dim(0), x.Shape().Dim(1), x.Shape().Dim(2)
	if c%heads != 0 {
		exceptions.Panicf("SelfAttention at %q: %d channels are not divisible into %d heads", scope.Scope(), c, heads)
	}
	ch := c / heads
	qkv := Linear(scope.In("qkv"), x, 3*c).Done()
	qkv = Reshape(qkv, n, t, heads, 3, ch)
	q := Reshape(Slice(qkv, AxisRange(), AxisRange(), AxisRange(), AxisElem(0)), n, t, heads, ch)
	k := Reshape(Slice(qkv, AxisRange(), AxisRange(), AxisRange(), AxisElem(1)), n, t, heads, ch)
	v := Reshape(Slice(qkv, AxisRange(), AxisRange(), AxisRange(), AxisElem(2)), n, t, heads, ch)
	q = TransposeAllAxes(q, 0, 2, 1, 3) // [n, heads, t, ch]
	k = TransposeAllAxes(k, 0, 2, 1, 3)
	v = TransposeAllAxes(v, 0, 2, 1, 3)
	logits := Dot(q, k).General([]int{3}, []int{0, 1}, []int{3}, []int{0, 1}) // [n, heads, t, t]
	weights := Softmax(MulScalar(logits, 1/math.Sqrt(float64(ch))), -1)
	out := Dot(weights, v).General([]int{3}, []int{0, 1}, []int{2}, []int{0, 1}) // [n, heads, t, ch]
	out = Reshape(TransposeAllAxes(out, 0, 2, 1, 3), n, t, c)
	proj := Linear(scope.In("proj"), out, c)
	if zeroInitOut {
		proj.ZeroInit()
	}
	return proj.Done()
}
