// Package byol is the loss of BYOL (Grill et al. 2020, "Bootstrap your own latent", eq. 2): the
// squared distance between the online network's L2-normalised prediction q of one view and the
// target network's L2-normalised projection z' of the other view,
//
//	L = ‖ q/‖q‖₂ − z'/‖z'‖₂ ‖²₂ = 2 − 2·⟨q, z'⟩ / (‖q‖₂·‖z'‖₂)
//
// symmetrised over the two views: L_BYOL = L(q₁, z'₂) + L(q₂, z'₁) (Symmetric).
//
// Choices, as BYOL's code makes them: the loss is the mean over the batch of each pair's
// distance (so the symmetric loss lies in [0, 8]); the target projections are constants (no
// gradient: the target network follows the online one by a moving average); the norms are
// GoMLX's L2Normalize, whose zero vectors stay zero.
package byol

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Loss is L(q, z') for predictions q [N, D] and target projections z [N, D], averaged over the
// batch; z gets no gradient.
func Loss(q, z *Node) *Node {
	if q.Rank() != 2 || !q.Shape().Equal(z.Shape()) {
		exceptions.Panicf("byol: predictions %s and target projections %s must both be [N, D]", q.Shape(), z.Shape())
	}
	cos := ReduceSum(Mul(L2Normalize(q, -1), L2Normalize(StopGradient(z), -1)), -1)
	return MulScalar(ReduceAllMean(OneMinus(cos)), 2)
}

// Symmetric is L(q1, z2) + L(q2, z1): each view's prediction against the other view's target
// projection.
func Symmetric(q1, z2, q2, z1 *Node) *Node { return Add(Loss(q1, z2), Loss(q2, z1)) }
