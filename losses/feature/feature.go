// Package feature is DreamTeacher's feature-distillation loss between the regressor's outputs
// f_r^l and the teacher's features f_g^l at L levels (PAPER.md, "Student", "Losses"):
//
//	L_feat = L_MSE + λ_AT L_AT,  λ_AT = 10
//	L_MSE  = (1/L) Σ_l || f_r^l - LN(f_g^l) ||²
//	L_AT   = (1/L) Σ_l || Q_r^l/||Q_r^l||₂ - Q_g^l/||Q_g^l||₂ ||₂,  Q = vec(Σ_c |A_c|²)
//
// LN is a LayerNorm over channels without learned parameters (eps 1e-5, PyTorch's default):
// the whitening of the teacher's features. Reductions, which the paper leaves open:
//
//   - MSE: the mean over the N·H·W·C elements of each level (PyTorch's F.mse_loss, not the
//     squared norm the formula writes, so that levels of different sizes weigh the same), then
//     the mean over levels.
//   - AT: attention transfer of Zagoruyko & Komodakis with p = 2: per example, the spatial map
//     Q = Σ_c A_c² is flattened and L2-normalised, and the loss is the L2 norm (not squared) of
//     the difference of student and teacher maps, in [0, 2]; then the mean over the batch and
//     over levels. (Their code uses the mean of the squared difference instead; we follow the
//     papers' formula.) AT compares the student with the RAW teacher features: after LN every
//     pixel has Σ_c LN(f)_c² = C, a flat attention map that would carry no information.
//
// The teacher is frozen: gradients do not flow into its features.
package feature

import (
	"maps"
	"slices"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/losses"
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Defaults of Config.
const (
	DefaultATWeight = 10.0
	DefaultLNEps    = 1e-5
)

// Keys of the terms Loss returns, besides losses.Total: the level means, and per level
// "mse/<level>" and "at/<level>".
const (
	KeyMSE = "mse"
	KeyAT  = "at"
)

// Config of the feature-distillation loss.
type Config struct {
	// ATWeight is λ_AT, the weight of the attention-transfer term (10; 0 trains on MSE only,
	// the AT term is still reported).
	ATWeight float64
	// LNEps is the epsilon of the teacher's LayerNorm (1e-5).
	LNEps float64
}

// DefaultConfig is the paper's: λ_AT = 10.
func DefaultConfig() Config { return Config{ATWeight: DefaultATWeight, LNEps: DefaultLNEps} }

// Loss is L_feat over the levels present in both maps (which must have the same keys and, per
// key, the same shape [N, H, W, C]). It returns losses.Total = L_MSE + λ_AT L_AT, KeyMSE,
// KeyAT, and the per-level terms "mse/<level>", "at/<level>".
func Loss(student, teacher map[string]*Node, cfg Config) losses.Terms {
	if len(student) == 0 {
		exceptions.Panicf("feature.Loss: no levels")
	}
	sk, tk := slices.Sorted(maps.Keys(student)), slices.Sorted(maps.Keys(teacher))
	if !slices.Equal(sk, tk) {
		exceptions.Panicf("feature.Loss: student levels [%s] differ from teacher levels [%s]",
			strings.Join(sk, ", "), strings.Join(tk, ", "))
	}
	if cfg.LNEps == 0 {
		cfg.LNEps = DefaultLNEps
	}
	terms := losses.Terms{}
	var mse, at *Node
	for _, level := range sk {
		s, t := student[level], teacher[level]
		if !s.Shape().Equal(t.Shape()) {
			exceptions.Panicf("feature.Loss: level %q: student %s and teacher %s differ (resize the student's prediction to the teacher's tap)",
				level, s.Shape(), t.Shape())
		}
		m, a := MSE(s, t, cfg.LNEps), AT(s, t)
		terms[KeyMSE+"/"+level], terms[KeyAT+"/"+level] = m, a
		if mse == nil {
			mse, at = m, a
		} else {
			mse, at = Add(mse, m), Add(at, a)
		}
	}
	l := float64(len(sk))
	mse, at = DivScalar(mse, l), DivScalar(at, l)
	terms[KeyMSE], terms[KeyAT] = mse, at
	terms[losses.Total] = Add(mse, MulScalar(at, cfg.ATWeight))
	return terms
}

// MSE of one level: the mean over all elements of (student - LN(teacher))², LN over the last
// (channel) axis without parameters.
func MSE(student, teacher *Node, lnEps float64) *Node {
	checkSameShape("MSE", student, teacher)
	target := nn.LayerNormNoParams(StopGradient(teacher), lnEps)
	return ReduceAllMean(Square(Sub(student, target)))
}

// AttentionMap of x [N, ..., C]: Q = Σ_c x_c² over the last axis, flattened per example to
// [N, positions] and L2-normalised (a zero map stays zero).
func AttentionMap(x *Node) *Node {
	if x.Rank() < 2 {
		exceptions.Panicf("AttentionMap: want x [N, ..., C], got %s", x.Shape())
	}
	q := Reshape(ReduceSum(Square(x), -1), x.Shape().Dim(0), -1)
	norm := safeSqrt(ReduceAndKeep(Square(q), ReduceSum, 1))
	return Div(q, Where(IsZero(norm), OnesLike(norm), norm))
}

// AT of one level: the mean over the batch of || AttentionMap(student) - AttentionMap(teacher) ||₂.
// Student and teacher may have different channel counts, not different spatial sizes.
func AT(student, teacher *Node) *Node {
	if student.Rank() != teacher.Rank() || student.Shape().Dim(0) != teacher.Shape().Dim(0) ||
		!slices.Equal(student.Shape().Dimensions[1:student.Rank()-1], teacher.Shape().Dimensions[1:teacher.Rank()-1]) {
		exceptions.Panicf("AT: student %s and teacher %s must have the same batch and spatial sizes", student.Shape(), teacher.Shape())
	}
	d := Sub(AttentionMap(student), AttentionMap(StopGradient(teacher)))
	return ReduceAllMean(safeSqrt(ReduceSum(Square(d), 1)))
}

// safeSqrt is the square root of x >= 0 with a zero (sub)gradient at 0, where Sqrt's is infinite
// (and would turn into NaN when multiplied by the zero gradient of x).
func safeSqrt(x *Node) *Node {
	zero := IsZero(x)
	return Where(zero, ZerosLike(x), Sqrt(Where(zero, OnesLike(x), x)))
}

func checkSameShape(op string, a, b *Node) {
	if !a.Shape().Equal(b.Shape()) {
		exceptions.Panicf("%s: student %s and teacher %s must have the same shape", op, a.Shape(), b.Shape())
	}
}
