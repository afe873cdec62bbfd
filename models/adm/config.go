package adm

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Config describes a guided-diffusion UNet (the knobs of guided_diffusion/unet.py's UNetModel).
type Config struct {
	// ImageSize is the side, in pixels, the configuration is designed for (guided-diffusion's
	// image_size). It is the unit of AttentionResolutions and the default input size; the network
	// itself accepts any input whose sides are multiples of 2^(len(ChannelMult)-1).
	ImageSize int
	// InputHeight and InputWidth are the default input size when it is not ImageSize x ImageSize
	// (BDD100K's 128x256); 0 means ImageSize.
	InputHeight, InputWidth int

	InChannels int // image channels (3)
	// OutChannels are the channels of the predicted noise (3). With LearnSigma the last conv
	// outputs 2*OutChannels: the noise, then the variance values.
	OutChannels int

	ModelChannels int   // base width (guided-diffusion's num_channels / model_channels)
	ChannelMult   []int // width multiplier of each level; level l works at stride 2^l
	NumResBlocks  int   // residual blocks per encoder level (the decoder has one more)

	// AttentionResolutions lists feature-map sides, IN PIXELS AT ImageSize, where attention blocks
	// are inserted, as guided-diffusion's command-line flag: 32,16,8 at ImageSize 256 puts
	// attention at downsample rates 8, 16 and 32 (levels 3, 4 and 5). The rates, not the pixel
	// sides, stay fixed when the input size differs from ImageSize. See AttentionRates.
	AttentionResolutions []int
	// NumHeads is the number of attention heads, used when NumHeadChannels is 0.
	NumHeads int
	// NumHeadChannels > 0 fixes the width of a head instead (heads = channels / NumHeadChannels).
	NumHeadChannels int

	UseScaleShiftNorm bool // FiLM conditioning: norm(h)*(1+scale)+shift instead of h+emb
	ResblockUpdown    bool // residual blocks that down/up-sample instead of plain (conv) resampling
	// ConvResample uses a 3x3 stride-2 conv to down-sample and nearest+3x3 conv to up-sample when
	// ResblockUpdown is false (guided-diffusion's conv_resample, default true); without it,
	// 2x2 average pooling and plain nearest up-sampling.
	ConvResample bool
	LearnSigma   bool    // output the variance values too (2*OutChannels channels)
	Dropout      float64 // in the residual blocks, while training
	NumClasses   int     // > 0: class-conditional with a learned label embedding; 0: unconditional

	// NormGroups is the number of GroupNorm groups (guided-diffusion: always 32). 0 means 32;
	// only tests change it, to gradient-check narrow networks.
	NormGroups int
}

// Configs are the registered configurations, by name. Each one's comment says where it comes from.
var Configs = map[string]Config{
	// The official ImageNet 256x256 unconditional model (256x256_diffusion_uncond.pt), the teacher of
	// DreamTeacher's ImageNet experiments. Flags of guided-diffusion's README ("256x256 model
	// (unconditional)"): --attention_resolutions 32,16,8 --class_cond False --diffusion_steps 1000
	// --image_size 256 --learn_sigma True --noise_schedule linear --num_channels 256
	// --num_head_channels 64 --num_res_blocks 2 --resblock_updown True --use_fp16 True
	// --use_scale_shift_norm True; channel_mult is create_model's default at 256: 1,1,2,2,4,4.
	// The README gives no --dropout for this model (default 0.0; the LSUN models were trained with
	// 0.1, see adm_256x256_lsun). 552,814,086 parameters, as guided-diffusion's create_model.
	"adm_256x256_uncond": {
		ImageSize: 256, InChannels: 3, OutChannels: 3, ModelChannels: 256,
		ChannelMult: []int{1, 1, 2, 2, 4, 4}, NumResBlocks: 2, AttentionResolutions: []int{32, 16, 8},
		NumHeadChannels: 64, UseScaleShiftNorm: true, ResblockUpdown: true, ConvResample: true,
		LearnSigma: true,
	},
	// The class-conditional ImageNet 256x256 model (256x256_diffusion.pt): as above, 1000 classes.
	"adm_256x256_cond": {
		ImageSize: 256, InChannels: 3, OutChannels: 3, ModelChannels: 256,
		ChannelMult: []int{1, 1, 2, 2, 4, 4}, NumResBlocks: 2, AttentionResolutions: []int{32, 16, 8},
		NumHeadChannels: 64, UseScaleShiftNorm: true, ResblockUpdown: true, ConvResample: true,
		LearnSigma: true, NumClasses: 1000,
	},
	// The LSUN 256x256 models of guided-diffusion (lsun_bedroom.pt, ...): the 256x256 architecture
	// with --dropout 0.1. DreamTeacher's LSUN/FFHQ teachers.
	"adm_256x256_lsun": {
		ImageSize: 256, InChannels: 3, OutChannels: 3, ModelChannels: 256,
		ChannelMult: []int{1, 1, 2, 2, 4, 4}, NumResBlocks: 2, AttentionResolutions: []int{32, 16, 8},
		NumHeadChannels: 64, UseScaleShiftNorm: true, ResblockUpdown: true, ConvResample: true,
		LearnSigma: true, Dropout: 0.1,
	},
	// DreamTeacher's BDD100K teacher: 128x256 input, 128 channels, channel_mult 1,1,2,2,3,4 (the
	// paper's numbers). Everything else is our assumption, taken from the 256x256 model: 2 res
	// blocks, attention at downsample rates 8, 16, 32 (32,16,8 px at ImageSize 256, the width),
	// 64 channels per head, scale-shift norm, res-block up/down, learned sigma, and dropout 0.1
	// as guided-diffusion's LSUN models (70k training images). 117,470,470 parameters.
	"adm_bdd100k": {
		ImageSize: 256, InputHeight: 128, InputWidth: 256, InChannels: 3, OutChannels: 3,
		ModelChannels: 128, ChannelMult: []int{1, 1, 2, 2, 3, 4}, NumResBlocks: 2,
		AttentionResolutions: []int{32, 16, 8}, NumHeadChannels: 64, UseScaleShiftNorm: true,
		ResblockUpdown: true, ConvResample: true, LearnSigma: true, Dropout: 0.1,
	},
	// A small model for CPU runs at 64x64 (the demo): 64 channels, 4 levels (strides 1..8),
	// attention at 16 and 8 px. 21,058,118 parameters.
	"adm_small": {
		ImageSize: 64, InChannels: 3, OutChannels: 3, ModelChannels: 64,
		ChannelMult: []int{1, 2, 2, 4}, NumResBlocks: 2, AttentionResolutions: []int{16, 8},
		NumHeadChannels: 32, UseScaleShiftNorm: true, ResblockUpdown: true, ConvResample: true,
		LearnSigma: true,
	},
	// The demo's teacher at 64x64 on CPU: 32 channels, 6 levels like the 256 model (strides 1..32,
	// so that its default taps dec_s32..dec_s4 line up with a backbone's C5..C2), 1 res block,
	// attention at 8 px (rate 8).
	"adm_demo": {
		ImageSize: 64, InChannels: 3, OutChannels: 3, ModelChannels: 32,
		ChannelMult: []int{1, 1, 2, 2, 2, 2}, NumResBlocks: 1, AttentionResolutions: []int{8},
		NumHeadChannels: 32, UseScaleShiftNorm: true, ResblockUpdown: true, ConvResample: true,
		LearnSigma: true,
	},
	// The CamVid teacher of docs/RESULTS.md, for CPU: 64x48 inputs (CamVid's 4:3), 32 channels,
	// 5 levels (strides 1..16), 1 res block, attention at 8 and 4 px of 64 (rates 8 and 16).
	"adm_camvid": {
		ImageSize: 64, InputHeight: 48, InputWidth: 64, InChannels: 3, OutChannels: 3, ModelChannels: 32,
		ChannelMult: []int{1, 1, 2, 2, 4}, NumResBlocks: 1, AttentionResolutions: []int{8, 4},
		NumHeadChannels: 32, UseScaleShiftNorm: true, ResblockUpdown: true, ConvResample: true,
		LearnSigma: true,
	},
	// The tiny model of the tests and smoke runs, for 32..64 px: 32 channels, 3 levels (strides
	// 1, 2, 4), 1 res block, attention at 8 px of 32 (rate 4). 1,371,974 parameters.
	"adm_tiny": {
		ImageSize: 32, InChannels: 3, OutChannels: 3, ModelChannels: 32,
		ChannelMult: []int{1, 2, 2}, NumResBlocks: 1, AttentionResolutions: []int{8},
		NumHeadChannels: 32, UseScaleShiftNorm: true, ResblockUpdown: true, ConvResample: true,
		LearnSigma: true,
	},
}

// ConfigNames lists the registered configurations, sorted.
func ConfigNames() []string {
	names := make([]string, 0, len(Configs))
	for n := range Configs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// GetConfig returns the named configuration, or an error listing the known ones.
func GetConfig(name string) (Config, error) {
	cfg, ok := Configs[name]
	if !ok {
		return Config{}, fmt.Errorf("unknown ADM configuration %q: known configurations are %s",
			name, strings.Join(ConfigNames(), ", "))
	}
	cfg.ChannelMult = slices.Clone(cfg.ChannelMult)
	cfg.AttentionResolutions = slices.Clone(cfg.AttentionResolutions)
	return cfg, nil
}

// Levels is the number of resolution levels (len(ChannelMult)); level l works at stride 2^l.
func (c Config) Levels() int { return len(c.ChannelMult) }

// SizeMultiple is what the input's sides must be multiples of: 2^(Levels-1).
func (c Config) SizeMultiple() int { return 1 << max(c.Levels()-1, 0) }

// InputSize is the default input (height, width).
func (c Config) InputSize() (height, width int) {
	height, width = c.InputHeight, c.InputWidth
	if height == 0 {
		height = c.ImageSize
	}
	if width == 0 {
		width = c.ImageSize
	}
	return
}

// AttentionRates converts AttentionResolutions (pixels at ImageSize) to downsample rates, as
// guided-diffusion's create_model: rate = ImageSize / resolution.
func (c Config) AttentionRates() []int {
	rates := make([]int, len(c.AttentionResolutions))
	for i, r := range c.AttentionResolutions {
		rates[i] = c.ImageSize / r
	}
	return rates
}

// NetworkOutChannels is the width of the last conv: OutChannels, doubled with LearnSigma.
func (c Config) NetworkOutChannels() int {
	if c.LearnSigma {
		return 2 * c.OutChannels
	}
	return c.OutChannels
}

// TimeEmbedDim is the width of the timestep (and label) embedding: 4*ModelChannels.
func (c Config) TimeEmbedDim() int { return 4 * c.ModelChannels }

func (c Config) normGroups() int {
	if c.NormGroups == 0 {
		return 32
	}
	return c.NormGroups
}

// heads is the number of attention heads of a block with ch channels.
func (c Config) heads(ch int) int {
	if c.NumHeadChannels > 0 {
		return ch / c.NumHeadChannels
	}
	return c.NumHeads
}

// Validate checks the configuration and says what is wrong with it.
func (c Config) Validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if c.ImageSize <= 0 {
		bad("ImageSize must be positive, got %d", c.ImageSize)
	}
	if c.InChannels <= 0 || c.OutChannels <= 0 {
		bad("InChannels and OutChannels must be positive, got %d and %d", c.InChannels, c.OutChannels)
	}
	if c.ModelChannels <= 0 {
		bad("ModelChannels must be positive, got %d", c.ModelChannels)
	}
	if len(c.ChannelMult) == 0 {
		bad("ChannelMult is empty")
	}
	for _, m := range c.ChannelMult {
		if m <= 0 {
			bad("ChannelMult %v has a non-positive multiplier", c.ChannelMult)
			break
		}
	}
	if c.NumResBlocks <= 0 {
		bad("NumResBlocks must be positive, got %d", c.NumResBlocks)
	}
	if c.NumHeadChannels <= 0 && c.NumHeads <= 0 {
		bad("set NumHeads or NumHeadChannels")
	}
	if c.Dropout < 0 || c.Dropout >= 1 {
		bad("Dropout must be in [0, 1), got %g", c.Dropout)
	}
	if c.NumClasses < 0 {
		bad("NumClasses must be >= 0, got %d", c.NumClasses)
	}
	if c.InputHeight < 0 || c.InputWidth < 0 {
		bad("InputHeight and InputWidth must be >= 0, got %d and %d", c.InputHeight, c.InputWidth)
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid ADM configuration: %s", strings.Join(errs, "; "))
	}

	g := c.normGroups()
	channels := []int{c.ModelChannels * c.ChannelMult[0]}
	for _, m := range c.ChannelMult {
		channels = append(channels, c.ModelChannels*m)
	}
	for _, ch := range channels {
		if ch%g != 0 {
			bad("%d channels are not divisible into %d GroupNorm groups", ch, g)
			break
		}
	}
	levelOf := map[int]int{}
	for l := range c.Levels() {
		levelOf[1<<l] = l
	}
	for i, r := range c.AttentionResolutions {
		if r <= 0 || c.ImageSize%r != 0 {
			bad("attention resolution %d px does not divide ImageSize %d", r, c.ImageSize)
			continue
		}
		rate := c.ImageSize / r
		l, ok := levelOf[rate]
		if !ok {
			bad("attention resolution %d px at ImageSize %d is downsample rate %d, which is no level's (levels have rates 1..%d)",
				c.AttentionResolutions[i], c.ImageSize, rate, c.SizeMultiple())
			continue
		}
		ch := c.ModelChannels * c.ChannelMult[l]
		if c.NumHeadChannels > 0 && ch%c.NumHeadChannels != 0 {
			bad("level %d has %d channels, not divisible by NumHeadChannels %d", l, ch, c.NumHeadChannels)
		}
		if c.NumHeadChannels <= 0 && ch%c.NumHeads != 0 {
			bad("level %d has %d channels, not divisible into %d heads", l, ch, c.NumHeads)
		}
	}
	// The middle attention block works at the last level's width.
	last := c.ModelChannels * c.ChannelMult[c.Levels()-1]
	if c.NumHeadChannels > 0 && last%c.NumHeadChannels != 0 {
		bad("the middle block has %d channels, not divisible by NumHeadChannels %d", last, c.NumHeadChannels)
	}
	if c.NumHeadChannels <= 0 && last%c.NumHeads != 0 {
		bad("the middle block has %d channels, not divisible into %d heads", last, c.NumHeads)
	}
	h, w := c.InputSize()
	if err := c.CheckInputSize(h, w); err != nil {
		bad("default input size: %v", err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid ADM configuration: %s", strings.Join(errs, "; "))
	}
	return nil
}

// CheckInputSize reports whether the network accepts images of height x width: both must be
// multiples of 2^(Levels-1), so that every down-sampling halves an even size.
func (c Config) CheckInputSize(height, width int) error {
	m := c.SizeMultiple()
	for _, side := range []struct {
		name string
		v    int
	}{{"height", height}, {"width", width}} {
		if side.v <= 0 || side.v%m != 0 {
			return fmt.Errorf("ADM input %s %d is not a positive multiple of %d (2^(levels-1) for %d levels, channel_mult %v)",
				side.name, side.v, m, c.Levels(), c.ChannelMult)
		}
	}
	return nil
}
