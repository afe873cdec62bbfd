package byol

import (
	"math"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

func t64(dims []int, data ...float64) *tensors.Tensor {
	return tensors.FromFlatDataAndDimensions(data, dims...)
}

// Three pairs: orthogonal (2), the same direction at another length (0), 45° (2 − √2).
func TestHandComputed(t *testing.T) {
	q := t64([]int{3, 2}, 1, 0, 1, 0, 1, 1)
	z := t64([]int{3, 2}, 0, 1, 2, 0, 1, 0)
	got := MustExecOnceN(backend.Go(), func(q, z *Node) []*Node {
		return []*Node{Loss(q, z), Symmetric(q, z, z, q)}
	}, q, z)
	want := (2 + 0 + 2 - math.Sqrt2) / 3
	if l := got[0].Value().(float64); math.Abs(l-want) > 1e-12 {
		t.Errorf("loss %.15g, want %.15g", l, want)
	}
	if l := got[1].Value().(float64); math.Abs(l-2*want) > 1e-12 {
		t.Errorf("symmetric loss %.15g, want %.15g", l, 2*want)
	}
}

// TestGradients: the predictions' gradient matches finite differences in float64; the target
// projections get none.
func TestGradients(t *testing.T) {
	q, z := gradcheck.RandomTensor(1, 4, 3), gradcheck.RandomTensor(2, 4, 3)
	gradcheck.Check(t, gradcheck.Options{Inputs: []int{0}}, func(_ *model.Scope, in []*Node) *Node { return Loss(in[0], in[1]) }, q, z)
	g := MustExecOnce(backend.Go(), func(q, z *Node) *Node { return Gradient(Loss(q, z), z)[0] }, q, z)
	for _, v := range tensors.MustCopyFlatData[float64](g) {
		if v != 0 {
			t.Fatalf("the target projections have a gradient: %v", g)
		}
	}
}
