package interpreter_test

import (
	"fmt"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/models/heads/interpreter"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// The interpreter on two teacher levels of a 32x32 image (strides 8 and 4): logits at the finest
// level's resolution, whatever order the levels come in.
func ExampleBuild() {
	store := model.NewStore()
	s8 := tensors.FromShape(shapes.Make(dtypes.Float32, 1, 4, 4, 64))
	s4 := tensors.FromShape(shapes.Make(dtypes.Float32, 1, 8, 8, 32))
	logits := model.MustExecOnce(backend.Go(), store, func(scope *model.Scope, s8, s4 *Node) *Node {
		feats := map[string]*Node{"dec_s8": s8, "dec_s4": s4}
		fmt.Println("levels:", interpreter.Levels(feats))
		return interpreter.Build(scope.In("interpreter"), feats, 5, interpreter.Config{Width: 16})
	}, s8, s4)
	fmt.Println("logits:", logits.Shape())
	fmt.Println("norm groups at width 16:", interpreter.NormGroups(16), "at 256:", interpreter.NormGroups(256))
	// Output:
	// levels: [dec_s4 dec_s8]
	// logits: (Float32)[1, 8, 8, 5]
	// norm groups at width 16: 16 at 256: 32
}
