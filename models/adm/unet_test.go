package adm

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/support/exceptions"
)

func TestConfigsAreValid(t *testing.T) {
	for _, name := range ConfigNames() {
		if err := Configs[name].Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := GetConfig("adm_nope"); err == nil || !strings.Contains(err.Error(), "adm_tiny") {
		t.Errorf("GetConfig of an unknown name: %v, want an error listing the known ones", err)
	}
	if n := NumParams(Configs["adm_tiny"]); n < 1_000_000 || n > 3_000_000 {
		t.Errorf("adm_tiny has %d parameters, want 1-3M", n)
	}
	bad := Configs["adm_tiny"]
	bad.AttentionResolutions = []int{3}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "3 px") {
		t.Errorf("attention at 3 px of 32: %v", err)
	}
}

func TestAttentionRatesAndInputSize(t *testing.T) {
	cfg := Configs["adm_256x256_uncond"]
	if got := cfg.AttentionRates(); !slices.Equal(got, []int{8, 16, 32}) {
		t.Errorf("attention rates %v, want 8 16 32", got)
	}
	if err := cfg.CheckInputSize(256, 96); err != nil {
		t.Errorf("256x96: %v", err)
	}
	err := cfg.CheckInputSize(256, 100)
	if err == nil || !strings.Contains(err.Error(), "width 100") || !strings.Contains(err.Error(), "multiple of 32") {
		t.Errorf("256x100: got %v, want an error naming width 100 and the multiple 32", err)
	}
}

// TestTinyForward runs the tiny model at 32 and 64 px: the shapes of the outputs and taps, and
// the zero-initialised output conv making the initial prediction exactly 0.
func TestTinyForward(t *testing.T) {
	cfg := Configs["adm_tiny"]
	for _, size := range []int{32, 64} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			store := model.NewStore()
			if err := store.SetRNGStateFromSeed(1); err != nil {
				t.Fatal(err)
			}
			x := gradcheck.RandomTensor(3, 2, size, size, 3)
			ts := tensors.FromValue([]float64{10, 900})
			taps := []string{"dec_s4", "dec_s2", "dec_s1", "middle", "output/level1/up", "input/level0/block0"}
			wantInfo := []TapInfo{{"dec_s4", 64, 4}, {"dec_s2", 64, 2}, {"dec_s1", 32, 1}, {"middle", 64, 4},
				{"output/level1/up", 64, 1}, {"input/level0/block0", 32, 1}}
			var info []TapInfo
			outs := model.MustExecOnceN(testBackend(), store, func(scope *model.Scope, x, ts *Node) []*Node {
				o := New(scope, cfg).Taps(taps...).Done(x, ts, nil)
				info = o.TapInfo
				res := []*Node{o.Eps, o.Var}
				for _, name := range taps {
					res = append(res, o.Taps[name])
				}
				return res
			}, x, ts)
			if !slices.Equal(info, wantInfo) {
				t.Errorf("tap info %v, want %v", info, wantInfo)
			}
			for i, o := range outs[:2] {
				if !slices.Equal(o.Shape().Dimensions, []int{2, size, size, 3}) {
					t.Errorf("output %d: shape %s", i, o.Shape())
				}
				for _, v := range tensors.MustCopyFlatData[float64](o) {
					if v != 0 {
						t.Fatalf("output %d: the initial output must be exactly 0 (zero-initialised out conv), found %g", i, v)
					}
				}
			}
			for i, in := range wantInfo {
				want := []int{2, size / in.Stride, size / in.Stride, in.Channels}
				if got := outs[2+i].Shape().Dimensions; !slices.Equal(got, want) {
					t.Errorf("tap %s: shape %v, want %v", in.Name, got, want)
				}
			}
			// The default taps are the decoder levels, coarsest first.
			if got := New(store.RootScope(), cfg).TapInfo(); !slices.Equal(got, wantInfo[:3]) {
				t.Errorf("default taps %v, want %v", got, wantInfo[:3])
			}
		})
	}
}

func TestTapNames(t *testing.T) {
	cfg := Configs["adm_256x256_uncond"]
	if got := DefaultTaps(cfg); !slices.Equal(got, []string{"dec_s32", "dec_s16", "dec_s8", "dec_s4"}) {
		t.Errorf("default taps %v", got)
	}
	names := TapNames(cfg)
	// 1 stem + 6 levels * 2 blocks + 5 downs + middle + 6 * 3 blocks + 5 ups + 6 aliases.
	if len(names) != 1+12+5+1+18+5+6 {
		t.Errorf("%d tap names: %v", len(names), names)
	}
	// The paper's "decoder blocks 3, 6, 9, 12" before up-sampling: output blocks 2, 5, 8, 11.
	for i, want := range []TapInfo{{"output/level5/block2", 1024, 32}, {"output/level4/block2", 1024, 16},
		{"output/level3/block2", 512, 8}, {"output/level2/block2", 512, 4}, {"output/level2/up", 512, 2}} {
		got, err := LookupTap(cfg, want.Name)
		if err != nil || got != want {
			t.Errorf("tap %d: got %v (%v), want %v", i, got, err, want)
		}
	}
	_, err := LookupTap(cfg, "dec_s64")
	if err == nil || !strings.Contains(err.Error(), "dec_s32") || !strings.Contains(err.Error(), "output/level0/block2") {
		t.Errorf("unknown tap: %v, want an error listing the valid taps", err)
	}
	msg := panicMessage(func() { New(model.NewStore().RootScope(), cfg).Taps("dec_s4", "decoder3") })
	if !strings.Contains(msg, `"decoder3"`) || !strings.Contains(msg, "dec_s16") {
		t.Errorf("Taps with a wrong name: panic %q, want one naming it and listing the valid taps", msg)
	}
}

func TestWrongInputSizePanics(t *testing.T) {
	cfg := Configs["adm_tiny"]
	g := NewGraph(backend.Go(), "wrong-size")
	defer g.Finalize()
	x := Zeros(g, shapeF64(1, 30, 32, 3))
	ts := Zeros(g, shapeF64(1))
	msg := panicMessage(func() { New(model.NewStore().RootScope(), cfg).Done(x, ts, nil) })
	if !strings.Contains(msg, "height 30") || !strings.Contains(msg, "multiple of 4") {
		t.Errorf("input 30x32: panic %q, want one naming height 30 and the multiple 4", msg)
	}
}

func panicMessage(fn func()) (msg string) {
	err := exceptions.TryCatch[error](fn)
	if err == nil {
		return ""
	}
	return err.Error()
}

// gradConfig is a UNet small enough for a float64 gradient check of the whole network:
// 8 channels in 4 GroupNorm groups, 2 levels, attention at the second, 8x8 inputs.
func gradConfig(scaleShift, updown bool) Config {
	return Config{ImageSize: 8, InChannels: 3, OutChannels: 2, ModelChannels: 8, ChannelMult: []int{1, 2},
		NumResBlocks: 1, AttentionResolutions: []int{4}, NumHeadChannels: 8, UseScaleShiftNorm: scaleShift,
		ResblockUpdown: updown, ConvResample: true, LearnSigma: true, NumClasses: 3, NormGroups: 4}
}

func TestResBlockGradient(t *testing.T) {
	x := gradcheck.RandomTensor(1, 2, 4, 4, 8)
	emb := gradcheck.RandomTensor(2, 2, 6)
	for _, tc := range []struct {
		name       string
		out        int
		resample   Resample
		scaleShift bool
	}{
		{"film/widen", 12, NoResample, true},
		{"add/same", 8, NoResample, false},
		{"film/down", 8, Down, true},
		{"add/up", 8, Up, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := BlockOptions{NormGroups: 4, UseScaleShiftNorm: tc.scaleShift, NoZeroInit: true}
			gradcheck.Check(t, gradcheck.Options{MaxElements: 20}, func(scope *model.Scope, in []*Node) *Node {
				return ResBlock(scope, in[0], in[1], tc.out, tc.resample, opts)
			}, x, emb)
		})
	}
}

func TestAttentionBlockGradient(t *testing.T) {
	x := gradcheck.RandomTensor(4, 2, 3, 3, 8)
	opts := BlockOptions{NormGroups: 4, NoZeroInit: true}
	gradcheck.Check(t, gradcheck.Options{MaxElements: 20}, func(scope *model.Scope, in []*Node) *Node {
		return AttentionBlock(scope, in[0], 2, opts)
	}, x)
}

func TestResampleGradient(t *testing.T) {
	x := gradcheck.RandomTensor(5, 2, 4, 6, 4)
	for name, fn := range map[string]func(*model.Scope, *Node) *Node{
		"down/conv": func(s *model.Scope, x *Node) *Node { return Downsample(s, x, true) },
		"down/pool": func(s *model.Scope, x *Node) *Node { return Downsample(s, x, false) },
		"up/conv":   func(s *model.Scope, x *Node) *Node { return Upsample(s, x, true) },
	} {
		t.Run(name, func(t *testing.T) {
			gradcheck.Check(t, gradcheck.Options{MaxElements: 20}, func(scope *model.Scope, in []*Node) *Node {
				return fn(scope, in[0])
			}, x)
		})
	}
}

// TestUNetGradient checks the whole (narrow) UNet, with its label embedding, against finite
// differences: the gradient of the images and of a sample of every variable's elements.
func TestUNetGradient(t *testing.T) {
	x := gradcheck.RandomTensor(6, 2, 8, 8, 3)
	ts := tensors.FromValue([]float64{3, 700})
	y := tensors.FromValue([]int32{2, 0})
	for _, tc := range []struct {
		name               string
		scaleShift, updown bool
	}{{"film+resblock-updown", true, true}, {"add+conv-resample", false, false}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := gradConfig(tc.scaleShift, tc.updown)
			gradcheck.Check(t, gradcheck.Options{MaxElements: 4, Inputs: []int{0}}, func(scope *model.Scope, in []*Node) *Node {
				u := New(scope, cfg).Taps("dec_s2")
				u.opts.NoZeroInit = true
				o := u.Done(in[0], in[1], in[2])
				return Concatenate([]*Node{o.Eps, MulScalar(o.Var, 0.5)}, 3)
			}, x, ts, y)
		})
	}
}

func shapeF64(dims ...int) shapes.Shape { return shapes.Make(dtypes.Float64, dims...) }

// TestTapsOnlyGraphRuns returns an early encoder tap alone: the variables of every later block
// then feed only dead nodes, which the Go backend cannot run unless they are declared first
// (see declareVariables).
func TestTapsOnlyGraphRuns(t *testing.T) {
	cfg := Configs["adm_tiny"]
	out := model.MustExecOnce(testBackend(), model.NewStore(), func(scope *model.Scope, x, ts *Node) *Node {
		return New(scope, cfg).Taps("input/level0/block0").Done(x, ts, nil).Taps["input/level0/block0"]
	}, gradcheck.RandomTensor(1, 1, 32, 32, 3), tensors.FromValue([]float64{5}))
	if !slices.Equal(out.Shape().Dimensions, []int{1, 32, 32, 32}) {
		t.Errorf("tap shape %s", out.Shape())
	}
}

// testBackend is the Go backend (its worker-pool deadlock is fixed in third_party/compute).
func testBackend() compute.Backend { return backend.Go() }
