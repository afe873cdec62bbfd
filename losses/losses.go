// Package losses holds DreamTeacher's training losses, one sub-package per family: feature
// (feature distillation: LN-MSE and attention transfer), distill (label distillation with a
// temperature), seg (cross-entropy with an ignore index, Dice), and the self-supervised
// baselines' contrastive (MoCo's InfoNCE) and byol. This package defines Terms, the named
// scalars that a loss with several parts returns, so that training loops can log each.
package losses

import (
	"maps"
	"slices"

	. "github.com/gomlx/gomlx/core/graph"
)

// Total is the key of the term to minimise in Terms.
const Total = "loss"

// Terms are the named scalar terms of a loss. Terms[Total] is the weighted sum to minimise; the
// other keys are its parts, for logging (see each loss for its keys).
type Terms map[string]*Node

// Loss returns Terms[Total].
func (t Terms) Loss() *Node { return t[Total] }

// Names returns the keys, sorted, Total first.
func (t Terms) Names() []string {
	names := slices.Sorted(maps.Keys(t))
	if i := slices.Index(names, Total); i > 0 {
		names = append([]string{Total}, slices.Delete(names, i, i+1)...)
	}
	return names
}
