package seg

import (
	"math"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	"github.com/dreamteacher-go/dreamteacher/losses"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// One image of three pixels, two classes:
//
//	pixel 0: logits (0, ln 3) -> p = (1/4, 3/4), label 1
//	pixel 1: logits (0, 0)    -> p = (1/2, 1/2), label 0
//	pixel 2: logits (5, -2),     label 255 (ignored)
var (
	logits1 = tensors.FromFlatDataAndDimensions([]float64{0, math.Log(3), 0, 0, 5, -2}, 1, 1, 3, 2)
	labels1 = tensors.FromFlatDataAndDimensions([]int32{1, 0, 255}, 1, 1, 3)
	ce1     = -(math.Log(0.75) + math.Log(0.5)) / 2
	// Class 0: p = (1/4, 1/2), t = (0, 1): (2·1/2 + 1) / ((1/16 + 1/4) + 1 + 1).
	// Class 1: p = (3/4, 1/2), t = (1, 0): (2·3/4 + 1) / ((9/16 + 1/4) + 1 + 1).
	dice1 = ((1 - 2/2.3125) + (1 - 2.5/2.8125)) / 2
)

func eval(t *testing.T, fn func(logits, labels *Node) *Node, logits, labels *tensors.Tensor) float64 {
	t.Helper()
	return MustExecOnce(backend.Go(), fn, logits, labels).Value().(float64)
}

func TestHandComputed(t *testing.T) {
	// A second image whose labels are all ignored (255) or out of range (7): it adds nothing to
	// the cross-entropy and a Dice of 0 (averaged over two images: half of dice1).
	logits2 := tensors.FromFlatDataAndDimensions([]float64{0, math.Log(3), 0, 0, 5, -2, 1, 2, 3, 4, 5, 6}, 2, 1, 3, 2)
	labels2 := tensors.FromFlatDataAndDimensions([]int32{1, 0, 255, 255, 7, 255}, 2, 1, 3)
	allIgnored := tensors.FromFlatDataAndDimensions([]int32{255, 255, 255}, 1, 1, 3)
	for _, tc := range []struct {
		name           string
		fn             func(logits, labels *Node) *Node
		logits, labels *tensors.Tensor
		want           float64
	}{
		{"ce", func(x, y *Node) *Node { return CrossEntropy(x, y, IgnoreIndex) }, logits1, labels1, ce1},
		{"dice", func(x, y *Node) *Node { return Dice(x, y, IgnoreIndex, 1) }, logits1, labels1, dice1},
		{"ce/ignored-image", func(x, y *Node) *Node { return CrossEntropy(x, y, IgnoreIndex) }, logits2, labels2, ce1},
		{"dice/ignored-image", func(x, y *Node) *Node { return Dice(x, y, IgnoreIndex, 1) }, logits2, labels2, dice1 / 2},
		{"ce/all-ignored", func(x, y *Node) *Node { return CrossEntropy(x, y, IgnoreIndex) }, logits1, allIgnored, 0},
		{"cedice", func(x, y *Node) *Node { return CEDice(x, y, DefaultDiceWeight, IgnoreIndex).Loss() }, logits1, labels1, ce1 + 3*dice1},
		{"cedice/ce", func(x, y *Node) *Node { return CEDice(x, y, DefaultDiceWeight, IgnoreIndex)[KeyCE] }, logits1, labels1, ce1},
		{"cedice/dice", func(x, y *Node) *Node { return CEDice(x, y, DefaultDiceWeight, IgnoreIndex)[KeyDice] }, logits1, labels1, dice1},
		{"ce/other-ignore", func(x, y *Node) *Node { return CrossEntropy(x, y, 0) }, logits1,
			tensors.FromFlatDataAndDimensions([]int32{1, 0, 0}, 1, 1, 3), -math.Log(0.75)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := eval(t, tc.fn, tc.logits, tc.labels); math.Abs(got-tc.want) > 1e-12 {
				t.Errorf("got %.15g, want %.15g", got, tc.want)
			}
		})
	}
}

// TestCrossEntropyMatchesPyTorch: F.cross_entropy(logits, labels, ignore_index=255) on
// logits = sin(0.7 i) over [N=2, K=3, H=1, W=2] (NCHW flat index i) and labels [[2, 255], [0, 1]],
// computed with Debian's /usr/bin/python3 (torch 1.13), float64: 1.5358369034403.
func TestCrossEntropyMatchesPyTorch(t *testing.T) {
	nchw := make([]float64, 12)
	for i := range nchw {
		nchw[i] = math.Sin(0.7 * float64(i))
	}
	nhwc := make([]float64, 12) // [2, 1, 2, 3]
	for n := range 2 {
		for k := range 3 {
			for w := range 2 {
				nhwc[n*6+w*3+k] = nchw[n*6+k*2+w]
			}
		}
	}
	logits := tensors.FromFlatDataAndDimensions(nhwc, 2, 1, 2, 3)
	labels := tensors.FromFlatDataAndDimensions([]int32{2, 255, 0, 1}, 2, 1, 2)
	got := eval(t, func(x, y *Node) *Node { return CrossEntropy(x, y, IgnoreIndex) }, logits, labels)
	if want := 1.5358369034403; math.Abs(got-want) > 1e-12 {
		t.Errorf("got %.15g, PyTorch %.15g", got, want)
	}
}

func TestGradients(t *testing.T) {
	logits := gradcheck.RandomTensor(1, 2, 3, 4, 5)
	raw := tensors.MustCopyFlatData[float64](gradcheck.RandomTensor(2, 2, 3, 4))
	lab := make([]int32, len(raw))
	for i, v := range raw {
		lab[i] = int32((v + 1) * 2.6) // 0..5: 5 is out of range (ignored)
		if i%7 == 3 {
			lab[i] = IgnoreIndex
		}
	}
	labels := tensors.FromFlatDataAndDimensions(lab, 2, 3, 4)
	for name, fn := range map[string]func(x, y *Node) *Node{
		"ce":     func(x, y *Node) *Node { return CrossEntropy(x, y, IgnoreIndex) },
		"dice":   func(x, y *Node) *Node { return Dice(x, y, IgnoreIndex, 1) },
		"cedice": func(x, y *Node) *Node { return CEDice(x, y, DefaultDiceWeight, IgnoreIndex)[losses.Total] },
	} {
		t.Run(name, func(t *testing.T) {
			gradcheck.Check(t, gradcheck.Options{}, func(_ *model.Scope, in []*Node) *Node { return fn(in[0], in[1]) }, logits, labels)
		})
	}
}
