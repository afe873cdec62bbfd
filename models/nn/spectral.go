package nn

import (
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// SpectralNorm divides a weight w (last axis = output features, e.g. an HWIO conv kernel or a
// [in, out] linear weight) by its largest singular value, estimated by power iteration as
// torch.nn.utils.spectral_norm (one iteration per training step, eps 1e-12).
//
// The power-iteration vectors are non-trainable variables "sn_u" [out] and "sn_v" [rest]: they
// are updated by each training graph, saved in checkpoints, and used as they are in eval.
func SpectralNorm(scope *model.Scope, w *Node) *Node {
	g := w.Graph()
	out := w.Shape().Dim(-1)
	rest := w.Shape().Size() / out
	mat := Transpose(Reshape(w, rest, out), 0, 1) // [out, rest], PyTorch's weight.view(out, -1)
	normal := func(s *model.Scope, _, _ int) model.VariableInitializer {
		return func(g *Graph, shape shapes.Shape) *Node { return l2normalize(s.RandomNormal(g, shape)) }
	}
	uVar := scope.WithInitializer(normal(scope, 0, 0)).VariableWithShape("sn_u", shapeOf(w.DType(), out)).SetTrainable(false)
	vVar := scope.WithInitializer(normal(scope, 0, 0)).VariableWithShape("sn_v", shapeOf(w.DType(), rest)).SetTrainable(false)
	u, v := uVar.NodeValue(g), vVar.NodeValue(g)
	if IsTraining(scope, g) {
		m := StopGradient(mat)
		v = l2normalize(Dot(u, m).General([]int{0}, nil, []int{0}, nil)) // W^T u
		u = l2normalize(Dot(m, v).Product())                             // W v
		uVar.SetNodeValue(u)
		vVar.SetNodeValue(v)
	}
	sigma := ReduceAllSum(Mul(u, Dot(mat, v).Product()))
	return Div(w, sigma)
}

func l2normalize(x *Node) *Node {
	norm := Sqrt(ReduceAllSum(Square(x)))
	return Div(x, Max(norm, Scalar(x.Graph(), x.DType(), 1e-12)))
}
