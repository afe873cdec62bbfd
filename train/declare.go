package train

import (
	"fmt"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// Declare builds fn once, in training mode, on a throwaway graph with placeholder inputs of the
// given shapes, so that every variable fn uses exists in the store with its shape (not yet
// initialised). Partial loading (LoadScope with Strict) can then check names and shapes before
// the first step; variables that nothing loads are initialised at the first step as usual.
func Declare(b compute.Backend, store *model.Store, inputs []shapes.Shape, fn func(scope *model.Scope, in []*Node)) (err error) {
	g := NewGraph(b, "train.Declare")
	defer g.Finalize()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("building the model: %v", r)
		}
	}()
	model.SetStore(g, store)
	store.SetTraining(g, true)
	in := make([]*Node, len(inputs))
	for i, s := range inputs {
		in[i] = Parameter(g, fmt.Sprintf("input%d", i), s)
	}
	fn(store.RootScope(), in)
	return nil
}
