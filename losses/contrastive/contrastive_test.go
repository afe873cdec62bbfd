package contrastive

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

func t64(dims []int, data ...float64) *tensors.Tensor {
	return tensors.FromFlatDataAndDimensions(data, dims...)
}

// Two queries, their keys and a queue of three, τ = 0.5:
//
//	q0 = (1, 0), k0 = (0.6, 0.8): logits (0.6 | 1, 0, 0.8) / 0.5 = (1.2 | 2, 0, 1.6)
//	q1 = (0, 1), k1 = (0, 1):     logits (1 | 0, -1, 0.6) / 0.5  = (2 | 0, -2, 1.2)
var (
	q     = t64([]int{2, 2}, 1, 0, 0, 1)
	k     = t64([]int{2, 2}, 0.6, 0.8, 0, 1)
	queue = t64([]int{3, 2}, 1, 0, 0, -1, 0.8, 0.6)
	want  = [][]float64{{1.2, 2, 0, 1.6}, {2, 0, -2, 1.2}}
)

func ce0(row []float64) float64 {
	sum := 0.0
	for _, v := range row {
		sum += math.Exp(v)
	}
	return -(row[0] - math.Log(sum))
}

// TestHandComputed: the positive is column 0, the queue follows in its order, and the loss is
// the cross-entropy with label 0 averaged over the queries.
func TestHandComputed(t *testing.T) {
	out := MustExecOnceN(backend.Go(), func(q, k, queue *Node) []*Node {
		terms := Loss(q, k, queue, 0.5)
		return []*Node{Logits(q, k, queue, 0.5), terms[losses.Total], terms[KeyAcc]}
	}, q, k, queue)
	logits := out[0].Value().([][]float64)
	for n := range want {
		for j := range want[n] {
			if math.Abs(logits[n][j]-want[n][j]) > 1e-12 {
				t.Errorf("logit [%d][%d] = %g, want %g", n, j, logits[n][j], want[n][j])
			}
		}
	}
	wantLoss := (ce0(want[0]) + ce0(want[1])) / 2
	if got := out[1].Value().(float64); math.Abs(got-wantLoss) > 1e-12 {
		t.Errorf("loss %.15g, want %.15g", got, wantLoss)
	}
	// Query 0's positive (1.2) loses to a negative (2); query 1's (2) wins.
	if got := out[2].Value().(float64); got != 0.5 {
		t.Errorf("acc %g, want 0.5", got)
	}
}

// TestPerfectAndUniform: with the positive far above every negative the loss goes to 0; with
// all logits equal it is log(K+1).
func TestPerfectAndUniform(t *testing.T) {
	lossOf := func(q, k, queue *tensors.Tensor, tau float64) float64 {
		return MustExecOnce(backend.Go(), func(q, k, queue *Node) *Node { return Loss(q, k, queue, tau)[losses.Total] }, q, k, queue).Value().(float64)
	}
	one := t64([]int{1, 2}, 1, 0)
	orth := t64([]int{4, 2}, 0, 1, 0, -1, 0, 1, 0, -1)
	if got := lossOf(one, one, orth, 0.01); got > 1e-40 {
		t.Errorf("positive 1, negatives 0 at τ = 0.01: loss %g, want ~0", got)
	}
	if got := lossOf(one, t64([]int{1, 2}, 0, 1), orth, 1); math.Abs(got-math.Log(5)) > 1e-12 {
		t.Errorf("all logits 0: loss %g, want log 5", got)
	}
}

// TestGradients: the gradient with respect to the queries matches finite differences in
// float64; keys and queue get none.
func TestGradients(t *testing.T) {
	qq, kk, qu := gradcheck.RandomTensor(1, 3, 4), gradcheck.RandomTensor(2, 3, 4), gradcheck.RandomTensor(3, 5, 4)
	gradcheck.Check(t, gradcheck.Options{Inputs: []int{0}}, func(_ *model.Scope, in []*Node) *Node {
		return Loss(in[0], in[1], in[2], MoCoV2Tau)[losses.Total]
	}, qq, kk, qu)
	// Through the encoders' normalisation, as the recipe computes it.
	gradcheck.Check(t, gradcheck.Options{Inputs: []int{0}}, func(_ *model.Scope, in []*Node) *Node {
		return Loss(L2Normalize(in[0], -1), L2Normalize(in[1], -1), L2Normalize(in[2], -1), MoCoV2Tau)[losses.Total]
	}, qq, kk, qu)
	grads := MustExecOnceN(backend.Go(), func(q, k, queue *Node) []*Node {
		return Gradient(Loss(q, k, queue, MoCoV2Tau)[losses.Total], k, queue)
	}, qq, kk, qu)
	for i, g := range grads {
		for _, v := range tensors.MustCopyFlatData[float64](g) {
			if v != 0 {
				t.Fatalf("gradient %d (keys, queue) is not zero: %v", i, g)
			}
		}
	}
}
