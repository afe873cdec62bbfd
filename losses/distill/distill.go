// Package distill is DreamTeacher's label-distillation loss (PAPER.md, "Label distillation"):
// the cross-entropy between the teacher's soft labels and the student's, at a temperature τ,
//
//	L_ld = H(softmax(z_g/τ), softmax(z_r/τ)) = -Σ_k softmax(z_g/τ)_k log softmax(z_r/τ)_k,
//
// averaged over pixels, with τ = 4. z_g are the logits of the interpreter on the teacher's
// features, z_r those of the logit head on the student's regressor.
//
// Conventions: the loss is the cross-entropy the paper writes, not the KL divergence, so its
// minimum is the entropy of the teacher's soft labels, not 0 (the gradients are the same).
// Hinton et al. multiply the distillation term by τ² so that its gradients keep their size as τ
// changes; the paper does not say it does, so by default we do not (ScaleByTauSquared turns it
// on; at τ = 4 it multiplies the loss by 16, which changes the balance with L_feat in L_mix).
// The teacher's logits get no gradient.
package distill

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/support/exceptions"
)

// DefaultTau is the paper's temperature.
const DefaultTau = 4.0

// Builder of the label-distillation loss; create it with New.
type Builder struct {
	student, teacher, mask *Node
	tau                    float64
	tauSquared             bool
}

// New creates the loss between student and teacher logits of the same shape [..., K] (classes
// last, e.g. [N, H, W, K]), at temperature DefaultTau.
func New(student, teacher *Node) *Builder {
	return &Builder{student: student, teacher: teacher, tau: DefaultTau}
}

// Tau sets the temperature (4).
func (b *Builder) Tau(tau float64) *Builder { b.tau = tau; return b }

// Mask restricts the average to some pixels: a boolean mask, or non-negative float weights, of
// the logits' shape without the class axis ([N, H, W]). The loss is Σ w·H / Σ w (0 if Σ w = 0).
func (b *Builder) Mask(mask *Node) *Builder { b.mask = mask; return b }

// ScaleByTauSquared multiplies the loss by τ² (Hinton et al.'s convention; off by default).
func (b *Builder) ScaleByTauSquared(on bool) *Builder { b.tauSquared = on; return b }

// Done builds the scalar loss.
func (b *Builder) Done() *Node {
	s, t := b.student, b.teacher
	if !s.Shape().Equal(t.Shape()) || s.Rank() < 1 {
		exceptions.Panicf("distill: student logits %s and teacher logits %s must have the same shape [..., K]", s.Shape(), t.Shape())
	}
	if b.tau <= 0 {
		exceptions.Panicf("distill: temperature must be positive, got %g", b.tau)
	}
	p := Exp(LogSoftmax(DivScalar(StopGradient(t), b.tau), -1))
	logQ := LogSoftmax(DivScalar(s, b.tau), -1)
	h := Neg(ReduceSum(Mul(p, logQ), -1)) // per pixel
	var loss *Node
	if b.mask == nil {
		loss = ReduceAllMean(h)
	} else {
		w := b.mask
		if !w.Shape().EqualDimensions(h.Shape()) {
			exceptions.Panicf("distill: mask %s must have the logits' shape without the class axis, %v", w.Shape(), h.Shape().Dimensions)
		}
		w = ConvertDType(w, h.DType())
		total := ReduceAllSum(w)
		// With no selected pixel both sums are 0: divide by 1 instead.
		loss = Div(ReduceAllSum(Mul(w, h)), Where(IsZero(total), OnesLike(total), total))
	}
	if b.tauSquared {
		loss = MulScalar(loss, b.tau*b.tau)
	}
	return loss
}
