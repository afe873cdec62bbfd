package biggan

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Scope names of the two networks under the root (the convention of GAN training, train/pretrain).
const (
	GeneratorScope     = "generator"
	DiscriminatorScope = "discriminator"
)

// Init selects the weight initialisation of convs, linear layers and embeddings (the
// reference's G_init / D_init). Biases keep PyTorch's default, BN gains start at 1 and the
// attention gains at 0, as in the reference.
type Init int

const (
	// InitOrtho is orthogonal_ (the reference's "ortho", the default of its Generator and
	// Discriminator and the flag of its ImageNet launch scripts): each weight, flattened to
	// [out, in*k*k], is the Q of the QR decomposition of a Gaussian matrix (nn.OrthogonalInit).
	InitOrtho Init = iota
	// InitXavier is xavier_uniform_ (the reference's "xavier" / "glorot"; its SA-GAN and
	// SN-GAN scripts).
	InitXavier
	// InitN02 is normal(0, 0.02) (the reference's "N02", its CIFAR scripts).
	InitN02
)

func (i Init) String() string {
	switch i {
	case InitOrtho:
		return "ortho"
	case InitXavier:
		return "xavier"
	case InitN02:
		return "N02"
	}
	return fmt.Sprintf("Init(%d)", int(i))
}

// Config describes a BigGAN generator and discriminator (the reference's G_arch / D_arch tables
// and the flags of its launch scripts).
type Config struct {
	// Resolution is the side of the generated (and discriminated) square image in pixels.
	Resolution int
	// BottomWidth is the side of the map the generator's linear layer makes (4).
	BottomWidth int
	// NumClasses > 0 makes both networks class-conditional: G's BN gains and biases depend on a
	// shared class embedding, D adds a projection term. 0 makes them unconditional.
	NumClasses int
	// DimZ is the size of the latent vector z. With Hier it must split evenly into
	// NumGBlocks()+1 chunks (the reference silently rounds it down to a multiple).
	DimZ int
	// SharedDim is the width of G's shared class embedding (the reference's shared_dim; 0
	// means DimZ, as there). Unused without classes.
	SharedDim int
	// Hier uses the hierarchical latent: z is split into NumGBlocks()+1 chunks, the first feeds
	// the linear layer and chunk i+1 joins the class embedding as the condition of GBlock i.
	Hier bool

	// GCh is G's base width (G_ch). GChannels are the width multipliers of G's maps, from the
	// linear layer's output to the last GBlock's: GBlock i maps GCh*GChannels[i] channels to
	// GCh*GChannels[i+1] and doubles the resolution, so len(GChannels)-1 GBlocks take the
	// BottomWidth map to Resolution.
	GCh       int
	GChannels []int
	// GAttention lists the sides (pixels) of the GBlock outputs that a non-local block follows.
	GAttention []int

	// DCh is D's base width (D_ch). DBlock i outputs DCh*DChannels[i] channels and, when
	// DDownsample[i], halves the resolution.
	DCh         int
	DChannels   []int
	DDownsample []bool
	// DAttention lists the sides (pixels) of the DBlock outputs that a non-local block follows.
	DAttention []int

	// BNEps is BatchNorm's epsilon (1e-5).
	BNEps float64
	// Init of the weights (the zero value, the default, is the reference's orthogonal init;
	// see Init).
	Init Init

	// testOptions, when set, replaces the layer options the fields above give (tests).
	testOptions *layerOptions
}

func repeatBool(v bool, n int) []bool {
	out := make([]bool, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// Configs are the registered configurations by name. The parameter counts in the comments
// were obtained by building the reference implementation (ajbrock/BigGAN-PyTorch at 9845943,
// BigGAN.Generator / BigGAN.Discriminator) with the flags given, under PyTorch 1.13, and
// summing numel() over parameters(); see TestParamCounts. The unconditional configurations have
// no reference counterpart: their counts are NumParams'. All use the reference's orthogonal
// init (Init's zero value).
var Configs = map[string]Config{
	// The ImageNet 128x128 BigGAN of the paper, with the flags of the reference's
	// scripts/launch_BigGAN_bs256x8.sh: --G_ch 96 --D_ch 96 --G_attn 64 --D_attn 64 --hier
	// --dim_z 120 --shared_dim 128 --G_shared --G_init ortho --D_init ortho --BN_eps 1e-5
	// (G_arch[128]: multipliers 16,16,8,4,2,1; D_arch[128]: 1,2,4,8,16,16). G 70,433,988 and
	// D 87,982,370 parameters (the BigGAN paper quotes 70.4M and 88.0M).
	"biggan_128": {
		Resolution: 128, BottomWidth: 4, NumClasses: 1000, DimZ: 120, SharedDim: 128, Hier: true,
		GCh: 96, GChannels: []int{16, 16, 8, 4, 2, 1}, GAttention: []int{64},
		DCh: 96, DChannels: []int{1, 2, 4, 8, 16, 16}, DDownsample: append(repeatBool(true, 5), false),
		DAttention: []int{64}, BNEps: 1e-5,
	},
	// The ImageNet 256x256 BigGAN of the paper (G_arch[256], D_arch[256]) as released: the
	// TF-Hub generator that the reference's TFHub/converter.py loads with get_config(256)
	// (--G_attn 128 --dim_z 140, ortho init). The non-local block follows G's 128 px GBlock and z
	// has 140 dimensions, 7 chunks of 20. The reference has no 256 launch script and TF-Hub no
	// D: D's non-local block follows its first DBlock, whose output is 128 px, as the 128
	// model's follows its 64 px one (--D_attn 128; compare_gan's BigGAN D puts it after block
	// "B1" at every resolution). The rest as biggan_128: --G_ch 96 --D_ch 96 --hier
	// --shared_dim 128 --G_shared. G 82,097,604 and D 99,191,330 parameters.
	"biggan_256": {
		Resolution: 256, BottomWidth: 4, NumClasses: 1000, DimZ: 140, SharedDim: 128, Hier: true,
		GCh: 96, GChannels: []int{16, 16, 8, 8, 4, 2, 1}, GAttention: []int{128},
		DCh: 96, DChannels: []int{1, 2, 4, 8, 8, 16, 16}, DDownsample: append(repeatBool(true, 6), false),
		DAttention: []int{128}, BNEps: 1e-5,
	},
	// An unconditional 64x64 model for CPU demos (the DreamTeacher setting for unlabeled data):
	// G_arch[64] / D_arch[64] at width 32, attention at 32 px, plain BN, z of 128 into the
	// linear layer. G 8,561,924 and D 4,889,186 parameters (its conditional version with 10
	// classes, --hier --dim_z 120 --shared_dim 128, has 8,426,372 and 4,894,306 in the
	// reference).
	"biggan_small": {
		Resolution: 64, BottomWidth: 4, DimZ: 128,
		GCh: 32, GChannels: []int{16, 16, 8, 4, 2}, GAttention: []int{32},
		DCh: 32, DChannels: []int{1, 2, 4, 8, 16}, DDownsample: append(repeatBool(true, 4), false),
		DAttention: []int{32}, BNEps: 1e-5,
	},
	// The tiny class-conditional model of the tests and smoke runs: 32x32, 10 classes (CIFAR-10
	// like), G_arch[32] / D_arch[32] at width 32, hierarchical z of 128, shared_dim 128,
	// attention after G's 16 px block, none in D (--G_attn 16 --D_attn 0).
	// G 1,273,860 and D 1,055,105 parameters.
	"biggan_tiny": {
		Resolution: 32, BottomWidth: 4, NumClasses: 10, DimZ: 128, SharedDim: 128, Hier: true,
		GCh: 32, GChannels: []int{4, 4, 4, 4}, GAttention: []int{16},
		DCh: 32, DChannels: []int{4, 4, 4, 4}, DDownsample: []bool{true, true, false, false},
		BNEps: 1e-5,
	},
	// biggan_tiny without classes: plain BN and the whole z (128) into the linear layer.
	// G 1,224,964 and D 1,053,825 parameters.
	"biggan_tiny_uncond": {
		Resolution: 32, BottomWidth: 4, DimZ: 128,
		GCh: 32, GChannels: []int{4, 4, 4, 4}, GAttention: []int{16},
		DCh: 32, DChannels: []int{4, 4, 4, 4}, DDownsample: []bool{true, true, false, false},
		BNEps: 1e-5,
	},
}

// Names lists the registered configurations, sorted.
func Names() []string {
	names := make([]string, 0, len(Configs))
	for n := range Configs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Get returns a copy of the named configuration, or an error listing the known names.
func Get(name string) (Config, error) {
	cfg, ok := Configs[name]
	if !ok {
		return Config{}, fmt.Errorf("unknown BigGAN configuration %q: known configurations are %s",
			name, strings.Join(Names(), ", "))
	}
	return cfg.clone(), nil
}

func (c Config) clone() Config {
	c.GChannels = slices.Clone(c.GChannels)
	c.GAttention = slices.Clone(c.GAttention)
	c.DChannels = slices.Clone(c.DChannels)
	c.DDownsample = slices.Clone(c.DDownsample)
	c.DAttention = slices.Clone(c.DAttention)
	return c
}

// Conditional reports whether the networks take class labels.
func (c Config) Conditional() bool { return c.NumClasses > 0 }

// NumGBlocks is the number of GBlocks, len(GChannels)-1.
func (c Config) NumGBlocks() int { return len(c.GChannels) - 1 }

// NumZChunks is the number of pieces z is split into: NumGBlocks()+1 with Hier, else 1.
func (c Config) NumZChunks() int {
	if c.Hier {
		return c.NumGBlocks() + 1
	}
	return 1
}

// ZChunk is the size of each piece of z (DimZ without Hier).
func (c Config) ZChunk() int { return c.DimZ / c.NumZChunks() }

// sharedDim is the width of the shared class embedding (0 without classes).
func (c Config) sharedDim() int {
	switch {
	case !c.Conditional():
		return 0
	case c.SharedDim > 0:
		return c.SharedDim
	}
	return c.DimZ
}

// CondDim is the width of the condition of each GBlock's BatchNorms: the shared class
// embedding plus, with Hier, a chunk of z. 0 means plain (unconditional) BatchNorm.
func (c Config) CondDim() int {
	d := c.sharedDim()
	if c.Hier {
		d += c.ZChunk()
	}
	return d
}

// GBlockChannels returns the input and output channels of GBlock i.
func (c Config) GBlockChannels(i int) (in, out int) {
	return c.GCh * c.GChannels[i], c.GCh * c.GChannels[i+1]
}

// DBlockChannels returns the input and output channels of DBlock i.
func (c Config) DBlockChannels(i int) (in, out int) {
	in = 3
	if i > 0 {
		in = c.DCh * c.DChannels[i-1]
	}
	return in, c.DCh * c.DChannels[i]
}

// dBlockSides returns the side of each DBlock's output map.
func (c Config) dBlockSides() []int {
	sides := make([]int, len(c.DChannels))
	s := c.Resolution
	for i := range sides {
		if c.DDownsample[i] {
			s /= 2
		}
		sides[i] = s
	}
	return sides
}

func (c Config) bnEps() float64 {
	if c.BNEps == 0 {
		return 1e-5
	}
	return c.BNEps
}

// Validate checks the configuration and says what is wrong with it.
func (c Config) Validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if c.Resolution <= 0 || c.BottomWidth <= 0 {
		bad("Resolution and BottomWidth must be positive, got %d and %d", c.Resolution, c.BottomWidth)
	}
	if len(c.GChannels) < 2 {
		bad("GChannels %v needs at least 2 entries (one GBlock)", c.GChannels)
	} else if c.BottomWidth<<c.NumGBlocks() != c.Resolution {
		bad("%d GBlocks double BottomWidth %d to %d, not Resolution %d",
			c.NumGBlocks(), c.BottomWidth, c.BottomWidth<<c.NumGBlocks(), c.Resolution)
	}
	if c.GCh <= 0 || c.DCh <= 0 {
		bad("GCh and DCh must be positive, got %d and %d", c.GCh, c.DCh)
	}
	for _, m := range append(slices.Clone(c.GChannels), c.DChannels...) {
		if m <= 0 {
			bad("channel multipliers must be positive: G %v, D %v", c.GChannels, c.DChannels)
			break
		}
	}
	if c.NumClasses < 0 {
		bad("NumClasses must be >= 0, got %d", c.NumClasses)
	}
	if c.DimZ <= 0 {
		bad("DimZ must be positive, got %d", c.DimZ)
	} else if c.Hier && len(c.GChannels) >= 2 && c.DimZ%c.NumZChunks() != 0 {
		bad("DimZ %d does not split into %d chunks (GBlocks + 1) for the hierarchical latent; use %d",
			c.DimZ, c.NumZChunks(), c.DimZ/c.NumZChunks()*c.NumZChunks())
	}
	if c.SharedDim < 0 {
		bad("SharedDim must be >= 0, got %d", c.SharedDim)
	}
	if len(c.DChannels) == 0 || len(c.DDownsample) != len(c.DChannels) {
		bad("DChannels %v and DDownsample %v must be non-empty and of the same length", c.DChannels, c.DDownsample)
	} else if r := c.Resolution; r > 0 && r%(1<<countTrue(c.DDownsample)) != 0 {
		bad("%d px cannot be halved by %d down-samplings", r, countTrue(c.DDownsample))
	}
	if c.Init != InitOrtho && c.Init != InitXavier && c.Init != InitN02 {
		bad("unknown Init %d", int(c.Init))
	}
	if len(errs) == 0 {
		gSides := map[int]bool{}
		for i := range c.NumGBlocks() {
			gSides[c.BottomWidth<<(i+1)] = true
		}
		for _, r := range c.GAttention {
			if !gSides[r] {
				bad("G attention at %d px: no GBlock outputs that size", r)
			}
		}
		dSides := map[int]bool{}
		for _, s := range c.dBlockSides() {
			dSides[s] = true
		}
		for _, r := range c.DAttention {
			if !dSides[r] {
				bad("D attention at %d px: no DBlock outputs that size", r)
			}
		}
		for i := range c.NumGBlocks() {
			if _, out := c.GBlockChannels(i); slices.Contains(c.GAttention, c.BottomWidth<<(i+1)) && out%8 != 0 {
				bad("G attention after GBlock %d needs channels divisible by 8, got %d", i, out)
			}
		}
		for i, side := range c.dBlockSides() {
			if _, out := c.DBlockChannels(i); slices.Contains(c.DAttention, side) && (out%8 != 0 || side%2 != 0) {
				bad("D attention after DBlock %d needs channels divisible by 8 and an even side, got %d channels at %d px", i, out, side)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid BigGAN configuration: %s", strings.Join(errs, "; "))
	}
	return nil
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// NumParams returns the number of trainable parameters of the generator and the
// discriminator of a valid configuration, computed from it (it equals what building them
// creates; see TestParamCounts).
func NumParams(c Config) (g, d int) {
	conv := func(in, out, k int) int { return in*out*k*k + out }
	attention := func(ch int) int { return 2*ch*(ch/8) + 2*ch*(ch/2) + 1 }
	bn := func(ch int) int {
		if cd := c.CondDim(); cd > 0 {
			return 2 * cd * ch
		}
		return 2 * ch
	}
	g = c.NumClasses * c.sharedDim()
	c0 := c.GCh * c.GChannels[0] * c.BottomWidth * c.BottomWidth
	g += c.ZChunk()*c0 + c0
	for i := range c.NumGBlocks() {
		in, out := c.GBlockChannels(i)
		g += bn(in) + conv(in, out, 3) + bn(out) + conv(out, out, 3) + conv(in, out, 1)
		if slices.Contains(c.GAttention, c.BottomWidth<<(i+1)) {
			g += attention(out)
		}
	}
	last := c.GCh * c.GChannels[len(c.GChannels)-1]
	g += 2*last + conv(last, 3, 3)

	sides := c.dBlockSides()
	for i := range c.DChannels {
		in, out := c.DBlockChannels(i)
		d += conv(in, out, 3) + conv(out, out, 3)
		if in != out || c.DDownsample[i] {
			d += conv(in, out, 1)
		}
		if slices.Contains(c.DAttention, sides[i]) {
			d += attention(out)
		}
	}
	dl := c.DCh * c.DChannels[len(c.DChannels)-1]
	d += dl + 1 + c.NumClasses*dl
	return g, d
}
