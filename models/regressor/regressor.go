// Package regressor is DreamTeacher's feature regressor: it maps a backbone's levels C2..C5 to
// the teacher's feature taps, which the student is trained to match (losses/feature).
//
// The architecture is the paper's "FPN+PPM" (the best of its ablation), i.e. mmsegmentation's
// UPerHead without the final fusion:
//
//   - PPM on the coarsest level (C5): for each bin scale 1, 2, 3, 6, adaptive average pooling,
//     1x1 conv + BN + ReLU, bilinear up-sampling back; the branches are concatenated with C5 and
//     fused by a 3x3 conv + BN + ReLU (the "bottleneck") to Width channels;
//   - FPN top-down path: 1x1 lateral conv + BN + ReLU on C2..C4, the PPM output as the top
//     lateral; from the top, each lateral adds the bilinear up-sampled one above it; a 3x3
//     conv + BN + ReLU on each level but the top. Outputs P2..P5, Width (256) channels;
//   - per teacher tap, a 1x1 conv (with bias) from the matching P level to the tap's channels,
//     bilinearly resized to the tap's size when the sizes differ.
//
// PPM and FPN are exported for the UperNet segmentation head, which adds the fusion of all
// levels and a classifier on top of them. Convolutions followed by BN have no bias and use
// mmcv ConvModule's init (kaiming normal, fan_out); resizes are bilinear with
// align_corners=False, as mmseg's UPerHead.
//
// Variables under the regressor's scope:
//
//	ppm/pool1/conv, ppm/pool1/bn, ..., ppm/pool6/{conv,bn}, ppm/bottleneck/{conv,bn}
//	fpn/lateral_convs/C2/{conv,bn}, ..., fpn/fpn_convs/C2/{conv,bn}, ...
//	proj/<target name>
package regressor

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// DefaultPoolScales are PSPNet's and UperNet's bin sizes.
var DefaultPoolScales = []int{1, 2, 3, 6}

// DefaultWidth is the number of channels of the PPM and FPN.
const DefaultWidth = 256

// Target is one teacher feature tap that the regressor predicts.
type Target struct {
	// Name of the output (and of its projection's scope): a scope name, so no "/".
	Name string
	// Level is the backbone level the tap is regressed from ("C2".."C5"). Empty means the level
	// whose spatial size is nearest to the tap's (in log scale; finer on ties).
	Level string
	// Channels, Height and Width of the teacher's map [N, Height, Width, Channels].
	Channels, Height, Width int
}

// Builder builds a regressor; create it with New.
type Builder struct {
	scope      *model.Scope
	feats      backbones.Features
	targets    []Target
	width      int
	poolScales []int
	ppm        bool
}

// New creates a regressor from the backbone's features to the teacher's targets, with the
// paper's defaults: PPM with bins 1, 2, 3, 6 on the coarsest level, FPN, 256 channels.
func New(scope *model.Scope, feats backbones.Features, targets []Target) *Builder {
	return &Builder{scope: scope, feats: feats, targets: targets, width: DefaultWidth,
		poolScales: DefaultPoolScales, ppm: true}
}

// Width sets the channels of the PPM and FPN (256).
func (b *Builder) Width(w int) *Builder { b.width = w; return b }

// PoolScales sets the PPM's bin sizes (1, 2, 3, 6).
func (b *Builder) PoolScales(scales ...int) *Builder { b.poolScales = scales; return b }

// PPM enables or disables the pyramid pooling module (enabled); without it the top of the FPN
// is a 1x1 lateral conv on the coarsest level, the paper's "FPN" ablation.
func (b *Builder) PPM(enabled bool) *Builder { b.ppm = enabled; return b }

// Output of the regressor.
type Output struct {
	// Targets are the predictions by Target.Name, each [N, Height, Width, Channels].
	Targets map[string]*Node
	// Pyramid are the FPN outputs P2..P5 (Width channels), e.g. for a logit head.
	Pyramid backbones.Features
}

// Done builds the regressor and returns the predictions by Target.Name.
func (b *Builder) Done() map[string]*Node { return b.Build().Targets }

// Build builds the regressor and returns the predictions and the pyramid.
func (b *Builder) Build() Output {
	if len(b.feats.Info) == 0 {
		exceptions.Panicf("regressor at %q: no backbone features", b.scope.Scope())
	}
	if len(b.targets) == 0 {
		exceptions.Panicf("regressor at %q: no targets", b.scope.Scope())
	}
	if b.width <= 0 {
		exceptions.Panicf("regressor at %q: width must be positive, got %d", b.scope.Scope(), b.width)
	}
	var top *Node
	if b.ppm {
		top = PPM(b.scope.In("ppm"), b.feats.Last(), b.poolScales, b.width)
	}
	pyramid := FPN(b.scope.In("fpn"), b.feats, top, b.width)

	out := Output{Targets: map[string]*Node{}, Pyramid: pyramid}
	proj := b.scope.In("proj")
	for _, t := range b.targets {
		if t.Name == "" || strings.Contains(t.Name, "/") {
			exceptions.Panicf("regressor at %q: target name %q must be a non-empty scope name", b.scope.Scope(), t.Name)
		}
		if _, dup := out.Targets[t.Name]; dup {
			exceptions.Panicf("regressor at %q: two targets named %q", b.scope.Scope(), t.Name)
		}
		if t.Channels <= 0 || t.Height <= 0 || t.Width <= 0 {
			exceptions.Panicf("regressor at %q: target %+v needs positive channels and size", b.scope.Scope(), t)
		}
		level := t.Level
		if level == "" {
			level = nearestLevel(b.feats, t.Height, t.Width)
		}
		idx := slices.IndexFunc(b.feats.Info, func(i backbones.Info) bool { return i.Name == level })
		if idx < 0 {
			exceptions.Panicf("regressor at %q: target %q wants level %q, the backbone has %s",
				b.scope.Scope(), t.Name, level, strings.Join(b.feats.Names(), ", "))
		}
		out.Targets[t.Name] = project(proj.In("%s", t.Name), pyramid.Get(pyramid.Info[idx].Name), t)
	}
	return out
}

// project maps x [N, h, w, width] to the target [N, Height, Width, Channels] with a 1x1 conv and,
// if the sizes differ, a bilinear resize. Both are linear and the resize's weights sum to one,
// so they commute; the resize runs on whichever side has fewer channels.
func project(scope *model.Scope, x *Node, t Target) *Node {
	resize := x.Shape().Dim(1) != t.Height || x.Shape().Dim(2) != t.Width
	if resize && x.Shape().Dim(3) <= t.Channels {
		x = nn.ResizeBilinear(x, t.Height, t.Width)
		resize = false
	}
	y := nn.Conv(scope, x, t.Channels).Done()
	if resize {
		y = nn.ResizeBilinear(y, t.Height, t.Width)
	}
	return y
}

// nearestLevel is the level whose spatial size is nearest to h x w in log scale.
func nearestLevel(feats backbones.Features, h, w int) string {
	best, bestDist := "", math.Inf(1)
	for _, info := range feats.Info {
		m := feats.Maps[info.Name]
		d := math.Abs(math.Log(float64(m.Shape().Dim(1))/float64(h))) + math.Abs(math.Log(float64(m.Shape().Dim(2))/float64(w)))
		if d < bestDist-1e-9 {
			best, bestDist = info.Name, d
		}
	}
	return best
}

// ConvBNReLU is mmcv's ConvModule with BatchNorm and ReLU: a k x k convolution with padding k/2
// and no bias ("conv", kaiming normal fan_out init), BatchNorm ("bn"), ReLU.
func ConvBNReLU(scope *model.Scope, x *Node, out, k int) *Node {
	y := nn.Conv(scope.In("conv"), x, out).Kernel(k).Padding(k / 2).Bias(false).Init(nn.KaimingNormalFanOut).Done()
	return nn.ReLU(nn.BatchNorm(scope.In("bn"), y).Done())
}

// PPM is the pyramid pooling module of PSPNet as UperNet uses it, on x [N, H, W, C] (the
// coarsest backbone level): for each scale s, adaptive average pooling to s x s, a 1x1
// ConvBNReLU to `channels` ("pool<s>") and a bilinear resize back to H x W; then x and the
// branches are concatenated and fused by a 3x3 ConvBNReLU to `channels` ("bottleneck").
// Returns [N, H, W, channels].
//
// While training, BatchNorm needs more than one value per channel: the 1x1 bin of scale 1
// needs a batch of at least 2.
func PPM(scope *model.Scope, x *Node, scales []int, channels int) *Node {
	if x.Rank() != 4 {
		exceptions.Panicf("PPM at %q: want x [N, H, W, C], got %s", scope.Scope(), x.Shape())
	}
	h, w := x.Shape().Dim(1), x.Shape().Dim(2)
	branches := []*Node{x}
	for _, s := range scales {
		if s <= 0 {
			exceptions.Panicf("PPM at %q: bin scales must be positive, got %v", scope.Scope(), scales)
		}
		y := ConvBNReLU(scope.In("pool%d", s), nn.AdaptiveAvgPool2D(x, s), channels, 1)
		branches = append(branches, nn.ResizeBilinear(y, h, w))
	}
	return ConvBNReLU(scope.In("bottleneck"), Concatenate(branches, 3), channels, 3)
}

// FPN is the top-down path of a feature pyramid network with BN+ReLU convolutions (mmseg's
// UPerHead): 1x1 lateral ConvBNReLU on every level ("lateral_convs/<level>"), except the
// coarsest when top (its already-processed map, e.g. the PPM's, with `channels` channels) is
// given; from the coarsest down, each lateral adds the bilinear resize of the one above; a 3x3
// ConvBNReLU ("fpn_convs/<level>") on every level but the coarsest, which is passed through.
//
// Returns the pyramid, finest first, with `channels` channels and the input strides, its levels
// named after the inputs with C replaced by P (C2 -> P2).
func FPN(scope *model.Scope, feats backbones.Features, top *Node, channels int) backbones.Features {
	n := len(feats.Info)
	if n == 0 {
		exceptions.Panicf("FPN at %q: no input levels", scope.Scope())
	}
	coarsest := feats.Info[n-1]
	if top != nil {
		want := feats.Maps[coarsest.Name].Shape()
		if top.Rank() != 4 || top.Shape().Dim(1) != want.Dim(1) || top.Shape().Dim(2) != want.Dim(2) || top.Shape().Dim(3) != channels {
			exceptions.Panicf("FPN at %q: top %s must be [N, %d, %d, %d] (the size of %s)",
				scope.Scope(), top.Shape(), want.Dim(1), want.Dim(2), channels, coarsest.Name)
		}
	}
	laterals := make([]*Node, n)
	lateralScope := scope.In("lateral_convs")
	for i, info := range feats.Info {
		if i == n-1 && top != nil {
			laterals[i] = top
			continue
		}
		laterals[i] = ConvBNReLU(lateralScope.In("%s", info.Name), feats.Maps[info.Name], channels, 1)
	}
	for i := n - 1; i > 0; i-- {
		below := laterals[i-1].Shape()
		laterals[i-1] = Add(laterals[i-1], nn.ResizeBilinear(laterals[i], below.Dim(1), below.Dim(2)))
	}
	var out backbones.Features
	fpnScope := scope.In("fpn_convs")
	for i, info := range feats.Info {
		y := laterals[i]
		if i < n-1 {
			y = ConvBNReLU(fpnScope.In("%s", info.Name), y, channels, 3)
		}
		out.Add(backbones.Info{Name: pyramidName(info.Name), Channels: channels, Stride: info.Stride}, y)
	}
	return out
}

// pyramidName is "P2" for "C2"; other names get a "P" prefix.
func pyramidName(level string) string {
	if rest, ok := strings.CutPrefix(level, "C"); ok {
		return "P" + rest
	}
	return fmt.Sprintf("P%s", level)
}
