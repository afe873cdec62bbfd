package convnext

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/flops"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// tinyConfig is small enough to run in float64 and to check against PyTorch.
var tinyConfig = Config{Depths: [4]int{1, 2, 1, 1}, Dims: [4]int{4, 8, 8, 12}}

// torchValue is the deterministic value of a parameter given its timm key, in PyTorch's layout
// (flat index i): 0.5 sin(0.37 i + h(key)), with h the sum of the key's bytes mod 97.
func torchValue(key string, i int) float64 {
	h := 0
	for _, c := range []byte(key) {
		h += int(c)
	}
	return 0.5 * math.Sin(0.37*float64(i)+float64(h%97))
}

// TestMatchesPyTorch runs a tiny ConvNeXt in float64 with weights set through TimmKey from
// deterministic values and compares it with the same network written with torch.nn.functional
// (timm's layout: the script is in the comment below). This checks the architecture, the
// layouts (HWIO/OIHW, [in,out]/[out,in]) and the checkpoint mapping at once.
//
// Reference: /usr/bin/python3 (torch 1.13, float64) running
//
//	x = stem.0 conv 4x4/s4 -> LayerNorm2d(stem.1, eps 1e-6)
//	per stage s: [LayerNorm2d(downsample.0) -> conv 2x2/s2 (downsample.1)] ->
//	  blocks: x + gamma * fc2(gelu(fc1(LN(dwconv7x7(x)))))  (channels-last between dwconv and gamma)
//	head: mean over H, W -> LayerNorm(head.norm) -> Linear(head.fc)
//
// with depths 1,2,1,1, dims 4,8,8,12, 3 classes, on x[n,h,w,c] = sin(0.05 i) (NHWC flat index).
func TestMatchesPyTorch(t *testing.T) {
	const classes = 3
	build := func(scope *model.Scope, x *Node) map[string]*Node {
		out := Build(scope, x, tinyConfig, backbones.Options{NumClasses: classes})
		m := map[string]*Node{"logits": out.Logits}
		for k, v := range out.Features.Maps {
			m[k] = v
		}
		return m
	}
	input := shapes.Make(dtypes.Float64, 1, 32, 32, 3)
	r, err := flops.Inspect(backend.Go(), input, build)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Variables) != 65 || r.Params != 6239 {
		t.Errorf("%d variables with %d parameters, the reference has 65 tensors with 6239", len(r.Variables), r.Params)
	}
	store := model.NewStore()
	for path, shape := range r.Variables {
		key, perm, err := TimmKey(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.CreateVariable(path, fromTorch(t, key, shape, perm)); err != nil {
			t.Fatal(err)
		}
	}
	x := tensors.FromShape(input)
	tensors.MustMutableFlatData(x, func(flat []float64) {
		for i := range flat {
			flat[i] = math.Sin(0.05 * float64(i))
		}
	})
	names := []string{"logits", "C2", "C3", "C4", "C5"}
	outs := model.MustExecOnceN(backend.Go(), store, func(scope *model.Scope, x *Node) []*Node {
		m := build(scope, x)
		nodes := make([]*Node, len(names))
		for i, n := range names {
			nodes[i] = m[n]
		}
		return nodes
	}, x)

	logits := tensors.MustCopyFlatData[float64](outs[0])
	wantLogits := []float64{-2.57694410633894, 1.86378080255004, 0.883626162442305}
	for i := range wantLogits {
		if math.Abs(logits[i]-wantLogits[i]) > 1e-9 {
			t.Errorf("logits %v, PyTorch %v", logits, wantLogits)
			break
		}
	}
	want := map[string]struct {
		dims       []int
		sum, sumSq float64
		first3     []float64
	}{
		"C2": {[]int{1, 8, 8, 4}, 80.8794680784558, 63.6623380474682, []float64{0.639333917424523, 0.422592365152387, 0.601532106241731}},
		"C3": {[]int{1, 4, 4, 8}, 69.4739778937945, 233.97006392626, []float64{2.0856146132069, 1.62887974395003, 1.46337964936911}},
		"C4": {[]int{1, 2, 2, 8}, -14.405831741071, 18.298442608556, []float64{0.110674607065523, -0.761021437779045, -1.05699638039188}},
		"C5": {[]int{1, 1, 1, 12}, -4.46808595260775, 11.6520609800013, []float64{-1.19612947266473, -0.3850024032452, -0.244651599136167}},
	}
	for i, name := range names[1:] {
		w := want[name]
		got := outs[i+1]
		if !slices.Equal(got.Shape().Dimensions, w.dims) {
			t.Errorf("%s: shape %s, PyTorch %v", name, got.Shape(), w.dims)
			continue
		}
		flat := tensors.MustCopyFlatData[float64](got)
		var sum, sumSq float64
		for _, v := range flat {
			sum += v
			sumSq += v * v
		}
		if math.Abs(sum-w.sum) > 1e-9 || math.Abs(sumSq-w.sumSq) > 1e-9 {
			t.Errorf("%s: sum %.12g, sum of squares %.12g; PyTorch %.12g, %.12g", name, sum, sumSq, w.sum, w.sumSq)
		}
		for j, v := range w.first3 {
			if math.Abs(flat[j]-v) > 1e-9 {
				t.Errorf("%s[%d] = %.12g, PyTorch %.12g", name, j, flat[j], v)
			}
		}
	}
}

// fromTorch makes our tensor of shape `shape` from the deterministic PyTorch-layout values of
// key, transposed by perm (our axis i is PyTorch's axis perm[i]).
func fromTorch(t *testing.T, key string, shape shapes.Shape, perm []int) *tensors.Tensor {
	t.Helper()
	torchDims := slices.Clone(shape.Dimensions)
	if perm != nil {
		for i, p := range perm {
			torchDims[p] = shape.Dimensions[i]
		}
	}
	vals := make([]float64, shape.Size())
	for i := range vals {
		vals[i] = torchValue(key, i)
	}
	tt := tensors.FromFlatDataAndDimensions(vals, torchDims...)
	if perm == nil {
		return tt
	}
	return MustExecOnce(backend.Go(), func(x *Node) *Node { return TransposeAllAxes(x, perm...) }, tt)
}

// timmKeys lists the parameter keys of timm's ConvNeXt (model.state_dict() without buffers),
// written from timm's module structure.
func timmKeys(cfg Config) []string {
	wb := func(prefix string) []string { return []string{prefix + ".weight", prefix + ".bias"} }
	keys := append(wb("stem.0"), wb("stem.1")...)
	for s, depth := range cfg.Depths {
		stage := "stages." + strconv.Itoa(s)
		if s > 0 {
			keys = append(keys, wb(stage+".downsample.0")...)
			keys = append(keys, wb(stage+".downsample.1")...)
		}
		for b := range depth {
			blk := stage + ".blocks." + strconv.Itoa(b)
			keys = append(keys, blk+".gamma")
			for _, m := range []string{"conv_dw", "norm", "mlp.fc1", "mlp.fc2"} {
				keys = append(keys, wb(blk+"."+m)...)
			}
		}
	}
	keys = append(keys, wb("head.norm")...)
	keys = append(keys, wb("head.fc")...)
	slices.Sort(keys)
	return keys
}

func TestTimmKeys(t *testing.T) {
	for _, name := range []string{"convnext_tiny", "convnext_base"} {
		cfg := Configs[name]
		r, err := flops.Inspect(backend.Go(), shapes.Make(dtypes.Float32, 1, 32, 32, 3),
			func(scope *model.Scope, x *Node) map[string]*Node {
				return map[string]*Node{"logits": Build(scope.In("backbone"), x, cfg, backbones.Options{NumClasses: 1000}).Logits}
			})
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for path, shape := range r.Variables {
			key, perm, err := TimmKey(strings.TrimPrefix(path, "/backbone/"))
			if err != nil {
				t.Error(err)
				continue
			}
			if perm != nil && len(perm) != shape.Rank() {
				t.Errorf("%s: permutation %v for shape %s", path, perm, shape)
			}
			keys = append(keys, key)
		}
		slices.Sort(keys)
		want := timmKeys(cfg)
		if !slices.Equal(keys, want) {
			t.Errorf("%s: %d keys, timm has %d:\n got %v\nwant %v", name, len(keys), len(want), keys, want)
		}
	}
	for _, bad := range []string{"stem/pool/weights", "stages/stage1/block0/mlp/fc3/weights", "head/fc/scale", "x"} {
		if _, _, err := TimmKey(bad); err == nil {
			t.Errorf("TimmKey(%q) did not fail", bad)
		}
	}
}

func TestDropPathRate(t *testing.T) {
	// timm: torch.linspace(0, 0.3, 18)
	if r := DropPathRate(0, 18, 0.3); r != 0 {
		t.Errorf("first block rate %g", r)
	}
	if r := DropPathRate(17, 18, 0.3); math.Abs(r-0.3) > 1e-15 {
		t.Errorf("last block rate %g", r)
	}
	if r := DropPathRate(6, 18, 0.3); math.Abs(r-0.3*6/17) > 1e-15 {
		t.Errorf("block 6 rate %g", r)
	}
}

// randomInit replaces the initialisers of the trainable variables built so far by uniform
// values in ±0.8, so that gradient checks see every branch with weights of order one (timm's
// std .02 and layer scale 1e-6 make the residual branches vanish next to rounding errors).
func randomInit(scope *model.Scope) {
	store := scope.Store()
	for v := range store.IterVariables() {
		if !v.Trainable || v.HasValue() {
			continue
		}
		store.VariableWithShape(v.Path(), v.Shape(), func(g *Graph, s shapes.Shape) *Node {
			return AddScalar(MulScalar(scope.RandomUniform(g, s), 1.6), -0.8)
		})
	}
}

// TestBlockGradient checks the gradient of one ConvNeXt block (depthwise 7x7 conv, LayerNorm,
// MLP with GELU, layer scale, residual) against finite differences, in inference and in
// training with stochastic depth.
func TestBlockGradient(t *testing.T) {
	cfg := Config{}
	x := gradcheck.RandomTensor(11, 2, 5, 6, 4)
	for _, tc := range []struct {
		name     string
		training bool
		drop     float64
	}{{"eval", false, 0}, {"train/droppath", true, 0.5}} {
		t.Run(tc.name, func(t *testing.T) {
			gradcheck.Check(t, gradcheck.Options{Training: tc.training}, func(scope *model.Scope, in []*Node) *Node {
				y := Block(scope.In("block"), in[0], cfg, tc.drop)
				randomInit(scope)
				return y
			}, x)
		})
	}
}

// TestTinyGradient checks the whole network (stems, down-samplers, head) on a tiny config, with
// 3x3 depthwise kernels so that every tap sees data on the 2x2 maps of the last stage.
func TestTinyGradient(t *testing.T) {
	cfg := Config{Depths: [4]int{1, 1, 1, 1}, Dims: [4]int{3, 4, 4, 5}, KernelSize: 3}
	for _, small := range []bool{false, true} {
		size := 64
		if small {
			size = 32
		}
		x := gradcheck.RandomTensor(12, 1, size, size, 3)
		name := "patch4"
		if small {
			name = "patch2"
		}
		t.Run(name, func(t *testing.T) {
			gradcheck.Check(t, gradcheck.Options{MaxElements: 6}, func(scope *model.Scope, in []*Node) *Node {
				out := Build(scope, in[0], cfg, backbones.Options{NumClasses: 3, SmallInputStem: small})
				randomInit(scope)
				return Concatenate([]*Node{out.Logits, Reshape(out.Features.Get("C3"), 1, -1)}, 1)
			}, x)
		})
	}
}

// TestBlockDropPath checks stochastic depth in training: each example's residual branch is
// either dropped (output = input) or kept and scaled by 1/(1-rate).
func TestBlockDropPath(t *testing.T) {
	const n, rate = 16, 0.5
	x := gradcheck.RandomTensor(13, n, 3, 3, 4)
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(3); err != nil {
		t.Fatal(err)
	}
	run := func(training bool) []float64 {
		return tensors.MustCopyFlatData[float64](model.MustExecOnce(backend.Go(), store, func(scope *model.Scope, x *Node) *Node {
			store.SetTraining(x.Graph(), training)
			y := Block(scope.In("block"), x, Config{LayerScaleInit: 0.5}, rate)
			randomInit(scope)
			return y
		}, x))
	}
	eval, train := run(false), run(true)
	in := tensors.MustCopyFlatData[float64](x)
	per := len(in) / n
	dropped := 0
	for e := range n {
		var dDrop, dKeep float64
		for i := e * per; i < (e+1)*per; i++ {
			dDrop = max(dDrop, math.Abs(train[i]-in[i]))
			dKeep = max(dKeep, math.Abs(train[i]-(in[i]+(eval[i]-in[i])/(1-rate))))
		}
		switch {
		case dDrop < 1e-12:
			dropped++
		case dKeep > 1e-12:
			t.Errorf("example %d is neither dropped nor kept with scaling (errors %g, %g)", e, dDrop, dKeep)
		}
	}
	if dropped == 0 || dropped == n {
		t.Errorf("%d of %d branches dropped at rate %g", dropped, n, rate)
	}
}

// TestInit checks timm's initialisation: trunc_normal(std .02) weights within ±2 std, zero
// biases, LayerNorm scale 1 and offset 0, layer scale 1e-6.
func TestInit(t *testing.T) {
	cfg := Config{Depths: [4]int{1, 1, 1, 1}, Dims: [4]int{32, 32, 64, 64}}
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(5); err != nil {
		t.Fatal(err)
	}
	x := tensors.FromShape(shapes.Make(dtypes.Float32, 1, 32, 32, 3))
	model.MustExecOnce(backend.Go(), store, func(scope *model.Scope, x *Node) *Node {
		return Build(scope, x, cfg, backbones.Options{NumClasses: 10}).Logits
	}, x)
	for v := range store.IterVariables() {
		if !v.Trainable {
			continue
		}
		vals := tensors.MustCopyFlatData[float32](v.MustValue())
		var sum, sumSq, maxAbs float64
		for _, f := range vals {
			sum += float64(f)
			sumSq += float64(f) * float64(f)
			maxAbs = max(maxAbs, math.Abs(float64(f)))
		}
		mean := sum / float64(len(vals))
		std := math.Sqrt(sumSq/float64(len(vals)) - mean*mean)
		path := v.Path()
		switch {
		case strings.HasSuffix(path, "/weights") && !strings.HasSuffix(path, "/norm/weights"):
			if len(vals) >= 1000 && (math.Abs(std-0.02*0.88) > 0.002 || maxAbs > 0.04+1e-7) {
				// A normal truncated at ±2 std has std 0.88 times the untruncated one.
				t.Errorf("%s: std %g (want %g), max |w| %g (want <= 0.04)", path, std, 0.02*0.88, maxAbs)
			}
		case strings.HasSuffix(path, "/biases"), strings.HasSuffix(path, "/offset"):
			if maxAbs != 0 {
				t.Errorf("%s: not zero (max |b| %g)", path, maxAbs)
			}
		case strings.HasSuffix(path, "/scale"):
			if mean != 1 || std != 0 {
				t.Errorf("%s: mean %g, std %g, want ones", path, mean, std)
			}
		case strings.HasSuffix(path, "/gamma"):
			if math.Abs(mean-1e-6) > 1e-12 || std > 1e-12 {
				t.Errorf("%s: mean %g, want 1e-6", path, mean)
			}
		default:
			t.Errorf("unexpected variable %s", path)
		}
	}
}
