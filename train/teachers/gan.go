package teachers

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/models/biggan"
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/dreamteacher-go/dreamteacher/models/regressor"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/dreamteacher-go/dreamteacher/train/pretrain"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// GAN is a frozen BigGAN teacher, DreamTeacher's "synthesized dataset": GANs cannot encode real
// images, so each step samples latents, generates images and records the generator's
// multi-scale features; the student sees the generated images.
//
// The paper's GAN teacher is BigGAN trained on ImageNet, a class-conditional generator. The
// paper does not say which classes its synthesized dataset covers; ours: each image's class is
// drawn uniformly and independently (per image, per step, from the store's random generator,
// so a seeded run draws the same classes), over all the generator's classes by default, as
// BigGAN's own sampling and ImageNet's nearly balanced classes; Classes restricts the draw to
// a list (SetClasses; distillation's teacher_classes setting), e.g. the classes of a target
// domain. Unconditional generators take no classes.
type GAN struct {
	Config     biggan.Config
	Name       string // the BigGAN configuration's registered name
	Taps       []biggan.TapInfo
	Truncation float64 // > 0: latents from the normal truncated to ±Truncation
	// Classes, for a class-conditional generator, are the classes each synthesized image's
	// label is drawn from, uniformly (nil: all Config.NumClasses; see SetClasses).
	Classes    []int
	Checkpoint string
	FromScope  string // the scope holding the generator in the checkpoint (/generator)
}

// LoadGAN reads the teacher's configuration from its pre-training checkpoint's settings
// ("biggan" and "num_classes"; see pretrain.GANConfigOf), without loading its weights (Load
// does). taps empty means biggan.DefaultTaps. A conditional teacher draws its classes from
// all of them until SetClasses says otherwise.
func LoadGAN(ckpt, fromScope string, taps []string, truncation float64) (*GAN, error) {
	if st, err := os.Stat(ckpt); err == nil && st.IsDir() {
		last, ok, err := train.Latest(ckpt)
		if err != nil || !ok {
			return nil, fmt.Errorf("teacher %s: the folder holds no checkpoint (ckpt-*.safetensors)", ckpt)
		}
		ckpt = last.Path
	}
	settings, err := train.ReadSettings(ckpt)
	if err != nil {
		return nil, fmt.Errorf("teacher: %w", err)
	}
	cfg, name, err := pretrain.GANConfigOf(settings)
	if err != nil {
		return nil, fmt.Errorf("teacher %s: %w", ckpt, err)
	}
	if len(taps) == 0 {
		taps = biggan.DefaultTaps(cfg)
	}
	t := &GAN{Config: cfg, Name: name, Truncation: truncation, Checkpoint: ckpt, FromScope: fromScope}
	for _, tap := range taps {
		info, err := biggan.LookupTap(cfg, tap)
		if err != nil {
			return nil, fmt.Errorf("taps: %w", err)
		}
		t.Taps = append(t.Taps, info)
	}
	return t, nil
}

// SetClasses restricts a conditional teacher's classes to the given ones (each image's class
// drawn uniformly from them; a class listed twice is drawn twice as often); empty means all.
// It is an error for a class outside the generator's, or for any class with an unconditional
// generator.
func (t *GAN) SetClasses(classes []int) error {
	if err := biggan.CheckClasses(classes, t.Config.NumClasses); err != nil {
		return fmt.Errorf("teacher %s (biggan %s): %w", t.Checkpoint, t.Name, err)
	}
	t.Classes = slices.Clone(classes)
	if len(classes) == 0 {
		t.Classes = nil
	}
	return nil
}

// IsGAN reports whether the checkpoint is a BigGAN teacher's (its settings name a "biggan").
func IsGAN(ckpt string) bool {
	if st, err := os.Stat(ckpt); err == nil && st.IsDir() {
		last, ok, _ := train.Latest(ckpt)
		if !ok {
			return false
		}
		ckpt = last.Path
	}
	settings, err := train.ReadSettings(ckpt)
	if err != nil {
		return false
	}
	_, ok := settings["biggan"]
	return ok
}

// Generate samples n latents (and, for a conditional generator, n classes: see GAN) with the
// store's RNG and returns the generated images in [0, 1] and the generator's features by tap
// name, without gradient, the generator frozen (its BatchNorms with their running statistics).
func (t *GAN) Generate(scope *model.Scope, g *Graph, n int, like *Node) (images *Node, feats map[string]*Node) {
	images, feats, _ = t.GenerateWithLabels(scope, g, n, like)
	return images, feats
}

// GenerateWithLabels is Generate that also returns the classes [n] (int32) of the images (nil
// for an unconditional generator).
func (t *GAN) GenerateWithLabels(scope *model.Scope, g *Graph, n int, like *Node) (images *Node, feats map[string]*Node, labels *Node) {
	nn.Freeze(scope)
	names := make([]string, len(t.Taps))
	for i, tap := range t.Taps {
		names[i] = tap.Name
	}
	z := biggan.SampleZ(scope, g, like.DType(), n, t.Config.DimZ, t.Truncation)
	if t.Config.Conditional() {
		labels = biggan.SampleLabelsFrom(scope, g, n, t.Config.NumClasses, t.Classes)
	}
	out := biggan.Generate(scope.In("generator"), z, labels, t.Config, names...)
	feats = make(map[string]*Node, len(names))
	for _, name := range names {
		feats[name] = StopGradient(out.Taps[name])
	}
	return StopGradient(MulScalar(AddScalar(out.Image, 1), 0.5)), feats, labels
}

// Load copies the generator's weights into the store under Scope/generator (strictly) and
// freezes every variable under Scope.
func (t *GAN) Load(store *model.Store) error {
	return loadFrozen(store, t.Checkpoint, t.FromScope, Scope+"/generator")
}

// Targets are the regressor's outputs that predict the generator's taps.
func (t *GAN) Targets() []regressor.Target {
	r := t.Config.Resolution
	out := make([]regressor.Target, len(t.Taps))
	for i, tap := range t.Taps {
		out[i] = regressor.Target{Name: TargetName(tap.Name), Channels: tap.Channels, Height: r / tap.Stride, Width: r / tap.Stride}
	}
	return out
}

// Describe says which teacher this is, for logs.
func (t *GAN) Describe() string {
	s := make([]string, len(t.Taps))
	for i, tap := range t.Taps {
		s[i] = fmt.Sprintf("%s (%d ch, stride %d)", tap.Name, tap.Channels, tap.Stride)
	}
	classes := ""
	switch {
	case t.Config.Conditional() && t.Classes == nil:
		classes = fmt.Sprintf(", classes uniform over all %d", t.Config.NumClasses)
	case t.Config.Conditional():
		classes = fmt.Sprintf(", classes uniform over %v", t.Classes)
	}
	return fmt.Sprintf("GAN teacher %s from %s (%s), taps %s%s", t.Name, t.Checkpoint, t.FromScope, strings.Join(s, ", "), classes)
}
