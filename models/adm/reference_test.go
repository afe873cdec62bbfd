package adm

import (
	"encoding/json"
	"math"
	"os"
	"slices"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// reference is testdata/reference.json, written by testdata/make_reference.py from
// openai/guided-diffusion (commit 22e0df8) under Debian's python3-torch 1.13:
//
//	git clone https://github.com/openai/guided-diffusion /tmp/gd
//	/usr/bin/python3 models/adm/testdata/make_reference.py /tmp/gd > models/adm/testdata/reference.json
//
// counts[name] is sum(p.numel() for p in create_model(**flags).parameters()) with the flags of
// our configuration of that name (for adm_256x256_uncond: the README's MODEL_FLAGS of the
// 256x256 unconditional model), keys[name] the state_dict keys and shapes, and micro[name] one
// float64 forward pass of a small UNetModel whose parameters were set by detValues.
type reference struct {
	Counts map[string]int          `json:"counts"`
	Keys   map[string][]torchEntry `json:"keys"`
	Micro  map[string]struct {
		Timesteps    []float64    `json:"timesteps"`
		Labels       []int32      `json:"labels"`
		Keys         []torchEntry `json:"keys"`
		Output       []float64    `json:"output_nhwc"`
		OutputShape  []int        `json:"output_shape_nhwc"`
		OutputBlocks []struct {
			Sum   float64 `json:"sum"`
			SumSq float64 `json:"sumsq"`
			Shape []int   `json:"shape_nchw"`
		} `json:"output_blocks"`
	} `json:"micro"`
}

// torchEntry is a [key, shape] pair.
type torchEntry [2]json.RawMessage

func (e torchEntry) key() string {
	var s string
	if err := json.Unmarshal(e[0], &s); err != nil {
		panic(err)
	}
	return s
}

func (e torchEntry) shape() []int {
	var s []int
	if err := json.Unmarshal(e[1], &s); err != nil {
		panic(err)
	}
	return s
}

func loadReference(t *testing.T) *reference {
	t.Helper()
	data, err := os.ReadFile("testdata/reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref reference
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatalf("testdata/reference.json: %v", err)
	}
	return &ref
}

// microConfigs are the configurations of make_reference.py's MICRO.
var microConfigs = map[string]Config{
	"micro_film": {
		ImageSize: 16, InChannels: 3, OutChannels: 3, ModelChannels: 32, ChannelMult: []int{1, 2},
		NumResBlocks: 1, AttentionResolutions: []int{8}, NumHeadChannels: 32, UseScaleShiftNorm: true,
		ResblockUpdown: true, ConvResample: true, LearnSigma: true, NumClasses: 1000,
	},
	"micro_plain": {
		ImageSize: 16, InChannels: 3, OutChannels: 3, ModelChannels: 32, ChannelMult: []int{1, 2},
		NumResBlocks: 1, AttentionResolutions: []int{8}, NumHeads: 2, ConvResample: true,
	},
}

// TestNumParamsMatchesGuidedDiffusion compares our parameter counts with guided-diffusion's
// create_model (see reference): 552,814,086 for the official 256x256 unconditional model.
func TestNumParamsMatchesGuidedDiffusion(t *testing.T) {
	ref := loadReference(t)
	if got := ref.Counts["adm_256x256_uncond"]; got != 552_814_086 {
		t.Fatalf("reference.json: adm_256x256_uncond has %d parameters, the test expects 552,814,086", got)
	}
	for name, want := range ref.Counts {
		if got := NumParams(Configs[name]); got != want {
			t.Errorf("%s: %d parameters, guided-diffusion's create_model has %d", name, got, want)
		}
	}
}

// TestTorchParamsMatchGuidedDiffusionKeys checks that TorchParams lists exactly guided-diffusion's
// state_dict keys, in order, with their shapes.
func TestTorchParamsMatchGuidedDiffusionKeys(t *testing.T) {
	ref := loadReference(t)
	check := func(name string, cfg Config, want []torchEntry) {
		got := TorchParams(cfg)
		if len(got) != len(want) {
			t.Errorf("%s: %d parameters, guided-diffusion's state_dict has %d", name, len(got), len(want))
		}
		for i := range min(len(got), len(want)) {
			if got[i].Key != want[i].key() || !slices.Equal(got[i].TorchShape, want[i].shape()) {
				t.Errorf("%s: parameter #%d is %s %v, guided-diffusion's is %s %v", name, i,
					got[i].Key, got[i].TorchShape, want[i].key(), want[i].shape())
				return
			}
		}
	}
	for name, keys := range ref.Keys {
		check(name, Configs[name], keys)
	}
	for name, m := range ref.Micro {
		check(name, microConfigs[name], m.Keys)
	}

	cfg := Configs["adm_256x256_uncond"]
	for _, tc := range []struct{ key, path string }{
		{"time_embed.0.weight", "time_embed/linear0/weights"},
		{"input_blocks.0.0.weight", "input/conv/weights"},
		{"input_blocks.2.0.out_layers.3.weight", "input/level0/block1/res/out_conv/weights"},
		{"input_blocks.3.0.emb_layers.1.bias", "input/level0/down/emb_proj/biases"},
		{"input_blocks.10.1.qkv.weight", "input/level3/block0/attn/qkv/weights"},
		{"middle_block.2.skip_connection.weight", ""},
		{"middle_block.1.proj_out.bias", "middle/attn/proj/biases"},
		{"output_blocks.0.0.skip_connection.weight", "output/level5/block0/res/skip/weights"},
		{"output_blocks.2.2.in_layers.2.weight", "output/level5/up/in_conv/weights"},
		{"output_blocks.17.0.in_layers.0.weight", "output/level0/block2/res/in_norm/scale"},
		{"out.2.weight", "out/conv/weights"},
	} {
		path, _, err := TorchKeyToScope(cfg, tc.key)
		switch {
		case tc.path == "" && err == nil:
			t.Errorf("%s: want an error, got %q", tc.key, path)
		case tc.path != "" && (err != nil || path != tc.path):
			t.Errorf("%s: got %q (%v), want %q", tc.key, path, err, tc.path)
		}
	}
}

// detValues mirrors make_reference.py's det_values: deterministic parameter values in torch's
// layout.
func detValues(key string, shape []int) []float64 {
	n := 1
	for _, d := range shape {
		n *= d
	}
	amp := 0.1
	if len(shape) > 1 {
		amp = 1 / math.Sqrt(float64(n/shape[0]))
	}
	seed := 0
	for j, c := range []byte(key) {
		seed += (j + 1) * int(c)
	}
	seed %= 1000
	v := make([]float64, n)
	for i := range v {
		v[i] = amp * math.Sin(0.1*float64(seed)+0.7*float64(i))
	}
	return v
}

// detInput mirrors make_reference.py's det_input, in NHWC.
func detInput(n, h, w, c int) *tensors.Tensor {
	v := make([]float64, 0, n*h*w*c)
	for in := range n {
		for ih := range h {
			for iw := range w {
				for ic := range c {
					v = append(v, math.Sin(0.3*float64(in*1000+ih*100+iw*10+ic))+0.1*float64(ic))
				}
			}
		}
	}
	return tensors.FromFlatDataAndDimensions(v, n, h, w, c)
}

// TestForwardMatchesGuidedDiffusion loads guided-diffusion's parameters (set by detValues) into
// our UNet through TorchParams and compares one float64 forward pass with UNetModel's, output
// and every output block.
func TestForwardMatchesGuidedDiffusion(t *testing.T) {
	ref := loadReference(t)
	for name, m := range ref.Micro {
		t.Run(name, func(t *testing.T) {
			cfg := microConfigs[name]
			store := model.NewStore()
			for _, p := range TorchParams(cfg) {
				data := Apply(p.Transform, detValues(p.Key, p.TorchShape), p.TorchShape)
				if _, err := store.CreateVariable("/"+p.Path, tensors.FromFlatDataAndDimensions(data, p.Transform.Shape(p.TorchShape)...)); err != nil {
					t.Fatal(err)
				}
			}
			numVars := store.NumVariables()

			// guided-diffusion's output_blocks[k] ends at the up-sampling where there is one.
			var blockTaps []string
			for _, s := range cfg.layout() {
				switch {
				case s.kind == stepUp:
					blockTaps[len(blockTaps)-1] = s.name
				case s.kind == stepDecoder:
					blockTaps = append(blockTaps, s.name)
				}
			}
			x := detInput(2, 16, 16, 3)
			ts := tensors.FromValue(m.Timesteps)
			var labels *tensors.Tensor
			if m.Labels != nil {
				labels = tensors.FromValue(m.Labels)
			}
			outs := model.MustExecOnceN(testBackend(), store, func(scope *model.Scope, ins []*Node) []*Node {
				var y *Node
				if len(ins) > 2 {
					y = ins[2]
				}
				o := New(scope, cfg).Taps(blockTaps...).Done(ins[0], ins[1], y)
				res := []*Node{o.Eps}
				if o.Var != nil {
					res[0] = Concatenate([]*Node{o.Eps, o.Var}, 3)
				}
				for _, name := range blockTaps {
					res = append(res, o.Taps[name])
				}
				return res
			}, append([]any{x, ts}, func() []any {
				if labels != nil {
					return []any{labels}
				}
				return nil
			}()...)...)
			if store.NumVariables() != numVars {
				t.Errorf("the UNet created %d variables beyond guided-diffusion's", store.NumVariables()-numVars)
			}

			got := tensors.MustCopyFlatData[float64](outs[0])
			if !slices.Equal(outs[0].Shape().Dimensions, m.OutputShape) {
				t.Fatalf("output shape %v, guided-diffusion's %v", outs[0].Shape().Dimensions, m.OutputShape)
			}
			maxDiff, maxRef := 0.0, 0.0
			for i, v := range m.Output {
				maxDiff = max(maxDiff, math.Abs(got[i]-v))
				maxRef = max(maxRef, math.Abs(v))
			}
			t.Logf("output: max |ours - guided-diffusion| = %.3g (max |output| %.3g)", maxDiff, maxRef)
			if maxDiff > 1e-9*max(maxRef, 1) {
				t.Errorf("output differs from guided-diffusion's by up to %.3g", maxDiff)
			}
			for k, b := range m.OutputBlocks {
				vals := tensors.MustCopyFlatData[float64](outs[1+k])
				var sum, sumSq float64
				for _, v := range vals {
					sum += v
					sumSq += v * v
				}
				if math.Abs(sum-b.Sum) > 1e-8*max(1, b.SumSq) || math.Abs(sumSq-b.SumSq) > 1e-9*max(1, b.SumSq) {
					t.Errorf("%s (output_blocks[%d]): sum %.12g, sum of squares %.12g; guided-diffusion's %.12g, %.12g",
						blockTaps[k], k, sum, sumSq, b.Sum, b.SumSq)
				}
				dims := outs[1+k].Shape().Dimensions
				if want := []int{b.Shape[0], b.Shape[2], b.Shape[3], b.Shape[1]}; !slices.Equal(dims, want) {
					t.Errorf("%s: shape %v, guided-diffusion's (NHWC) %v", blockTaps[k], dims, want)
				}
			}
		})
	}
}

// TestBuild256MatchesTorchParams builds (never runs) the official 256x256 model and the
// rectangular BDD100K one, and checks the output and tap shapes and that the variables are
// exactly those TorchParams maps guided-diffusion's keys to, with the transformed shapes.
func TestBuild256MatchesTorchParams(t *testing.T) {
	for _, name := range []string{"adm_256x256_uncond", "adm_bdd100k"} {
		t.Run(name, func(t *testing.T) {
			cfg := Configs[name]
			h, w := cfg.InputSize()
			store := model.NewStore()
			g := NewGraph(backend.Go(), "build-only-"+name)
			defer g.Finalize()
			x := Parameter(g, "x", shapes.Make(dtypes.Float32, 1, h, w, 3))
			ts := Parameter(g, "t", shapes.Make(dtypes.Float32, 1))
			out := New(store.RootScope(), cfg).Done(x, ts, nil)
			wantImg := []int{1, h, w, 3}
			if !slices.Equal(out.Eps.Shape().Dimensions, wantImg) || !slices.Equal(out.Var.Shape().Dimensions, wantImg) {
				t.Errorf("eps %s and var %s, want %v", out.Eps.Shape(), out.Var.Shape(), wantImg)
			}
			wantTaps := []TapInfo{{"dec_s32", 1024, 32}, {"dec_s16", 1024, 16}, {"dec_s8", 512, 8}, {"dec_s4", 512, 4}}
			if name == "adm_bdd100k" {
				wantTaps = []TapInfo{{"dec_s32", 512, 32}, {"dec_s16", 384, 16}, {"dec_s8", 256, 8}, {"dec_s4", 256, 4}}
			}
			if !slices.Equal(out.TapInfo, wantTaps) {
				t.Errorf("taps %v, want %v", out.TapInfo, wantTaps)
			}
			for _, info := range out.TapInfo {
				want := []int{1, h / info.Stride, w / info.Stride, info.Channels}
				if got := out.Taps[info.Name].Shape().Dimensions; !slices.Equal(got, want) {
					t.Errorf("tap %s: shape %v, want %v", info.Name, got, want)
				}
			}

			params := TorchParams(cfg)
			byPath := map[string]TorchParam{}
			for _, p := range params {
				byPath["/"+p.Path] = p
			}
			total, count := 0, 0
			for v := range store.IterVariables() {
				if !v.Trainable {
					continue
				}
				count++
				total += v.Shape().Size()
				p, ok := byPath[v.Path()]
				if !ok {
					t.Errorf("variable %s has no guided-diffusion parameter", v.Path())
					continue
				}
				if want := p.Transform.Shape(p.TorchShape); !slices.Equal(v.Shape().Dimensions, want) {
					t.Errorf("variable %s is %s; %s %v maps to %v", v.Path(), v.Shape(), p.Key, p.TorchShape, want)
				}
			}
			if count != len(params) || total != NumParams(cfg) {
				t.Errorf("%d variables with %d parameters; guided-diffusion has %d with %d", count, total, len(params), NumParams(cfg))
			}
		})
	}
}

func TestTransformApply(t *testing.T) {
	// A torch conv weight [out=2, in=3, kh=1, kw=2] with values 0..11 -> HWIO [1, 2, 3, 2].
	data := make([]int, 12)
	for i := range data {
		data[i] = i
	}
	got := Apply(ConvOIHWToHWIO, data, []int{2, 3, 1, 2})
	// HWIO[0][kw][i][o] = torch[o][i][0][kw] = o*6 + i*2 + kw.
	want := []int{0, 6, 2, 8, 4, 10, 1, 7, 3, 9, 5, 11}
	if !slices.Equal(got, want) {
		t.Errorf("ConvOIHWToHWIO: got %v, want %v", got, want)
	}
	if got := Apply(Conv1DToInOut, []int{0, 1, 2, 3, 4, 5}, []int{3, 2, 1}); !slices.Equal(got, []int{0, 2, 4, 1, 3, 5}) {
		t.Errorf("Conv1DToInOut: got %v", got)
	}
	if s := Conv1DToInOut.Shape([]int{3, 2, 1}); !slices.Equal(s, []int{2, 3}) {
		t.Errorf("Conv1DToInOut shape: %v", s)
	}
}
