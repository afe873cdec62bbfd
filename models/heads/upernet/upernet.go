// Package upernet is the UperNet semantic segmentation head (Xiao et al. 2018) as
// mmsegmentation's UPerHead, with its auxiliary FCN head: a pyramid pooling module on the
// coarsest level, an FPN top-down path, the fusion of all pyramid levels at the finest stride,
// and a 1x1 classifier. It works on any registered backbone's features.
//
// Variables under the head's scope: psp/..., lateral_convs/..., fpn_convs/... (shared with the
// DreamTeacher regressor's PPM and FPN), fpn_bottleneck/{conv,bn}, conv_seg/{weights,biases},
// and auxiliary/{convs/{conv,bn}, conv_seg}.
package upernet

import (
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/dreamteacher-go/dreamteacher/models/regressor"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// Config of the head; the zero value of a field means mmseg's upernet_r50 default.
type Config struct {
	Channels    int     // width of the PPM, FPN and fusion (512)
	PoolScales  []int   // PPM bins (1, 2, 3, 6)
	Dropout     float64 // before the classifier (0.1)
	AuxLevel    string  // level of the auxiliary FCN head ("C4"); "-" disables it
	AuxChannels int     // width of the auxiliary head (256)
}

func (c Config) withDefaults() Config {
	if c.Channels == 0 {
		c.Channels = 512
	}
	if len(c.PoolScales) == 0 {
		c.PoolScales = regressor.DefaultPoolScales
	}
	if c.Dropout == 0 {
		c.Dropout = 0.1
	}
	if c.AuxLevel == "" {
		c.AuxLevel = "C4"
	}
	if c.AuxChannels == 0 {
		c.AuxChannels = 256
	}
	return c
}

// Output of the head.
type Output struct {
	// Logits at the finest level's stride (usually 4): [N, H/4, W/4, classes].
	Logits *Node
	// AuxLogits of the auxiliary FCN head at its level's stride, nil when disabled.
	AuxLogits *Node
	// Stride of Logits and AuxStride of AuxLogits, in input pixels.
	Stride, AuxStride int
}

// Build builds the head on the backbone's features for numClasses classes. The auxiliary head
// is only built while training (mmseg uses it for its loss only).
func Build(scope *model.Scope, feats backbones.Features, numClasses int, cfg Config) Output {
	cfg = cfg.withDefaults()
	if len(feats.Info) == 0 {
		exceptions.Panicf("upernet at %q: the backbone returned no features", scope.Scope())
	}
	top := feats.Last()
	psp := regressor.PPM(scope.In("psp"), top, cfg.PoolScales, cfg.Channels)
	pyramid := regressor.FPN(scope, feats, psp, cfg.Channels)

	finest := pyramid.Maps[pyramid.Info[0].Name]
	h, w := finest.Shape().Dim(1), finest.Shape().Dim(2)
	parts := make([]*Node, len(pyramid.Info))
	for i, info := range pyramid.Info {
		parts[i] = nn.ResizeBilinear(pyramid.Maps[info.Name], h, w)
	}
	fused := regressor.ConvBNReLU(scope.In("fpn_bottleneck"), Concatenate(parts, 3), cfg.Channels, 3)
	out := Output{Logits: classifier(scope, fused, numClasses, cfg.Dropout), Stride: pyramid.Info[0].Stride}

	if cfg.AuxLevel != "-" && nn.IsTraining(scope, top.Graph()) {
		x := feats.Get(cfg.AuxLevel)
		aux := scope.In("auxiliary")
		y := regressor.ConvBNReLU(aux.In("convs"), x, cfg.AuxChannels, 3)
		out.AuxLogits = classifier(aux, y, numClasses, cfg.Dropout)
		for _, info := range feats.Info {
			if info.Name == cfg.AuxLevel {
				out.AuxStride = info.Stride
			}
		}
	}
	return out
}

// classifier is mmseg's cls_seg: dropout then a 1x1 conv with normal(0, 0.01) weights and zero
// bias.
func classifier(scope *model.Scope, x *Node, numClasses int, dropout float64) *Node {
	x = nn.Dropout(scope, x, dropout)
	return nn.Conv(scope.In("conv_seg"), x, numClasses).Init(normal001).BiasInit(nn.ZeroInit).Done()
}

func normal001(scope *model.Scope, _, _ int) model.VariableInitializer {
	return func(g *Graph, shape shapes.Shape) *Node { return MulScalar(scope.RandomNormal(g, shape), 0.01) }
}
