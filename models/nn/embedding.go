package nn

import (
	"math"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/support/exceptions"
)

// TimestepEmbedding is guided-diffusion's sinusoidal embedding of timesteps t [N] (any real
// values) into [N, dim]: cat(cos(t*f), sin(t*f)) with f_i = maxPeriod^(-i/half), i < half.
// An odd dim gets a zero last column.
func TimestepEmbedding(t *Node, dim int, maxPeriod float64) *Node {
	if t.Rank() != 1 {
		exceptions.Panicf("TimestepEmbedding: want timesteps [N], got %s", t.Shape())
	}
	g := t.Graph()
	half := dim / 2
	freqs := make([]float64, half)
	for i := range freqs {
		freqs[i] = math.Exp(-math.Log(maxPeriod) * float64(i) / float64(half))
	}
	f := ConvertDType(Const(g, freqs), t.DType())
	args := Mul(ExpandAxes(t, -1), ExpandAxes(f, 0)) // [N, half]
	emb := Concatenate([]*Node{Cos(args), Sin(args)}, -1)
	if dim%2 == 1 {
		emb = Concatenate([]*Node{emb, Zeros(g, shapeOf(t.DType(), t.Shape().Dim(0), 1))}, -1)
	}
	return emb
}
