package nn

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// frozenParam is the scope setting Freeze sets.
const frozenParam = "frozen"

// Freeze marks scope and everything under it as frozen: its blocks behave as in inference
// (no dropout or stochastic depth, BatchNorm with its running statistics, spectral norm with
// its stored vectors) even inside a training graph — a teacher network evaluated within the
// student's training step. GoMLX's training flag belongs to the whole graph; this refines it
// per scope. (Freezing does not stop gradients or updates: train.Config.Train does.)
func Freeze(scope *model.Scope) { scope.SetParam(frozenParam, true) }

// IsTraining reports whether the blocks under scope train in graph g: g is a training graph
// and scope is not frozen. Every block with train/inference behaviour asks it.
func IsTraining(scope *model.Scope, g *Graph) bool {
	return scope.IsTraining(g) && !model.GetParamOr(scope, frozenParam, false)
}
