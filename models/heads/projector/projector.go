// Package projector is the MLP projection head of the Siamese self-supervised methods: it maps
// a backbone's pooled features to the space where the contrastive (or BYOL) loss compares two
// views, and is thrown away after pre-training (only the backbone is fine-tuned).
//
// MoCo v2 (Chen et al. 2020, "Improved baselines with momentum contrastive learning"): a
// 2-layer MLP, fc(C → hidden) + ReLU + fc(hidden → out), with hidden = C, the backbone's
// pooled width (MoCo's builder sets dim_mlp to the replaced fc's input: 2048 for ResNet-50, 512
// for ResNet-18) and out = 128. BYOL (Grill et al. 2020) puts BatchNorm between the fc and the
// ReLU, hidden 4096, out 256: BatchNorm(true) and Hidden(4096) build it. Linear layers have
// PyTorch's default initialisation and biases, as in both references, except the fc before a
// BatchNorm, whose bias the BatchNorm cancels (zero gradient; SimSiam leaves it out likewise).
//
// Variables: "fc1/weights", "fc1/biases" (not with BatchNorm), "bn/...", "fc2/weights",
// "fc2/biases".
package projector

import (
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Builder of the head; create it with New.
type Builder struct {
	scope  *model.Scope
	x      *Node
	out    int
	hidden int
	bn     bool
}

// New creates the head on pooled features x [N, C] with out outputs (MoCo v2: 128).
func New(scope *model.Scope, x *Node, out int) *Builder {
	return &Builder{scope: scope, x: x, out: out}
}

// Hidden sets the width of the hidden layer (0, the default: C, the input's width).
func (b *Builder) Hidden(h int) *Builder { b.hidden = h; return b }

// BatchNorm puts a BatchNorm after the hidden fc (BYOL's head; MoCo v2's has none).
func (b *Builder) BatchNorm(on bool) *Builder { b.bn = on; return b }

// Done builds the head: [N, out].
func (b *Builder) Done() *Node {
	x := b.x
	if x.Rank() != 2 || b.out < 1 || b.hidden < 0 {
		exceptions.Panicf("projector at %q: want pooled features [N, C] and out >= 1, got %s, out %d, hidden %d",
			b.scope.Scope(), x.Shape(), b.out, b.hidden)
	}
	hidden := b.hidden
	if hidden == 0 {
		hidden = x.Shape().Dim(1)
	}
	h := nn.Linear(b.scope.In("fc1"), x, hidden).Bias(!b.bn).Done()
	if b.bn {
		h = nn.BatchNorm(b.scope.In("bn"), h).Done()
	}
	return nn.Linear(b.scope.In("fc2"), nn.ReLU(h), b.out).Done()
}
