package convert

import (
	"context"
	"encoding/binary"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/safetensors"
	"github.com/dreamteacher-go/dreamteacher/models/adm"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/backbones/convnext"
	"github.com/dreamteacher-go/dreamteacher/models/backbones/resnet"
	"github.com/dreamteacher-go/dreamteacher/train"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// The fixtures in testdata were made by testdata/make_fixtures.py from the reference code
// (torchvision 0.14, timm, facebookresearch/ConvNeXt, guided-diffusion) under Debian's
// python3-torch 1.13; the header of the script says how to run it. These tests never run
// Python: they convert the saved files, load the result with train.LoadScope into a
// fine-tuning-like store under /model/backbone, run our model in float32 on the Go backend and
// compare its outputs with the ones PyTorch computed.

// reference reads a *.ref.safetensors file: float32 arrays by name.
func reference(t *testing.T, file string) map[string]safetensors.Tensor {
	t.Helper()
	st, _, err := safetensors.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func refTensor(t *testing.T, st safetensors.Tensor) *tensors.Tensor {
	t.Helper()
	if st.DType != "F32" {
		t.Fatalf("reference dtype %s", st.DType)
	}
	v := make([]float32, len(st.Data)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(st.Data[4*i:]))
	}
	return tensors.FromFlatDataAndDimensions(v, st.Shape...)
}

// compare checks got against PyTorch's want within 1e-4 of want's largest magnitude.
func compare(t *testing.T, name string, got *tensors.Tensor, want safetensors.Tensor) {
	t.Helper()
	if !slices.Equal(got.Shape().Dimensions, want.Shape) {
		t.Errorf("%s: shape %v, PyTorch %v", name, got.Shape().Dimensions, want.Shape)
		return
	}
	g := tensors.MustCopyFlatData[float32](got)
	w := tensors.MustCopyFlatData[float32](refTensor(t, want))
	maxDiff, scale := 0.0, 0.0
	for i := range w {
		maxDiff = math.Max(maxDiff, math.Abs(float64(g[i]-w[i])))
		scale = math.Max(scale, math.Abs(float64(w[i])))
	}
	t.Logf("%s: max |ours - PyTorch| = %.3g (max |PyTorch| %.3g)", name, maxDiff, scale)
	if maxDiff > 1e-4*scale {
		t.Errorf("%s differs from PyTorch's by up to %.3g (scale %.3g)", name, maxDiff, scale)
	}
}

// convertAndLoad runs the conversion into a temporary checkpoint and loads it with
// train.LoadScope into a new store, strictly.
func convertAndLoad(t *testing.T, opts Options) (*model.Store, Report) {
	t.Helper()
	opts.Out = filepath.Join(t.TempDir(), "converted.safetensors")
	if opts.Scope == "" {
		opts.Scope = "/model/backbone"
	}
	rep, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", rep)
	store := model.NewStore()
	n, err := train.LoadScope(store, rep.Out, train.LoadSpec{From: "/model/backbone", To: "/model/backbone", Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if n != rep.Variables {
		t.Errorf("LoadScope loaded %d variables, the conversion wrote %d", n, rep.Variables)
	}
	return store, rep
}

func backboneOutputs(t *testing.T, store *model.Store, x *tensors.Tensor, build func(scope *model.Scope, x *Node) backbones.Output) map[string]*tensors.Tensor {
	t.Helper()
	names := []string{"logits", "C2", "C3", "C4", "C5"}
	before := store.NumVariables()
	outs := model.MustExecOnceN(backend.Go(), store, func(scope *model.Scope, x *Node) []*Node {
		out := build(scope.In("model").In("backbone"), x)
		nodes := []*Node{out.Logits}
		for _, n := range names[1:] {
			nodes = append(nodes, out.Features.Get(n))
		}
		return nodes
	}, x)
	if store.NumVariables() != before {
		t.Errorf("the model created %d variables the checkpoint lacks", store.NumVariables()-before)
	}
	m := map[string]*tensors.Tensor{}
	for i, n := range names {
		m[n] = outs[i]
	}
	return m
}

func TestResNetMatchesTorchvision(t *testing.T) {
	for _, tc := range []struct {
		file, ref string
		cfg       resnet.Config
		format    string
		nested    string
		prefix    string
		dtype     string
	}{
		{"resnet_basic.pth", "resnet_basic.ref.safetensors", resnet.Config{Block: resnet.Basic, Layers: [4]int{1, 1, 1, 1}, Width: 8},
			"torch-zip", "state_dict", "module.", "F32"},
		{"resnet_basic.safetensors", "resnet_basic.ref.safetensors", resnet.Config{Block: resnet.Basic, Layers: [4]int{1, 1, 1, 1}, Width: 8},
			"safetensors", "", "", "F32"},
		{"resnet_bottleneck.pth", "resnet_bottleneck.ref.safetensors", resnet.Config{Block: resnet.Bottleneck, Layers: [4]int{1, 1, 1, 1}, Width: 8},
			"torch-legacy", "", "", "BF16"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			store, rep := convertAndLoad(t, Options{Family: "resnet", Input: filepath.Join("testdata", tc.file)})
			if rep.Format != tc.format || rep.Nested != tc.nested || rep.Prefix != tc.prefix || rep.Layout != "torchvision" {
				t.Errorf("format %q, nested %q, prefix %q, layout %q; want %q, %q, %q, torchvision",
					rep.Format, rep.Nested, rep.Prefix, rep.Layout, tc.format, tc.nested, tc.prefix)
			}
			if !strings.HasPrefix(rep.Arch, "resnet(") || rep.DTypes[tc.dtype] != rep.Variables {
				t.Errorf("arch %q, dtypes %v", rep.Arch, rep.DTypes)
			}
			// Every num_batches_tracked, and nothing else, is unused.
			for _, k := range rep.Unused {
				if !strings.HasSuffix(k, "num_batches_tracked") {
					t.Errorf("unused key %s", k)
				}
			}
			if len(rep.Unused) == 0 {
				t.Errorf("num_batches_tracked should be listed unused")
			}
			// Running statistics stay non-trainable.
			if v := store.GetVariable("/model/backbone/stem/bn1/running_var"); v == nil || v.Trainable {
				t.Errorf("running_var missing or trainable: %v", v)
			}
			ref := reference(t, tc.ref)
			outs := backboneOutputs(t, store, refTensor(t, ref["input"]), func(scope *model.Scope, x *Node) backbones.Output {
				return resnet.Build(scope, x, tc.cfg, backbones.Options{NumClasses: 10})
			})
			for name, got := range outs {
				compare(t, name, got, ref[name])
			}
		})
	}
}

func TestConvNeXtMatchesTimm(t *testing.T) {
	cfg := convnext.Config{Depths: [4]int{1, 1, 2, 1}, Dims: [4]int{8, 16, 24, 32}}
	ref := reference(t, "convnext.ref.safetensors")
	for _, tc := range []struct{ file, layout, nested, dtype string }{
		{"convnext_timm.safetensors", "timm", "", "F32"},
		{"convnext_fb.pth", "facebookresearch", "model", "F32"},
		{"convnext_tv.pth", "torchvision", "", "F64"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			store, rep := convertAndLoad(t, Options{Family: "convnext", Input: filepath.Join("testdata", tc.file)})
			if rep.Layout != tc.layout || rep.Nested != tc.nested || len(rep.Unused) != 0 || rep.DTypes[tc.dtype] != rep.Variables {
				t.Errorf("layout %q, nested %q, unused %v, dtypes %v; want %q, %q, none, all %s",
					rep.Layout, rep.Nested, rep.Unused, rep.DTypes, tc.layout, tc.nested, tc.dtype)
			}
			outs := backboneOutputs(t, store, refTensor(t, ref["input"]), func(scope *model.Scope, x *Node) backbones.Output {
				return convnext.Build(scope, x, cfg, backbones.Options{NumClasses: 5})
			})
			for name, got := range outs {
				compare(t, name, got, ref[name])
			}
		})
	}
}

// admTinyConfig is make_fixtures.py's UNet.
var admTinyConfig = adm.Config{
	ImageSize: 16, InChannels: 3, OutChannels: 3, ModelChannels: 32, ChannelMult: []int{1, 1},
	NumResBlocks: 1, AttentionResolutions: []int{8}, NumHeadChannels: 16, UseScaleShiftNorm: true,
	ResblockUpdown: true, ConvResample: true, LearnSigma: true,
}

func TestADMMatchesGuidedDiffusion(t *testing.T) {
	store, rep := convertAndLoad(t, Options{Family: "adm", Config: admTinyConfig, Input: "testdata/adm_tiny.pt"})
	if rep.Layout != "guided-diffusion" || len(rep.Unused) != 0 || rep.DTypes["F16"] != rep.Variables ||
		rep.Variables != len(adm.TorchParams(admTinyConfig)) || rep.Params != int64(adm.NumParams(admTinyConfig)) {
		t.Errorf("layout %q, unused %v, dtypes %v, %d variables with %d values", rep.Layout, rep.Unused, rep.DTypes, rep.Variables, rep.Params)
	}
	ref := reference(t, "adm_tiny.ref.safetensors")
	outs := model.MustExecOnceN(backend.Go(), store, func(scope *model.Scope, x, ts *Node) []*Node {
		o := adm.New(scope.In("model").In("backbone"), admTinyConfig).Taps().Done(x, ts, nil)
		return []*Node{o.Eps, o.Var}
	}, refTensor(t, ref["input"]), refTensor(t, ref["timesteps"]))
	compare(t, "eps", outs[0], ref["eps"])
	compare(t, "var", outs[1], ref["var"])
}
