// Package seg holds the semantic segmentation losses: cross-entropy with an ignore label and
// the soft Dice loss, and their sum CE + 3.0 * Dice with which DreamTeacher trains its
// interpreter (BigDatasetGAN's recipe).
//
// Logits are [N, H, W, K] (any rank, classes last) and labels are integers of the logits' shape
// without the class axis. Pixels labelled IgnoreIndex (255) do not count. Labels outside
// [0, K) are ignored too (PyTorch raises an error for them; a graph cannot).
package seg

import (
	"slices"

	"github.com/dreamteacher-go/dreamteacher/losses"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/support/exceptions"
)

// IgnoreIndex is the label of pixels that do not count (mmseg's and PyTorch's convention).
const IgnoreIndex = 255

// DefaultDiceWeight is the weight of the Dice term in CEDice.
const DefaultDiceWeight = 3.0

// DefaultDiceSmooth is the smoothing term added to the Dice numerator and denominator (mmseg).
const DefaultDiceSmooth = 1.0

// Keys of the terms CEDice returns, besides losses.Total.
const (
	KeyCE   = "ce"
	KeyDice = "dice"
)

// CrossEntropy is the mean over the non-ignored pixels of -log softmax(logits)[label], as
// torch.nn.CrossEntropyLoss(ignore_index=ignoreIndex). With no valid pixel it is 0 (PyTorch
// gives NaN).
func CrossEntropy(logits, labels *Node, ignoreIndex int) *Node {
	valid, oneHot := targets("CrossEntropy", logits, labels, ignoreIndex)
	nll := Neg(ReduceSum(Mul(oneHot, LogSoftmax(logits, -1)), -1))
	return maskedMean(nll, valid)
}

// Dice is the multi-class soft Dice loss of mmsegmentation 0.x's DiceLoss (smooth 1, exponent
// 2), with p = softmax(logits) and t the one-hot labels: for each image n and class k,
//
//	dice_nk = 1 - (2 Σ_i p_ik t_ik + smooth) / (Σ_i (p_ik² + t_ik²) + smooth),
//
// sums over the image's non-ignored pixels i, averaged over classes and images. Unlike mmseg
// 0.x, ignored pixels are left out of the denominator too (mmseg masks only the numerator, so
// the predictions on ignored pixels would still count). A class absent from an image and
// predicted nowhere scores 0; predicted where absent, it costs up to 1.
func Dice(logits, labels *Node, ignoreIndex int, smooth float64) *Node {
	valid, oneHot := targets("Dice", logits, labels, ignoreIndex)
	p := Exp(LogSoftmax(logits, -1))
	mask := InsertAxes(ConvertDType(valid, logits.DType()), -1)
	p, oneHot = Mul(p, mask), Mul(oneHot, mask)
	// Sum over the pixels of each image: every axis but the first (batch) and the last (class).
	axes := make([]int, 0, logits.Rank()-2)
	for i := 1; i < logits.Rank()-1; i++ {
		axes = append(axes, i)
	}
	sum := func(x *Node) *Node {
		if len(axes) == 0 {
			return x
		}
		return ReduceSum(x, axes...)
	} // [N, K]
	num := AddScalar(MulScalar(sum(Mul(p, oneHot)), 2), smooth)
	den := AddScalar(sum(Add(Square(p), Square(oneHot))), smooth)
	return ReduceAllMean(OneMinus(Div(num, den)))
}

// CEDice is CrossEntropy + diceWeight * Dice (smooth 1), the interpreter's loss with
// diceWeight = DefaultDiceWeight (3.0). Terms: losses.Total, KeyCE, KeyDice.
func CEDice(logits, labels *Node, diceWeight float64, ignoreIndex int) losses.Terms {
	ce := CrossEntropy(logits, labels, ignoreIndex)
	dice := Dice(logits, labels, ignoreIndex, DefaultDiceSmooth)
	return losses.Terms{losses.Total: Add(ce, MulScalar(dice, diceWeight)), KeyCE: ce, KeyDice: dice}
}

// targets checks the shapes and returns the mask of valid pixels (bool, labels' shape) and the
// one-hot labels (logits' shape and dtype, zero on invalid pixels).
func targets(op string, logits, labels *Node, ignoreIndex int) (valid, oneHot *Node) {
	if logits.Rank() < 2 || !logits.DType().IsFloat() {
		exceptions.Panicf("%s: want float logits [N, ..., K], got %s", op, logits.Shape())
	}
	if !labels.DType().IsInt() {
		exceptions.Panicf("%s: labels must be integers, got %s", op, labels.Shape())
	}
	k := logits.Shape().Dim(-1)
	if !slices.Equal(labels.Shape().Dimensions, logits.Shape().Dimensions[:logits.Rank()-1]) {
		exceptions.Panicf("%s: labels %s must have the logits' shape %s without the class axis", op, labels.Shape(), logits.Shape())
	}
	g := labels.Graph()
	lab := ConvertDType(labels, dtypes.Int32)
	valid = And(NotEqual(lab, Scalar(g, dtypes.Int32, ignoreIndex)),
		And(GreaterOrEqual(lab, Scalar(g, dtypes.Int32, 0)), LessThan(lab, Scalar(g, dtypes.Int32, k))))
	safe := Where(valid, lab, ZerosLike(lab))
	oneHot = Mul(OneHot(safe, k, logits.DType()), InsertAxes(ConvertDType(valid, logits.DType()), -1))
	return valid, oneHot
}

// maskedMean is Σ valid·x / Σ valid, or 0 with no valid element.
func maskedMean(x, valid *Node) *Node {
	w := ConvertDType(valid, x.DType())
	total := ReduceAllSum(w)
	return Div(ReduceAllSum(Mul(w, x)), Where(IsZero(total), OnesLike(total), total))
}
