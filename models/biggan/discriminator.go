package biggan

import (
	"slices"

	"github.com/dreamteacher-go/dreamteacher/models/nn"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Discriminate builds BigGAN's discriminator of cfg under scope (by convention the root's
// DiscriminatorScope) on images x [N, Resolution, Resolution, 3] and, for a conditional
// configuration, labels y [N] (nil without classes). It returns the logits [N]: the SN linear
// output on the ReLU'd, sum-pooled features h, plus <embed(y), h> (projection discrimination)
// with classes.
func Discriminate(scope *model.Scope, x, y *Node, cfg Config) *Node {
	if err := cfg.Validate(); err != nil {
		exceptions.Panicf("biggan.Discriminate at %q: %v", scope.Scope(), err)
	}
	r := cfg.Resolution
	if x.Rank() != 4 || x.Shape().Dim(1) != r || x.Shape().Dim(2) != r || x.Shape().Dim(3) != 3 || !x.DType().IsFloat() {
		exceptions.Panicf("biggan discriminator at %q: want float images [N, %d, %d, 3], got %s", scope.Scope(), r, r, x.Shape())
	}
	n := x.Shape().Dim(0)
	if cfg.Conditional() != (y != nil) {
		exceptions.Panicf("biggan discriminator at %q: %d classes need labels y [N] (nil without classes), got %v",
			scope.Scope(), cfg.NumClasses, y)
	}
	if y != nil && (y.Rank() != 1 || y.Shape().Dim(0) != n || !y.DType().IsInt()) {
		exceptions.Panicf("biggan discriminator at %q: want integer labels y [%d], got %s", scope.Scope(), n, y.Shape())
	}
	// Variables are found by path: calling again under the same scope (e.g. once on real and
	// once on generated images) reuses them.
	scope = scope.ResetVisited()
	o := cfg.layerOptions()
	h := x
	blocks := scope.In("blocks")
	for i := range cfg.DChannels {
		bs := blocks.In("block%d", i)
		_, out := cfg.DBlockChannels(i)
		h = dBlock(bs, h, out, i > 0, cfg.DDownsample[i], o)
		if slices.Contains(cfg.DAttention, h.Shape().Dim(1)) {
			h = attention(bs.In("attention"), h, o)
		}
	}
	// Global sum pooling, as SN-GAN.
	feats := ReduceSum(nn.ReLU(h), 1, 2) // [N, C]
	logits := Reshape(linear(scope.In("linear"), feats, 1, true, o), n)
	if y != nil {
		e := embedding(scope.In("embed"), y, cfg.NumClasses, feats.Shape().Dim(1), x.DType(), true, o)
		logits = Add(logits, ReduceSum(Mul(e, feats), 1))
	}
	return logits
}
