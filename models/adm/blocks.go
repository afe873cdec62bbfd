package adm

import (
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// groupNormEps is torch.nn.GroupNorm's default epsilon, which guided-diffusion's GroupNorm32 keeps.
const groupNormEps = 1e-5

// Resample says whether a residual block changes the resolution.
type Resample int

const (
	NoResample Resample = iota
	Down                // 2x2 average pooling of both branches (guided-diffusion's ResBlock(down=True))
	Up                  // nearest 2x up-sampling of both branches (ResBlock(up=True))
)

// BlockOptions are the settings shared by the blocks of one UNet.
type BlockOptions struct {
	NormGroups        int     // GroupNorm groups (32)
	Dropout           float64 // before the last conv of a residual block, while training
	UseScaleShiftNorm bool    // FiLM conditioning on the time embedding
	// NoZeroInit initialises the convs that guided-diffusion zero-initialises (last conv of each
	// residual block, attention projection, output conv) like any other conv. Only gradient
	// checks use it: with zeros there, the gradients upstream are zero.
	NoZeroInit bool
}

func (c Config) blockOptions() BlockOptions {
	return BlockOptions{NormGroups: c.normGroups(), Dropout: c.Dropout, UseScaleShiftNorm: c.UseScaleShiftNorm}
}

func conv3x3(scope *model.Scope, x *Node, out int, zero bool) *Node {
	b := nn.Conv(scope, x, out).Kernel(3).Padding(1)
	if zero {
		b.ZeroInit()
	}
	return b.Done()
}

// ResBlock is guided-diffusion's residual block on x [N, H, W, C] conditioned on the embedding
// emb [N, E]:
//
//	h = in_conv(resample(SiLU(in_norm(x))))
//	h = out_norm(h)*(1+scale)+shift, (scale, shift) = emb_proj(SiLU(emb))      (scale-shift norm)
//	    or out_norm(h + emb_proj(SiLU(emb)))                                    (otherwise)
//	h = out_conv(dropout(SiLU(h)))                                              (zero-initialised)
//	return skip(resample(x)) + h
//
// skip is the identity when the width does not change, a 1x1 conv otherwise. Scopes: in_norm,
// in_conv, emb_proj, out_norm, out_conv, skip.
func ResBlock(scope *model.Scope, x, emb *Node, out int, resample Resample, opts BlockOptions) *Node {
	if x.Rank() != 4 || emb.Rank() != 2 || emb.Shape().Dim(0) != x.Shape().Dim(0) {
		exceptions.Panicf("adm.ResBlock at %q: want x [N,H,W,C] and emb [N,E], got %s and %s", scope.Scope(), x.Shape(), emb.Shape())
	}
	in := x.Shape().Dim(3)
	h := nn.SiLU(nn.GroupNorm(scope.In("in_norm"), x, opts.NormGroups, groupNormEps))
	switch resample {
	case Down:
		h, x = avgPool2x(h), avgPool2x(x)
	case Up:
		h, x = nn.UpsampleNearest(h, 2), nn.UpsampleNearest(x, 2)
	}
	h = conv3x3(scope.In("in_conv"), h, out, false)

	embWidth := out
	if opts.UseScaleShiftNorm {
		embWidth = 2 * out
	}
	embOut := nn.Linear(scope.In("emb_proj"), nn.SiLU(emb), embWidth).Done() // [N, embWidth]
	if opts.UseScaleShiftNorm {
		scale := Slice(embOut, AxisRange(), AxisRange(0, out))
		shift := Slice(embOut, AxisRange(), AxisRange(out, 2*out))
		h = nn.FiLM(nn.GroupNorm(scope.In("out_norm"), h, opts.NormGroups, groupNormEps), scale, shift)
	} else {
		h = Add(h, Reshape(embOut, embOut.Shape().Dim(0), 1, 1, out))
		h = nn.GroupNorm(scope.In("out_norm"), h, opts.NormGroups, groupNormEps)
	}
	h = nn.Dropout(scope, nn.SiLU(h), opts.Dropout)
	h = conv3x3(scope.In("out_conv"), h, out, !opts.NoZeroInit)

	if in != out {
		x = nn.Conv(scope.In("skip"), x, out).Done()
	}
	return Add(x, h)
}

// AttentionBlock is guided-diffusion's self-attention over the H*W positions of x [N, H, W, C]
// with a residual connection: x + proj(attention(qkv(norm(x)))), heads heads, the legacy qkv
// channel order, and the projection zero-initialised. Scopes: norm, qkv, proj.
func AttentionBlock(scope *model.Scope, x *Node, heads int, opts BlockOptions) *Node {
	if x.Rank() != 4 {
		exceptions.Panicf("adm.AttentionBlock at %q: want x [N,H,W,C], got %s", scope.Scope(), x.Shape())
	}
	n, hh, ww, c := x.Shape().Dim(0), x.Shape().Dim(1), x.Shape().Dim(2), x.Shape().Dim(3)
	seq := Reshape(x, n, hh*ww, c)
	a := nn.SelfAttention(scope, nn.GroupNorm(scope.In("norm"), seq, opts.NormGroups, groupNormEps), heads, !opts.NoZeroInit)
	return Reshape(Add(seq, a), n, hh, ww, c)
}

// Downsample halves the resolution: a 3x3 stride-2 conv (scope "conv") with useConv, else 2x2
// average pooling.
func Downsample(scope *model.Scope, x *Node, useConv bool) *Node {
	if useConv {
		return nn.Conv(scope.In("conv"), x, x.Shape().Dim(3)).Kernel(3).Stride(2).Padding(1).Done()
	}
	return avgPool2x(x)
}

// Upsample doubles the resolution: nearest, then a 3x3 conv (scope "conv") with useConv.
func Upsample(scope *model.Scope, x *Node, useConv bool) *Node {
	x = nn.UpsampleNearest(x, 2)
	if useConv {
		x = conv3x3(scope.In("conv"), x, x.Shape().Dim(3), false)
	}
	return x
}

// avgPool2x is 2x2 average pooling with stride 2 as a reshape and a mean.
func avgPool2x(x *Node) *Node {
	n, h, w, c := x.Shape().Dim(0), x.Shape().Dim(1), x.Shape().Dim(2), x.Shape().Dim(3)
	if h%2 != 0 || w%2 != 0 {
		exceptions.Panicf("adm: cannot halve a %dx%d feature map", h, w)
	}
	return ReduceMean(Reshape(x, n, h/2, 2, w/2, 2, c), 2, 4)
}

// TimeEmbedding is guided-diffusion's time_embed: the sinusoidal embedding of the timesteps t [N]
// (model channels wide, max period 10000) through Linear, SiLU, Linear to [N, dim]. Scopes:
// linear0, linear1.
func TimeEmbedding(scope *model.Scope, t *Node, modelChannels, dim int) *Node {
	e := nn.TimestepEmbedding(t, modelChannels, 10000)
	e = nn.SiLU(nn.Linear(scope.In("linear0"), e, dim).Done())
	return nn.Linear(scope.In("linear1"), e, dim).Done()
}

// LabelEmbedding looks up the class labels y [N] (integers in [0, numClasses)) in a learned table
// "embeddings" [numClasses, dim], initialised N(0, 1) as torch.nn.Embedding. It is a one-hot
// matrix product, whose gradient every backend has.
func LabelEmbedding(scope *model.Scope, y *Node, numClasses, dim int, like *Node) *Node {
	if y.Rank() != 1 {
		exceptions.Panicf("adm.LabelEmbedding at %q: want labels [N], got %s", scope.Scope(), y.Shape())
	}
	init := func(g *Graph, shape shapes.Shape) *Node { return scope.RandomNormal(g, shape) }
	table := scope.WithInitializer(init).VariableWithShape("embeddings", shapes.Make(like.DType(), numClasses, dim))
	return Dot(OneHot(y, numClasses, like.DType()), table.NodeValue(y.Graph())).Product()
}
