package biggan

import (
	"fmt"
	"strings"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// SamplerOptions configure a Sampler.
type SamplerOptions struct {
	// BatchSize is the number of images per Sample (required).
	BatchSize int
	// Truncation > 0 samples z from the normal truncated to ±Truncation (see SampleZ).
	Truncation float64
	// Taps are the generator feature maps to return (nil: DefaultTaps; see TapNames).
	Taps []string
	// Classes, for a conditional generator, are the classes each image's label is drawn from,
	// uniformly (nil: all NumClasses; see SampleLabelsFrom).
	Classes []int
	// Training runs G with batch statistics in its BatchNorms and updates its running
	// statistics and spectral-norm vectors, as the reference samples without --G_eval_mode.
	// By default G runs in eval mode and changes nothing.
	Training bool
	// UseEMA samples with the exponential moving average of G's weights that GAN training
	// keeps under "/ema/generator" (train/pretrain; the reference's --use_ema). G's running statistics and
	// spectral-norm vectors, which are not averaged, are copied there before each sample.
	UseEMA bool
	// DType of the latents, the weights and the outputs (default Float32).
	DType dtypes.DType
}

// Sample is one batch of DreamTeacher's "synthesized dataset".
type Sample struct {
	Images  *tensors.Tensor            // [N, R, R, 3] in [-1, 1]
	Labels  *tensors.Tensor            // [N] int32 class labels (nil without classes)
	Taps    map[string]*tensors.Tensor // the generator feature maps by name
	TapInfo []TapInfo                  // in the order requested
}

// Sampler draws images and generator features from a (trained) generator in its own compiled
// graph: latents (and labels) are sampled inside it with the store's random generator. This is
// DreamTeacher's GAN teacher: a GAN cannot encode real images, so each student step takes a
// fresh Sample, on the fly. Keeping the teacher out of the student's training graph keeps it in
// eval mode (the training flag is per graph) and out of the optimiser.
type Sampler struct {
	cfg   Config
	opts  SamplerOptions
	store *model.Store
	exec  *model.Exec
	info  []TapInfo
}

// NewSampler prepares a sampler of cfg's generator, whose variables are under the root's
// GeneratorScope of store (or its EMA). The graph compiles at the first Sample.
func NewSampler(b compute.Backend, store *model.Store, cfg Config, opts SamplerOptions) (*Sampler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.BatchSize <= 0 {
		return nil, fmt.Errorf("biggan.NewSampler: BatchSize must be positive, got %d", opts.BatchSize)
	}
	if err := CheckClasses(opts.Classes, cfg.NumClasses); err != nil {
		return nil, fmt.Errorf("biggan.NewSampler: %w", err)
	}
	if opts.DType == dtypes.InvalidDType {
		opts.DType = dtypes.Float32
	}
	if opts.Taps == nil {
		opts.Taps = DefaultTaps(cfg)
	}
	s := &Sampler{cfg: cfg, opts: opts, store: store}
	for _, name := range opts.Taps {
		info, err := LookupTap(cfg, name)
		if err != nil {
			return nil, err
		}
		s.info = append(s.info, info)
	}
	var err error
	s.exec, err = model.NewExec(b, store, s.graph)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Sampler) graph(scope *model.Scope, g *Graph) []*Node {
	s.store.SetTraining(g, s.opts.Training)
	n := s.opts.BatchSize
	z := SampleZ(scope, g, s.opts.DType, n, s.cfg.DimZ, s.opts.Truncation)
	var y *Node
	if s.cfg.Conditional() {
		y = SampleLabelsFrom(scope, g, n, s.cfg.NumClasses, s.opts.Classes)
	}
	gs := scope
	if s.opts.UseEMA {
		gs = scope.In("ema")
	}
	out := NewGenerator(gs.In(GeneratorScope), s.cfg).Taps(s.opts.Taps...).Done(z, y)
	res := []*Node{out.Image}
	if y != nil {
		res = append(res, y)
	}
	for _, name := range s.opts.Taps {
		res = append(res, out.Taps[name])
	}
	return res
}

// TapInfo describes the taps each Sample returns.
func (s *Sampler) TapInfo() []TapInfo { return s.info }

// Sample draws one batch.
func (s *Sampler) Sample() (Sample, error) {
	if s.opts.UseEMA {
		if err := s.copyBuffersToEMA(); err != nil {
			return Sample{}, err
		}
	}
	outs, err := s.exec.Exec()
	if err != nil {
		return Sample{}, err
	}
	smp := Sample{Images: outs[0], Taps: map[string]*tensors.Tensor{}, TapInfo: s.info}
	outs = outs[1:]
	if s.cfg.Conditional() {
		smp.Labels, outs = outs[0], outs[1:]
	}
	for i, name := range s.opts.Taps {
		smp.Taps[name] = outs[i]
	}
	return smp, nil
}

// copyBuffersToEMA copies G's non-trainable variables that the EMA does not average (BN
// running statistics, spectral-norm vectors) to their place under "/ema".
func (s *Sampler) copyBuffersToEMA() error {
	prefix := "/" + GeneratorScope + "/"
	var found bool
	for v := range s.store.IterVariables() {
		path := v.Path()
		if !strings.HasPrefix(path, prefix) {
			continue
		}
		if v.Trainable {
			found = found || s.store.GetVariable("/ema"+path) != nil
			continue
		}
		value, err := v.Value()
		if err != nil {
			return err
		}
		c, err := value.LocalClone()
		if err != nil {
			return err
		}
		if ema := s.store.GetVariable("/ema" + path); ema != nil {
			if err := ema.SetValue(c); err != nil {
				return err
			}
		} else if _, err := s.store.CreateVariable("/ema"+path, c); err != nil {
			return err
		} else {
			s.store.GetVariable("/ema" + path).SetTrainable(false)
		}
	}
	if !found {
		return fmt.Errorf("biggan.Sampler: UseEMA, but the store has no EMA of %s (train with an EMA decay > 0)", prefix)
	}
	return nil
}
