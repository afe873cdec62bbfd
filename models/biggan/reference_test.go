package biggan

import (
	"encoding/json"
	"math"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// reference is testdata/reference.json, written by testdata/make_reference.py from
// ajbrock/BigGAN-PyTorch (commit 9845943) under Debian's python3-torch 1.13.1:
//
//	git clone https://github.com/ajbrock/BigGAN-PyTorch /tmp/biggan
//	/usr/bin/python3 models/biggan/testdata/make_reference.py /tmp/biggan > models/biggan/testdata/reference.json
//
// counts[name] are sum(p.numel() for p in net.parameters()) of the reference's Generator and
// Discriminator built with the flags of our configuration (see referenceParams) and of the
// variants TestReferenceCounts checks; micro is one
// float64 training-mode pass of a small conditional BigGAN whose parameters were set by
// detValues.
type reference struct {
	Counts map[string][2]int `json:"counts"`
	Micro  struct {
		Z      [][]float64                    `json:"z"`
		Y      []int32                        `json:"y"`
		Keys   map[string][]torchEntry        `json:"keys"`
		Maps   []struct{ Sum, SumSq float64 } `json:"maps"`
		Image  []float64                      `json:"image_nhwc"`
		Shape  []int                          `json:"image_shape_nhwc"`
		Logits []float64                      `json:"logits"`
	} `json:"micro"`
}

// torchEntry is a [key, shape] pair.
type torchEntry [2]json.RawMessage

func (e torchEntry) split() (key string, shape []int) {
	if err := json.Unmarshal(e[0], &key); err != nil {
		panic(err)
	}
	if err := json.Unmarshal(e[1], &shape); err != nil {
		panic(err)
	}
	return
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

// TestReferenceCounts: the counts quoted in referenceParams and in the Configs comments are
// those of the reference file; the conditional version of biggan_small and two variants of
// biggan_256 match the reference too: the 128 model's flags on the 256 architecture (attention
// at 64 px, dim_z 120 rounded down to 119: what biggan_256 was), and those flags with the
// attention moved to 128 px (138,240 fewer parameters in G and 34,560 in D).
func TestReferenceCounts(t *testing.T) {
	ref := loadReference(t)
	for name, want := range referenceParams {
		if ref.Counts[name] != want {
			t.Errorf("%s: reference.json has %v, referenceParams %v", name, ref.Counts[name], want)
		}
	}
	small := Configs["biggan_small"].clone()
	small.NumClasses, small.Hier, small.DimZ, small.SharedDim = 10, true, 120, 128
	z119 := func(attention int) Config {
		c := Configs["biggan_256"].clone()
		c.DimZ, c.GAttention, c.DAttention = 119, []int{attention}, []int{attention}
		return c
	}
	for name, cfg := range map[string]Config{
		"biggan_small_cond10":     small,
		"biggan_256_attn64_z120":  z119(64),
		"biggan_256_attn128_z120": z119(128),
	} {
		want, ok := ref.Counts[name]
		if !ok {
			t.Errorf("reference.json has no %s", name)
		}
		if g, d := NumParams(cfg); [2]int{g, d} != want {
			t.Errorf("%s: G %d, D %d; the reference %v", name, g, d, want)
		}
	}
	old, fixed := ref.Counts["biggan_256_attn64_z120"], ref.Counts["biggan_256_attn128_z120"]
	if old[0]-fixed[0] != 138_240 || old[1]-fixed[1] != 34_560 {
		t.Errorf("moving the attention of biggan_256 from 64 to 128 px removes G %d and D %d parameters, want 138240 and 34560",
			old[0]-fixed[0], old[1]-fixed[1])
	}
}

// detValues mirrors make_reference.py's det_values.
func detValues(key string, n int) []float64 {
	s := 0
	for _, b := range []byte(key) {
		s += int(b)
	}
	v := make([]float64, n)
	for i := range v {
		v[i] = 0.5 * math.Sin(0.37*float64(i)+0.01*float64(s)+0.1)
	}
	return v
}

var blockKey = regexp.MustCompile(`^blocks\.(\d+)\.([01])\.`)

// torchToVariable maps a parameter or buffer of the reference's network ("G" or "D") to our
// variable: path, and the tensor in our layout (HWIO convs, [in, out] linear weights).
func torchToVariable(net, key string, shape []int, values []float64) (string, *tensors.Tensor) {
	root := map[string]string{"G": "/" + GeneratorScope, "D": "/" + DiscriminatorScope}[net]
	k := key
	if m := blockKey.FindStringSubmatch(k); m != nil {
		sub := "blocks/block" + m[1] + "/"
		if m[2] == "1" {
			sub += "attention/"
		}
		k = sub + k[len(m[0]):]
	}
	k = strings.NewReplacer("output_layer.0.", "output/bn/", "output_layer.2.", "output/conv/").Replace(k)
	parts := strings.Split(strings.ReplaceAll(k, ".", "/"), "/")
	last := parts[len(parts)-1]
	module := strings.Join(parts[:len(parts)-1], "/")
	switch {
	case module == "output/bn":
		last = map[string]string{"gain": "scale", "bias": "offset"}[last]
	case last == "weight" && (module == "shared" || module == "embed"):
		last = "embeddings"
	default:
		last = map[string]string{"weight": "weights", "bias": "biases", "u0": "sn_u", "gamma": "gamma"}[last]
	}
	path := root + "/" + module + "/" + last
	switch {
	case len(shape) == 4: // OIHW -> HWIO
		o, in, kh, kw := shape[0], shape[1], shape[2], shape[3]
		out := make([]float64, len(values))
		for a := range o {
			for b := range in {
				for y := range kh {
					for x := range kw {
						out[((y*kw+x)*in+b)*o+a] = values[((a*in+b)*kh+y)*kw+x]
					}
				}
			}
		}
		return path, tensors.FromFlatDataAndDimensions(out, kh, kw, in, o)
	case last == "sn_u": // [1, out] -> [out]
		return path, tensors.FromFlatDataAndDimensions(values, shape[1])
	case len(shape) == 2 && last != "embeddings": // torch Linear [out, in] -> [in, out]
		o, in := shape[0], shape[1]
		out := make([]float64, len(values))
		for a := range o {
			for b := range in {
				out[b*o+a] = values[a*in+b]
			}
		}
		return path, tensors.FromFlatDataAndDimensions(out, in, o)
	case len(shape) == 0:
		return path, tensors.FromScalar(values[0])
	}
	return path, tensors.FromFlatDataAndDimensions(values, shape...)
}

// TestMatchesReference runs the micro model of make_reference.py with the reference's
// parameters (and spectral-norm vectors u) in training mode, in float64, and compares G's
// image, its feature maps and D's logits with the reference's.
func TestMatchesReference(t *testing.T) {
	ref := loadReference(t).Micro
	cfg := Config{
		Resolution: 16, BottomWidth: 4, NumClasses: 5, DimZ: 6, SharedDim: 4, Hier: true,
		GCh: 4, GChannels: []int{4, 4, 2}, GAttention: []int{8},
		DCh: 4, DChannels: []int{2, 4, 4}, DDownsample: []bool{true, true, false}, DAttention: []int{8},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	store := model.NewStore()
	mapped := map[string]bool{}
	for _, net := range []string{"G", "D"} {
		for _, e := range ref.Keys[net] {
			key, shape := e.split()
			size := 1
			for _, d := range shape {
				size *= d
			}
			path, value := torchToVariable(net, key, shape, detValues(key, size))
			if _, err := store.CreateVariable(path, value); err != nil {
				t.Fatalf("%s %s -> %s: %v", net, key, path, err)
			}
			mapped[path] = true
		}
	}
	n := len(ref.Y)
	z := make([]float64, 0, n*cfg.DimZ)
	for _, row := range ref.Z {
		z = append(z, row...)
	}
	taps := TapNames(cfg)
	exec, err := model.NewExec(backend.Go(), store, func(scope *model.Scope, zs, ys *Node) []*Node {
		store.SetTraining(zs.Graph(), true)
		out := Generate(scope.In(GeneratorScope), zs, ys, cfg, taps...)
		res := []*Node{out.Image, Discriminate(scope.In(DiscriminatorScope), out.Image, ys, cfg)}
		for _, name := range taps {
			res = append(res, out.Taps[name])
		}
		return res
	})
	if err != nil {
		t.Fatal(err)
	}
	outs, err := exec.Exec(tensors.FromFlatDataAndDimensions(z, n, cfg.DimZ), tensors.FromValue(ref.Y))
	if err != nil {
		t.Fatal(err)
	}

	// Every trainable variable (and every power-iteration vector u) came from the reference.
	for v := range store.IterVariables() {
		if v.Trainable && !mapped[v.Path()] {
			t.Errorf("variable %s has no reference parameter", v.Path())
		}
		if v.Name() == "sn_u" && !mapped[v.Path()] {
			t.Errorf("spectral-norm vector %s has no reference u0", v.Path())
		}
	}

	relErr := func(got, want []float64) float64 {
		var d, w float64
		for i := range want {
			d += (got[i] - want[i]) * (got[i] - want[i])
			w += want[i] * want[i]
		}
		return math.Sqrt(d / w)
	}
	img := tensors.MustCopyFlatData[float64](outs[0])
	if !slices.Equal(outs[0].Shape().Dimensions, ref.Shape) {
		t.Fatalf("image %s, reference %v", outs[0].Shape(), ref.Shape)
	}
	if e := relErr(img, ref.Image); e > 1e-10 {
		t.Errorf("image: relative error %.3g", e)
	} else {
		t.Logf("image: relative error %.3g", e)
	}
	logits := tensors.MustCopyFlatData[float64](outs[1])
	if e := relErr(logits, ref.Logits); e > 1e-10 {
		t.Errorf("D logits %v, reference %v (relative error %.3g)", logits, ref.Logits, e)
	} else {
		t.Logf("D logits %v: relative error %.3g", logits, e)
	}
	for i, name := range taps {
		m := tensors.MustCopyFlatData[float64](outs[2+i])
		var sum, sumSq float64
		for _, v := range m {
			sum, sumSq = sum+v, sumSq+v*v
		}
		want := ref.Maps[i]
		if math.Abs(sum-want.Sum) > 1e-9*math.Max(1, math.Abs(want.Sum)) || math.Abs(sumSq-want.SumSq) > 1e-9*want.SumSq {
			t.Errorf("%s: sum %.12g and sum of squares %.12g, reference %.12g and %.12g", name, sum, sumSq, want.Sum, want.SumSq)
		}
	}
}
