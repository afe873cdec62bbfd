package projector

import (
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// TestShapesAndVariables: MoCo v2's head on ResNet-18's 512 pooled channels is 512 -> 512 ->
// 128; BYOL's has a BatchNorm and its own hidden width.
func TestShapesAndVariables(t *testing.T) {
	x := tensors.FromShape(shapes.Make(dtypes.Float32, 4, 512))
	for _, tc := range []struct {
		name  string
		build func(*model.Scope, *Node) *Node
		vars  map[string][]int
	}{
		{"mocov2", func(s *model.Scope, x *Node) *Node { return New(s.In("proj"), x, 128).Done() },
			map[string][]int{"/proj/fc1/weights": {512, 512}, "/proj/fc1/biases": {512}, "/proj/fc2/weights": {512, 128}, "/proj/fc2/biases": {128}}},
		{"byol", func(s *model.Scope, x *Node) *Node {
			return New(s.In("proj"), x, 256).Hidden(1024).BatchNorm(true).Done()
		},
			map[string][]int{"/proj/fc1/weights": {512, 1024}, "/proj/bn/scale": {1024}, "/proj/fc2/weights": {1024, 256}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := model.NewStore()
			y := model.MustExecOnce(backend.Go(), store, func(s *model.Scope, x *Node) *Node {
				store.SetTraining(x.Graph(), true)
				return tc.build(s, x)
			}, x)
			if out := tc.vars["/proj/fc2/biases"]; out != nil && y.Shape().Dim(1) != out[0] {
				t.Errorf("output %s", y.Shape())
			}
			for path, dims := range tc.vars {
				v := store.GetVariable(path)
				if v == nil || !v.Shape().EqualDimensions(shapes.Make(dtypes.Float32, dims...)) {
					t.Errorf("variable %s: %v, want dimensions %v", path, v, dims)
				}
			}
		})
	}
}

func TestGradients(t *testing.T) {
	x := gradcheck.RandomTensor(1, 6, 5)
	for name, bn := range map[string]bool{"mlp": false, "mlp+bn": true} {
		t.Run(name, func(t *testing.T) {
			gradcheck.Check(t, gradcheck.Options{Training: true}, func(s *model.Scope, in []*Node) *Node {
				return New(s.In("proj"), in[0], 3).Hidden(7).BatchNorm(bn).Done()
			}, x)
		})
	}
}
