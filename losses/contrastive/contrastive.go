// Package contrastive is the InfoNCE loss of momentum contrast (MoCo, He et al. 2020, eq. 1;
// MoCo v2, Chen et al. 2020), the self-supervised baseline of the paper's tables:
//
//	L_q = -log  exp(q·k₊/τ) / ( exp(q·k₊/τ) + Σ_{i=1..K} exp(q·k_i/τ) )
//
// for a query q, its positive key k₊ (the key encoder's embedding of another view of the same
// image) and K negative keys k_i (the queue of earlier batches' keys), with temperature τ (0.2
// in MoCo v2, 0.07 in v1). It is a (K+1)-way softmax cross-entropy whose correct class is the
// positive: the logits are [q·k₊, q·k_1, ..., q·k_K] / τ, the positive at index 0 and the queue
// in its stored order after it, with label 0 (MoCo's builder.py).
//
// Choices the papers leave to the code, as MoCo's code makes them:
//
//   - The loss is the mean of L_q over the N queries of the batch.
//   - q, k₊ and the queue are expected L2-normalised (the encoders normalise their outputs
//     with GoMLX's L2Normalize), so the dot products are cosine similarities; the loss does not
//     normalise them again.
//   - Keys and queue are constants: no gradient flows into them (MoCo computes them under
//     torch.no_grad; the key encoder follows the query encoder by a momentum update instead).
//   - Only the batch's own positive counts as positive; the other keys of the batch are not
//     negatives for a query (they enter the queue after the step).
//
// Besides the loss, Loss reports "acc": the fraction of queries whose positive has the
// largest logit (MoCo's acc@1 of the instance-discrimination task), with no gradient.
package contrastive

import (
	"github.com/dreamteacher-go/dreamteacher/losses"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Temperatures of the papers.
const (
	MoCoV2Tau = 0.2
	MoCoV1Tau = 0.07
)

// KeyAcc is the key of the top-1 accuracy term of Loss.
const KeyAcc = "acc"

// Logits are the InfoNCE logits [N, 1+K] of queries q [N, D], their positive keys k [N, D] and
// the queue of negative keys [K, D]: column 0 is q_n·k_n/τ, column 1+i is q_n·queue_i/τ. Keys
// and queue get no gradient.
func Logits(q, k, queue *Node, tau float64) *Node {
	if q.Rank() != 2 || !q.Shape().Equal(k.Shape()) || queue.Rank() != 2 || queue.Shape().Dim(1) != q.Shape().Dim(1) {
		exceptions.Panicf("contrastive: queries %s and keys %s must be [N, D], the queue %s [K, D]", q.Shape(), k.Shape(), queue.Shape())
	}
	if !(tau > 0) {
		exceptions.Panicf("contrastive: temperature must be positive, got %g", tau)
	}
	k, queue = StopGradient(k), StopGradient(queue)
	pos := ReduceAndKeep(Mul(q, k), ReduceSum, -1)             // [N, 1]
	neg := Dot(q, queue).General([]int{1}, nil, []int{1}, nil) // [N, K]
	return DivScalar(Concatenate([]*Node{pos, ConvertDType(neg, q.DType())}, 1), tau)
}

// Loss is InfoNCE (see the package doc): losses.Total, the mean over the queries of the
// cross-entropy of the logits with label 0, and KeyAcc.
func Loss(q, k, queue *Node, tau float64) losses.Terms {
	logits := Logits(q, k, queue, tau)
	ce := Neg(Slice(LogSoftmax(logits, -1), AxisRange(), AxisRange(0, 1)))
	pos := StopGradient(Slice(logits, AxisRange(), AxisRange(0, 1)))
	rest := StopGradient(Slice(logits, AxisRange(), AxisRange(1)))
	hit := GreaterOrEqual(pos, ReduceAndKeep(rest, ReduceMax, -1))
	return losses.Terms{
		losses.Total: ReduceAllMean(ce),
		KeyAcc:       ReduceAllMean(ConvertDType(hit, q.DType())),
	}
}
