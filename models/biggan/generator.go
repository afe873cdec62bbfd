package biggan

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// TapInfo describes a generator feature map (a teacher feature of DreamTeacher).
type TapInfo struct {
	Name     string
	Channels int
	Stride   int // output-image pixels per feature pixel
}

// GeneratorOutput is what the generator returns.
type GeneratorOutput struct {
	// Image is the generated image [N, Resolution, Resolution, 3] in [-1, 1].
	Image *Node
	// Taps are the requested feature maps by name, each [N, R/stride, R/stride, channels].
	Taps map[string]*Node
	// TapInfo describes the taps, in the order requested.
	TapInfo []TapInfo
}

// TapNames lists the generator's feature maps, coarsest first, named by their stride relative
// to the output image: "g_s<stride>".
//
//   - The coarsest, stride Resolution/BottomWidth, is the linear layer's output reshaped to a
//     map (the input of GBlock 0);
//   - each following one is the output of a GBlock (after its non-local block, if any), the
//     last at stride 1 (the input of the output layer).
//
// At 128 px they are g_s32 (the 4x4 projection, 16*ch channels), g_s16, g_s8, g_s4, g_s2,
// g_s1 (the outputs of GBlocks 0..4).
func TapNames(cfg Config) []string {
	infos := tapInfos(cfg)
	names := make([]string, len(infos))
	for i, info := range infos {
		names[i] = info.Name
	}
	return names
}

func tapName(stride int) string { return fmt.Sprintf("g_s%d", stride) }

// tapInfos describes every tap: index 0 is the projection, index i+1 GBlock i's output.
func tapInfos(cfg Config) []TapInfo {
	infos := make([]TapInfo, 0, len(cfg.GChannels))
	for i, m := range cfg.GChannels {
		stride := cfg.Resolution / (cfg.BottomWidth << i)
		infos = append(infos, TapInfo{Name: tapName(stride), Channels: cfg.GCh * m, Stride: stride})
	}
	return infos
}

// LookupTap describes the named tap, or returns an error listing the valid names.
func LookupTap(cfg Config, name string) (TapInfo, error) {
	for _, info := range tapInfos(cfg) {
		if info.Name == name {
			return info, nil
		}
	}
	return TapInfo{}, fmt.Errorf("biggan: unknown generator feature tap %q; the valid taps of this configuration are: %s",
		name, strings.Join(TapNames(cfg), ", "))
}

// DefaultTaps are DreamTeacher's teacher features: the four coarsest maps of stride at most
// 32, the strides of a backbone's C5..C2. At 128 and 256 px: g_s32, g_s16, g_s8, g_s4; at
// 32 px (biggan_tiny): g_s8, g_s4, g_s2, g_s1.
func DefaultTaps(cfg Config) []string {
	var taps []string
	for _, info := range tapInfos(cfg) {
		if info.Stride <= 32 && len(taps) < 4 {
			taps = append(taps, info.Name)
		}
	}
	return taps
}

// Generator builds BigGAN's generator; create it with NewGenerator.
type Generator struct {
	scope *model.Scope
	cfg   Config
	taps  []string
	opts  layerOptions
}

// NewGenerator prepares a generator of configuration cfg under scope (by convention the root's
// GeneratorScope), tapping DefaultTaps. It panics if cfg is invalid. Done builds it.
func NewGenerator(scope *model.Scope, cfg Config) *Generator {
	if err := cfg.Validate(); err != nil {
		exceptions.Panicf("biggan.NewGenerator at %q: %v", scope.Scope(), err)
	}
	return &Generator{scope: scope, cfg: cfg, taps: DefaultTaps(cfg), opts: cfg.layerOptions()}
}

// Taps selects the feature maps to return, by name (see TapNames); with no names, none. An
// unknown name panics with the list of the valid ones.
func (gen *Generator) Taps(names ...string) *Generator {
	for _, n := range names {
		if _, err := LookupTap(gen.cfg, n); err != nil {
			exceptions.Panicf("%v", err)
		}
	}
	gen.taps = slices.Clone(names)
	return gen
}

// TapInfo describes the selected taps without building anything.
func (gen *Generator) TapInfo() []TapInfo {
	infos := make([]TapInfo, len(gen.taps))
	for i, n := range gen.taps {
		infos[i], _ = LookupTap(gen.cfg, n)
	}
	return infos
}

// Done builds the generator on latents z [N, DimZ] (float; the variables take its dtype) and,
// for a conditional configuration, class labels y [N] (integers in [0, NumClasses)); y must be
// nil for an unconditional one. In training mode BatchNorm uses batch statistics and spectral
// norm runs its power iteration; in eval mode both use their stored state.
func (gen *Generator) Done(z, y *Node) GeneratorOutput {
	// Variables are found by path: building again under the same scope reuses them.
	cfg, scope, o := gen.cfg, gen.scope.ResetVisited(), gen.opts
	if z.Rank() != 2 || z.Shape().Dim(1) != cfg.DimZ || !z.DType().IsFloat() {
		exceptions.Panicf("biggan generator at %q: want float latents z [N, %d], got %s", scope.Scope(), cfg.DimZ, z.Shape())
	}
	n := z.Shape().Dim(0)
	if cfg.Conditional() != (y != nil) {
		exceptions.Panicf("biggan generator at %q: %d classes need labels y [N] (nil without classes), got %v",
			scope.Scope(), cfg.NumClasses, y)
	}
	if y != nil && (y.Rank() != 1 || y.Shape().Dim(0) != n || !y.DType().IsInt()) {
		exceptions.Panicf("biggan generator at %q: want integer labels y [%d], got %s", scope.Scope(), n, y.Shape())
	}

	// The condition of each GBlock: [shared class embedding, z chunk i+1] (hierarchical), the
	// embedding alone, the z chunk alone (unconditional hierarchical), or none (plain BN).
	var shared *Node
	if y != nil {
		shared = embedding(scope.In("shared"), y, cfg.NumClasses, cfg.sharedDim(), z.DType(), false, o)
	}
	chunk := cfg.ZChunk()
	zChunk := func(i int) *Node { return Slice(z, AxisRange(), AxisRange(i*chunk, (i+1)*chunk)) }
	conds := make([]*Node, cfg.NumGBlocks())
	for i := range conds {
		var parts []*Node
		if shared != nil {
			parts = append(parts, shared)
		}
		if cfg.Hier {
			parts = append(parts, zChunk(i+1))
		}
		if len(parts) > 0 {
			conds[i] = Concatenate(parts, 1)
		}
	}

	infos := tapInfos(cfg)
	out := GeneratorOutput{Taps: map[string]*Node{}, TapInfo: gen.TapInfo()}
	record := func(level int, h *Node) {
		if slices.Contains(gen.taps, infos[level].Name) {
			out.Taps[infos[level].Name] = h
		}
	}

	// The linear projection to a BottomWidth map, laid out as the reference's
	// view(N, C, bw, bw) so that PyTorch weights keep their meaning.
	bw, c0 := cfg.BottomWidth, cfg.GCh*cfg.GChannels[0]
	h := linear(scope.In("linear"), zChunk(0), c0*bw*bw, true, o)
	h = TransposeAllAxes(Reshape(h, n, c0, bw, bw), 0, 2, 3, 1)
	record(0, h)
	blocks := scope.In("blocks")
	for i := range cfg.NumGBlocks() {
		bs := blocks.In("block%d", i)
		_, outCh := cfg.GBlockChannels(i)
		h = gBlock(bs, h, conds[i], outCh, o)
		if slices.Contains(cfg.GAttention, h.Shape().Dim(1)) {
			h = attention(bs.In("attention"), h, o)
		}
		record(i+1, h)
	}
	output := scope.In("output")
	h = nn.ReLU(nn.BatchNorm(output.In("bn"), h).Epsilon(o.bnEps).Done())
	out.Image = Tanh(conv(output.In("conv"), h, 3, 3, true, o))
	return out
}

// Generate builds the generator of cfg under scope on latents z [N, DimZ] and labels y [N]
// (nil when unconditional) and returns the image in [-1, 1] with the named feature maps taps
// (DefaultTaps when none are given; see TapNames).
func Generate(scope *model.Scope, z, y *Node, cfg Config, taps ...string) GeneratorOutput {
	gen := NewGenerator(scope, cfg)
	if len(taps) > 0 {
		gen.Taps(taps...)
	}
	return gen.Done(z, y)
}

// SampleZ draws n latent vectors [n, dim] of dtype dt with the store's random generator: from
// the standard normal, or, with truncation ψ > 0, from the normal truncated to [-ψ, ψ] (BigGAN's
// truncation trick: values outside are resampled; here drawn exactly by inverting the CDF).
// Smaller ψ trades variety for fidelity. (BigGAN-PyTorch's sample.py instead scales the
// variance, and TF-Hub's BigGAN samples truncnorm(-2, 2) * ψ.)
func SampleZ(scope *model.Scope, g *Graph, dt dtypes.DType, n, dim int, truncation float64) *Node {
	shape := shapes.Make(dt, n, dim)
	if truncation <= 0 {
		return scope.RandomNormal(g, shape)
	}
	// z = sqrt(2) erfinv(u), u uniform in (-erf(ψ/√2), erf(ψ/√2)).
	a := math.Erf(truncation / math.Sqrt2)
	u := scope.RandomUniform(g, shapes.Make(dtypes.Float64, n, dim)) // [0, 1)
	u = MulScalar(AddScalar(MulScalar(u, 2), -1), a)
	zv := ClipScalar(MulScalar(erfInv(u), math.Sqrt2), -truncation, truncation)
	return ConvertDType(zv, dt)
}

// SampleLabels draws n class labels [n] (int32) uniformly in [0, numClasses).
func SampleLabels(scope *model.Scope, g *Graph, n, numClasses int) *Node {
	u := scope.RandomUniform(g, shapes.Make(dtypes.Float64, n))
	y := ConvertDType(Floor(MulScalar(u, float64(numClasses))), dtypes.Int32)
	return MinScalar(y, float64(numClasses-1))
}

// SampleLabelsFrom draws n class labels [n] (int32) uniformly from classes (each listed class
// with probability 1/len(classes); a class listed twice, twice as often). Empty classes draws
// from [0, numClasses) (SampleLabels). It panics on a class outside [0, numClasses).
func SampleLabelsFrom(scope *model.Scope, g *Graph, n, numClasses int, classes []int) *Node {
	if err := CheckClasses(classes, numClasses); err != nil {
		exceptions.Panicf("biggan.SampleLabelsFrom at %q: %v", scope.Scope(), err)
	}
	if len(classes) == 0 {
		return SampleLabels(scope, g, n, numClasses)
	}
	table := make([]int32, len(classes))
	for i, c := range classes {
		table[i] = int32(c)
	}
	idx := SampleLabels(scope, g, n, len(classes))
	return Gather(Const(g, table), InsertAxes(idx, -1))
}

// CheckClasses says whether every class is in [0, numClasses) (numClasses 0: an unconditional
// model takes no classes).
func CheckClasses(classes []int, numClasses int) error {
	if len(classes) > 0 && numClasses == 0 {
		return fmt.Errorf("classes %v given to an unconditional generator", classes)
	}
	for _, c := range classes {
		if c < 0 || c >= numClasses {
			return fmt.Errorf("class %d is not in [0, %d)", c, numClasses)
		}
	}
	return nil
}
