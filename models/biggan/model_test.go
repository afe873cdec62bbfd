package biggan

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

// referenceParams are the parameter counts of the reference implementation,
// ajbrock/BigGAN-PyTorch at commit 9845943, fetched into a temporary folder and run with
// Debian's python3-torch 1.13.1 on CPU by testdata/make_reference.py (recorded in
// testdata/reference.json, checked against this table by TestReferenceCounts):
//
//	G, D = BigGAN.Generator(**kw), BigGAN.Discriminator(**kw)
//	sum(p.numel() for p in G.parameters()), sum(p.numel() for p in D.parameters())
//
// with kw = dict(resolution=R, G_ch=C, D_ch=C, G_shared=True, shared_dim=128, hier=True,
// dim_z=Z, G_attn=A, D_attn=B, n_classes=K):
//
//	biggan_128:  R=128 C=96 Z=120 A='64'  B='64'  K=1000 (the flags of launch_BigGAN_bs256x8.sh)
//	biggan_256:  R=256 C=96 Z=140 A='128' B='128' K=1000 (TFHub/converter.py's get_config(256))
//	biggan_tiny: R=32  C=32 Z=128 A='16'  B='0'   K=10
//
// (The BigGAN paper quotes 70.4M and 88.0M for G and D at 128.) The unconditional
// configurations have no reference counterpart; they are checked against NumParams, itself
// checked here and, for biggan_small's conditional version and two variants of biggan_256, in
// TestReferenceCounts.
var referenceParams = map[string][2]int{
	"biggan_128":  {70_433_988, 87_982_370},
	"biggan_256":  {82_097_604, 99_191_330},
	"biggan_tiny": {1_273_860, 1_055_105},
}

func TestConfigs(t *testing.T) {
	for _, name := range Names() {
		if err := Configs[name].Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := Get("biggan_nope"); err == nil || !strings.Contains(err.Error(), "biggan_128") || !strings.Contains(err.Error(), "biggan_tiny") {
		t.Errorf("Get of an unknown name: %v, want an error listing the known ones", err)
	}
	cfg, err := Get("biggan_128")
	if err != nil {
		t.Fatal(err)
	}
	cfg.GChannels[0] = 1 // a copy: the registry is unchanged
	if Configs["biggan_128"].GChannels[0] != 16 {
		t.Errorf("Get returned the registry's slice")
	}
	if g, d := NumParams(Configs["biggan_tiny"]); g < 1_000_000 || g > 2_000_000 || d < 1_000_000 || d > 2_000_000 {
		t.Errorf("biggan_tiny has G %d and D %d parameters, want 1-2M each", g, d)
	}
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.DimZ = 120; c.GChannels = append(c.GChannels, 1); c.Resolution = 256 }, "use 119"},
		{func(c *Config) { c.Resolution = 64 }, "not Resolution 64"},
		{func(c *Config) { c.GAttention = []int{48} }, "G attention at 48 px"},
		{func(c *Config) { c.DAttention = []int{128} }, "D attention at 128 px"},
		{func(c *Config) { c.DDownsample = c.DDownsample[1:] }, "same length"},
	} {
		c := Configs["biggan_128"].clone()
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error containing %q", err, tc.want)
		}
	}
}

// buildGD builds G and D of cfg in a graph that is never executed, and returns the trainable
// parameters under /generator and /discriminator and G's output.
func buildGD(t *testing.T, cfg Config, n int) (gParams, dParams int, out GeneratorOutput, logits *Node) {
	t.Helper()
	store := model.NewStore()
	g := NewGraph(backend.Go(), "build-only")
	t.Cleanup(g.Finalize)
	z := Parameter(g, "z", shapes.Make(dtypes.Float32, n, cfg.DimZ))
	var y *Node
	if cfg.Conditional() {
		y = Parameter(g, "y", shapes.Make(dtypes.Int32, n))
	}
	out = Generate(store.RootScope().In(GeneratorScope), z, y, cfg, TapNames(cfg)...)
	logits = Discriminate(store.RootScope().In(DiscriminatorScope), out.Image, y, cfg)
	for v := range store.IterVariables() {
		switch {
		case !v.Trainable:
		case strings.HasPrefix(v.Path(), "/generator/"):
			gParams += v.Shape().Size()
		case strings.HasPrefix(v.Path(), "/discriminator/"):
			dParams += v.Shape().Size()
		default:
			t.Errorf("variable %s outside /generator and /discriminator", v.Path())
		}
	}
	return
}

// TestParamCounts builds every configuration, biggan_128 and biggan_256 included (graph
// only, nothing executed), and compares the trainable parameters with NumParams and with the
// reference implementation's counts.
func TestParamCounts(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			cfg := Configs[name]
			gp, dp, out, logits := buildGD(t, cfg, 2)
			wg, wd := NumParams(cfg)
			if gp != wg || dp != wd {
				t.Errorf("built G %d and D %d parameters, NumParams says %d and %d", gp, dp, wg, wd)
			}
			if ref, ok := referenceParams[name]; ok && (gp != ref[0] || dp != ref[1]) {
				t.Errorf("G %d and D %d parameters, the reference has %d and %d", gp, dp, ref[0], ref[1])
			}
			r := cfg.Resolution
			if !slices.Equal(out.Image.Shape().Dimensions, []int{2, r, r, 3}) || !slices.Equal(logits.Shape().Dimensions, []int{2}) {
				t.Errorf("image %s and logits %s, want [2, %d, %d, 3] and [2]", out.Image.Shape(), logits.Shape(), r, r)
			}
			t.Logf("%s: G %d, D %d parameters", name, gp, dp)
		})
	}
}

// TestScopeNames checks that variables are named after the reference's modules.
func TestScopeNames(t *testing.T) {
	store := model.NewStore()
	g := NewGraph(backend.Go(), "names")
	defer g.Finalize()
	cfg := Configs["biggan_128"]
	z := Parameter(g, "z", shapes.Make(dtypes.Float32, 2, cfg.DimZ))
	y := Parameter(g, "y", shapes.Make(dtypes.Int32, 2))
	img := Generate(store.RootScope().In(GeneratorScope), z, y, cfg).Image
	Discriminate(store.RootScope().In(DiscriminatorScope), img, y, cfg)
	var paths []string
	for v := range store.IterVariables() {
		paths = append(paths, v.Path())
	}
	for _, want := range []string{
		"/generator/shared/embeddings",
		"/generator/linear/weights", "/generator/linear/sn_u",
		"/generator/blocks/block0/bn1/gain/weights", "/generator/blocks/block0/bn1/bias/weights",
		"/generator/blocks/block0/bn1/running_mean", "/generator/blocks/block0/conv1/weights",
		"/generator/blocks/block4/conv_sc/biases", "/generator/blocks/block3/attention/gamma",
		"/generator/blocks/block3/attention/theta/weights", "/generator/output/bn/scale",
		"/generator/output/conv/weights",
		"/discriminator/blocks/block0/conv_sc/weights", "/discriminator/blocks/block0/attention/o/weights",
		"/discriminator/blocks/block5/conv2/weights", "/discriminator/linear/weights",
		"/discriminator/embed/embeddings", "/discriminator/embed/sn_u",
	} {
		if !slices.Contains(paths, want) {
			t.Errorf("no variable %s", want)
		}
	}
	for _, p := range paths {
		if strings.HasPrefix(p, "/discriminator/blocks/block5/conv_sc") {
			t.Errorf("%s: the last DBlock neither down-samples nor changes the width, it has no shortcut conv", p)
		}
	}
}

func TestTapNames(t *testing.T) {
	for _, tc := range []struct {
		name       string
		all, deflt []string
	}{
		{"biggan_128", []string{"g_s32", "g_s16", "g_s8", "g_s4", "g_s2", "g_s1"}, []string{"g_s32", "g_s16", "g_s8", "g_s4"}},
		{"biggan_256", []string{"g_s64", "g_s32", "g_s16", "g_s8", "g_s4", "g_s2", "g_s1"}, []string{"g_s32", "g_s16", "g_s8", "g_s4"}},
		{"biggan_tiny", []string{"g_s8", "g_s4", "g_s2", "g_s1"}, []string{"g_s8", "g_s4", "g_s2", "g_s1"}},
	} {
		cfg := Configs[tc.name]
		if got := TapNames(cfg); !slices.Equal(got, tc.all) {
			t.Errorf("%s: TapNames %v, want %v", tc.name, got, tc.all)
		}
		if got := DefaultTaps(cfg); !slices.Equal(got, tc.deflt) {
			t.Errorf("%s: DefaultTaps %v, want %v", tc.name, got, tc.deflt)
		}
	}
	info, err := LookupTap(Configs["biggan_128"], "g_s8")
	if err != nil || info != (TapInfo{Name: "g_s8", Channels: 768, Stride: 8}) {
		t.Errorf("LookupTap g_s8: %v %v", info, err)
	}
	err = exceptions.TryCatch[error](func() { NewGenerator(model.NewStore().RootScope(), Configs["biggan_128"]).Taps("g_s3") })
	if err == nil || !strings.Contains(err.Error(), `"g_s3"`) || !strings.Contains(err.Error(), "g_s32, g_s16, g_s8, g_s4, g_s2, g_s1") {
		t.Errorf("unknown tap: %v, want a panic listing the valid taps", err)
	}
}

// TestBuild128Taps checks the default teacher features of the ImageNet model: names,
// channels, strides and shapes (graph only).
func TestBuild128Taps(t *testing.T) {
	cfg := Configs["biggan_128"]
	store := model.NewStore()
	g := NewGraph(backend.Go(), "taps")
	defer g.Finalize()
	z := Parameter(g, "z", shapes.Make(dtypes.Float32, 2, cfg.DimZ))
	y := Parameter(g, "y", shapes.Make(dtypes.Int32, 2))
	out := Generate(store.RootScope().In(GeneratorScope), z, y, cfg)
	want := []TapInfo{{"g_s32", 1536, 32}, {"g_s16", 1536, 16}, {"g_s8", 768, 8}, {"g_s4", 384, 4}}
	if !slices.Equal(out.TapInfo, want) || len(out.Taps) != len(want) {
		t.Fatalf("taps %v (%d maps), want %v", out.TapInfo, len(out.Taps), want)
	}
	for _, info := range want {
		side := 128 / info.Stride
		if got := out.Taps[info.Name].Shape().Dimensions; !slices.Equal(got, []int{2, side, side, info.Channels}) {
			t.Errorf("tap %s: %v, want [2 %d %d %d]", info.Name, got, side, side, info.Channels)
		}
	}
}

// runTiny executes G (with every tap) and D of cfg on a batch of n, in the given mode.
func runTiny(t *testing.T, cfg Config, n int, training bool) (img *tensors.Tensor, taps map[string]*tensors.Tensor, logits *tensors.Tensor) {
	t.Helper()
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(3); err != nil {
		t.Fatal(err)
	}
	names := TapNames(cfg)
	exec, err := model.NewExec(backend.Go(), store, func(scope *model.Scope, g *Graph) []*Node {
		store.SetTraining(g, training)
		z := SampleZ(scope, g, dtypes.Float32, n, cfg.DimZ, 0)
		var y *Node
		if cfg.Conditional() {
			y = SampleLabels(scope, g, n, cfg.NumClasses)
		}
		out := Generate(scope.In(GeneratorScope), z, y, cfg, names...)
		res := []*Node{out.Image, Discriminate(scope.In(DiscriminatorScope), out.Image, y, cfg)}
		for _, name := range names {
			res = append(res, out.Taps[name])
		}
		return res
	})
	if err != nil {
		t.Fatal(err)
	}
	outs, err := exec.Exec()
	if err != nil {
		t.Fatal(err)
	}
	taps = map[string]*tensors.Tensor{}
	for i, name := range names {
		taps[name] = outs[2+i]
	}
	return outs[0], taps, outs[1]
}

// TestTinyForward runs G and D of the tiny configurations at 32 px: shapes of the image, the
// logits and every tap (stride and channels), the image in [-1, 1], everything finite.
func TestTinyForward(t *testing.T) {
	for _, name := range []string{"biggan_tiny", "biggan_tiny_uncond"} {
		t.Run(name, func(t *testing.T) {
			cfg := Configs[name]
			const n = 2
			img, taps, logits := runTiny(t, cfg, n, true)
			if !slices.Equal(img.Shape().Dimensions, []int{n, 32, 32, 3}) || !slices.Equal(logits.Shape().Dimensions, []int{n}) {
				t.Fatalf("image %s and logits %s", img.Shape(), logits.Shape())
			}
			pix := tensors.MustCopyFlatData[float32](img)
			lo, hi := slices.Min(pix), slices.Max(pix)
			if lo < -1 || hi > 1 || hi-lo < 1e-3 || math.IsNaN(float64(lo+hi)) {
				t.Errorf("image values in [%g, %g], want a non-constant image in [-1, 1]", lo, hi)
			}
			for _, l := range tensors.MustCopyFlatData[float32](logits) {
				if math.IsNaN(float64(l)) || math.IsInf(float64(l), 0) {
					t.Errorf("logits %v", logits)
				}
			}
			for _, info := range tapInfos(cfg) {
				side := 32 / info.Stride
				if got := taps[info.Name].Shape().Dimensions; !slices.Equal(got, []int{n, side, side, info.Channels}) {
					t.Errorf("tap %s (stride %d): %v, want [%d %d %d %d]", info.Name, info.Stride, got, n, side, side, info.Channels)
				}
			}
		})
	}
}

// TestTruncation: truncated latents stay in [-ψ, ψ] with the truncated normal's variance, and
// erfInv inverts Erf.
func TestTruncation(t *testing.T) {
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(5); err != nil {
		t.Fatal(err)
	}
	const psi, n, dim = 0.5, 500, 40
	exec, err := model.NewExec(backend.Go(), store, func(scope *model.Scope, g *Graph) []*Node {
		x := Const(g, []float64{-0.999, -0.9, -0.3, 0, 0.2, 0.7, 0.99, 0.99999})
		return []*Node{SampleZ(scope, g, dtypes.Float32, n, dim, psi), Sub(Erf(erfInv(x)), x),
			SampleLabels(scope, g, n, 7)}
	})
	if err != nil {
		t.Fatal(err)
	}
	outs, err := exec.Exec()
	if err != nil {
		t.Fatal(err)
	}
	z := tensors.MustCopyFlatData[float32](outs[0])
	var sum2 float64
	for _, v := range z {
		if math.Abs(float64(v)) > psi {
			t.Fatalf("truncated sample %g outside ±%g", v, psi)
		}
		sum2 += float64(v) * float64(v)
	}
	// Variance of N(0,1) truncated to ±ψ: 1 - 2ψφ(ψ)/(2Φ(ψ)-1).
	phi := math.Exp(-psi*psi/2) / math.Sqrt(2*math.Pi)
	want := 1 - 2*psi*phi/math.Erf(psi/math.Sqrt2)
	if got := sum2 / float64(len(z)); math.Abs(got-want) > 0.05*want {
		t.Errorf("variance of truncated samples %g, want %g", got, want)
	}
	for i, d := range tensors.MustCopyFlatData[float64](outs[1]) {
		if math.Abs(d) > 1e-12 {
			t.Errorf("erf(erfInv(x)) - x = %g at point %d", d, i)
		}
	}
	counts := make([]int, 7)
	for _, y := range tensors.MustCopyFlatData[int32](outs[2]) {
		counts[y]++
	}
	for c, k := range counts {
		if k < 40 {
			t.Errorf("label %d drawn %d times of %d: %v", c, k, n, counts)
		}
	}
}

func TestWrongInputsPanic(t *testing.T) {
	cfg := Configs["biggan_tiny"]
	for _, tc := range []struct {
		name string
		fn   func(scope *model.Scope, g *Graph)
		want string
	}{
		{"no labels", func(scope *model.Scope, g *Graph) {
			Generate(scope, Parameter(g, "z", shapes.Make(dtypes.Float32, 2, cfg.DimZ)), nil, cfg)
		}, "need labels"},
		{"z size", func(scope *model.Scope, g *Graph) {
			Generate(scope, Parameter(g, "z", shapes.Make(dtypes.Float32, 2, 7)), nil, cfg)
		}, "[N, 128]"},
		{"image size", func(scope *model.Scope, g *Graph) {
			Discriminate(scope, Parameter(g, "x", shapes.Make(dtypes.Float32, 2, 64, 64, 3)), nil, cfg)
		}, "[N, 32, 32, 3]"},
	} {
		g := NewGraph(backend.Go(), tc.name)
		err := exceptions.TryCatch[error](func() { tc.fn(model.NewStore().RootScope(), g) })
		g.Finalize()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a panic containing %q", tc.name, err, tc.want)
		}
	}
}

func TestValidateDownsampling(t *testing.T) {
	c := Configs["biggan_tiny"].clone()
	c.DDownsample = []bool{true, true, true, true, true, true}
	c.DChannels = []int{4, 4, 4, 4, 4, 4}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "cannot be halved by 6") {
		t.Errorf("6 halvings of 32 px: %v", err)
	}
}

// TestOrthogonalInitDefault: the registered configurations initialise every conv, linear and
// embedding weight of G and D orthogonally, as the reference's G_init/D_init 'ortho' (flattened
// to [fan_in, out], orthonormal columns when fan_in >= out, orthonormal rows otherwise), and
// InitXavier does not.
func TestOrthogonalInitDefault(t *testing.T) {
	for _, init := range []Init{InitOrtho, InitXavier} {
		t.Run(init.String(), func(t *testing.T) {
			cfg := Configs["biggan_tiny"].clone()
			cfg.Init = init
			store := model.NewStore()
			if err := store.SetRNGStateFromSeed(4); err != nil {
				t.Fatal(err)
			}
			exec, err := model.NewExec(backend.Go(), store, func(scope *model.Scope, g *Graph) *Node {
				z := SampleZ(scope, g, dtypes.Float32, 2, cfg.DimZ, 0)
				y := SampleLabels(scope, g, 2, cfg.NumClasses)
				img := Generate(scope.In(GeneratorScope), z, y, cfg).Image
				return Discriminate(scope.In(DiscriminatorScope), img, y, cfg)
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := exec.Exec(); err != nil {
				t.Fatal(err)
			}
			checked := 0
			for v := range store.IterVariables() {
				if !v.Trainable || (v.Name() != "weights" && v.Name() != "embeddings") {
					continue
				}
				w := tensors.MustCopyFlatData[float32](v.MustValue())
				cols := v.Shape().Dim(-1)
				rows := len(w) / cols
				n := min(rows, cols)
				var dev float64
				for i := range n {
					for j := range n {
						var dot float64
						for k := range max(rows, cols) {
							if rows >= cols { // columns i and j
								dot += float64(w[k*cols+i]) * float64(w[k*cols+j])
							} else { // rows i and j
								dot += float64(w[i*cols+k]) * float64(w[j*cols+k])
							}
						}
						if i == j {
							dot--
						}
						dev = max(dev, math.Abs(dot))
					}
				}
				if orthogonal := dev < 1e-5; orthogonal != (init == InitOrtho) {
					t.Errorf("%s %s: largest deviation of its Gram matrix from I %.3g", v.Path(), v.Shape(), dev)
				}
				checked++
			}
			if checked < 30 {
				t.Errorf("only %d weights checked", checked)
			}
		})
	}
}

// TestSampleLabelsFrom: labels drawn from a list of classes are those classes, each as often
// as it is listed; classes outside the model's are refused.
func TestSampleLabelsFrom(t *testing.T) {
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(6); err != nil {
		t.Fatal(err)
	}
	const n = 900
	out, err := model.ExecOnce(backend.Go(), store, func(scope *model.Scope, g *Graph) *Node {
		return SampleLabelsFrom(scope, g, n, 10, []int{2, 7, 7})
	})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[int32]int{}
	for _, y := range tensors.MustCopyFlatData[int32](out) {
		counts[y]++
	}
	if len(counts) != 2 || counts[2] < n/3-60 || counts[2] > n/3+60 || counts[7] != n-counts[2] {
		t.Errorf("labels drawn from [2 7 7]: %v", counts)
	}
	for _, tc := range []struct {
		classes []int
		k       int
		want    string
	}{
		{[]int{3, 10}, 10, "class 10 is not in [0, 10)"},
		{[]int{-1}, 10, "class -1"},
		{[]int{0}, 0, "unconditional"},
	} {
		if err := CheckClasses(tc.classes, tc.k); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("classes %v of %d: %v, want an error containing %q", tc.classes, tc.k, err, tc.want)
		}
	}
	if _, err := NewSampler(backend.Go(), model.NewStore(), Configs["biggan_tiny"], SamplerOptions{BatchSize: 2, Classes: []int{12}}); err == nil ||
		!strings.Contains(err.Error(), "class 12") {
		t.Errorf("a sampler of class 12 of 10: %v", err)
	}
}
