package bench

import (
	"bytes"
	"encoding/gob"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// Tolerances of TestFastPathsMatchFloat64, float32 against float64 (ResNet-18, batch 2, 32x32).
// Measured with every fast path on, with each one disabled (GOMLX_DT_DISABLE), with
// GOMLX_DT_PATCHES=off (upstream's float32 kernels) and at GOMAXPROCS 1-16: relative loss error
// 1e-7..6e-7, largest gradient error 1.1e-5..1.3e-5 (in layer4, where BatchNorm normalises over
// only 2x4x4 values). A wrong fast path gives errors of order 1e-2 to 1.
const (
	fastPathLossTol = 1e-5 // |loss32 - loss64| / |loss64|
	fastPathGradTol = 5e-4 // ||g32 - g64||_2 / ||g64||_2, for each variable's gradient
)

// fastPathSeed initialises the weights. The gradient of ReLU jumps at 0: where a pre-activation
// lies within float32 rounding of 0, float32 and float64 take different sides, and that one
// element moves every gradient below its layer by 3e-3..2e-2 (relative L2). With 3 of the first
// 10 seeds this happens; with seed 3 it does not, in any of the configurations above (so no
// pre-activation is that close to 0). If a change of a kernel's summation order ever makes this
// test fail with errors of that size spread over the gradients below one layer (and a loss that
// still agrees), check with another seed before suspecting the kernel.
const fastPathSeed = 3

// TestFastPathsMatchFloat64 runs the forward and backward pass of a ResNet-18 training step
// (CIFAR stem, batch 2, 32x32, cross-entropy: the resnet18-cifar workload) in float32 on the Go
// backend, where it goes through every fast path of third_party/compute (PATCHES.md: the AVX-512
// GEMM, transposes folded into it, fast Slice/Concatenate, fast element-wise ops, the
// convolution and element-wise fusions, implicit im2col, GEMM+col2im; all on by default), and
// the same pass in float64 (same weights and inputs, cast) in a child process with
// GOMLX_DT_PATCHES=off: the backend's upstream kernels (the fast Slice/Concatenate would
// otherwise run in float64 too). The loss and every gradient must agree to float32 precision.
func TestFastPathsMatchFloat64(t *testing.T) {
	if dir := os.Getenv(fastPathChildEnv); dir != "" {
		fastPathReference(t, dir)
		return
	}
	if v := os.Getenv("GOMLX_DT_PATCHES") + os.Getenv("GOMLX_DT_DISABLE"); v != "" {
		t.Logf("GOMLX_DT_PATCHES=%q GOMLX_DT_DISABLE=%q: not every fast path is on",
			os.Getenv("GOMLX_DT_PATCHES"), os.Getenv("GOMLX_DT_DISABLE"))
	}
	lossFn, inputs := resnet18CIFAR(32, 2)
	store := model.NewStore()
	if err := store.SetRNGStateFromSeed(fastPathSeed); err != nil {
		t.Fatal(err)
	}
	var paths []string
	e, err := model.NewExec(backend.Go(), store, lossAndGradients(store, lossFn, &paths))
	if err != nil {
		t.Fatal(err)
	}
	out, err := e.Exec(inputs[0], inputs[1]) // Initialises the variables, then runs.
	if err != nil {
		t.Fatal(err)
	}

	// The weights to the child, which writes the float64 loss and gradients.
	dir := t.TempDir()
	var weights fastPathWeights
	for v := range store.IterVariables() {
		if v.HasValue() && v.Shape().DType == dtypes.Float32 {
			weights.Paths = append(weights.Paths, v.Path())
			weights.Values = append(weights.Values, toF64(v.MustValue()))
		}
	}
	fastPathWrite(t, filepath.Join(dir, "weights.gob"), &weights)
	cmd := exec.Command(os.Args[0], "-test.run=^TestFastPathsMatchFloat64$", "-test.count=1")
	cmd.Env = append(os.Environ(), fastPathChildEnv+"="+dir, "GOMLX_DT_PATCHES=off")
	if outText, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("float64 reference (child process): %v\n%s", err, outText)
	}
	var ref fastPathResult
	fastPathRead(t, filepath.Join(dir, "reference.gob"), &ref)

	if !slices.Equal(paths, ref.Paths) || len(paths) < 60 {
		t.Fatalf("float32 gradients of %d variables, float64 of %d (or in another order)", len(paths), len(ref.Paths))
	}
	loss32, loss64 := toF64(out[0])[0], ref.Loss
	lossErr := math.Abs(loss32-loss64) / math.Abs(loss64)
	t.Logf("%d float32 variables given to the reference; loss float32 %.9g, float64 %.9g: relative error %.2g (tolerance %g)",
		len(weights.Paths), loss32, loss64, lossErr, fastPathLossTol)
	if !(lossErr <= fastPathLossTol) {
		t.Errorf("loss: float32 %.9g, float64 %.9g: relative error %.3g > %g", loss32, loss64, lossErr, fastPathLossTol)
	}
	worst, worstPath := 0.0, ""
	for i, path := range paths {
		g32, g64 := toF64(out[i+1]), ref.Grads[i]
		var d, n float64
		for j := range g64 {
			d += (g32[j] - g64[j]) * (g32[j] - g64[j])
			n += g64[j] * g64[j]
		}
		if n == 0 {
			t.Errorf("%s: zero float64 gradient, cannot be compared", path)
			continue
		}
		rel := math.Sqrt(d / n)
		if !(rel <= fastPathGradTol) {
			t.Errorf("%s: gradient relative L2 error %.3g > %g", path, rel, fastPathGradTol)
		}
		if rel > worst || math.IsNaN(rel) {
			worst, worstPath = rel, path
		}
	}
	t.Logf("%d gradients compared: largest relative L2 error %.2g (%s), tolerance %g", len(paths), worst, worstPath, fastPathGradTol)
}

// fastPathChildEnv, set to a folder, makes TestFastPathsMatchFloat64 the child process: it
// reads weights.gob from the folder and writes reference.gob there.
const fastPathChildEnv = "DREAMTEACHER_FASTPATH_REFERENCE"

type fastPathWeights struct {
	Paths  []string
	Values [][]float64
}

type fastPathResult struct {
	Paths []string
	Loss  float64
	Grads [][]float64
}

// fastPathReference (child process) runs the forward and backward pass in float64 with the
// given weights.
func fastPathReference(t *testing.T, dir string) {
	var weights fastPathWeights
	fastPathRead(t, filepath.Join(dir, "weights.gob"), &weights)
	lossFn, inputs := resnet18CIFAR(32, 2)
	x := tensors.FromFlatDataAndDimensions(toF64(inputs[0]), inputs[0].Shape().Dimensions...)
	store := model.NewStore()
	var paths []string
	e, err := model.NewExec(backend.Go(), store, lossAndGradients(store, lossFn, &paths))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Exec(x, inputs[1]); err != nil { // Creates the variables.
		t.Fatal(err)
	}
	for i, path := range weights.Paths {
		v := store.GetVariable(path)
		if v == nil || !v.HasValue() || v.Shape().DType != dtypes.Float64 || v.Shape().Size() != len(weights.Values[i]) {
			t.Fatalf("variable %s: no float64 counterpart of %d values", path, len(weights.Values[i]))
		}
		v.MustSetValue(tensors.FromFlatDataAndDimensions(weights.Values[i], v.Shape().Dimensions...))
	}
	out, err := e.Exec(x, inputs[1])
	if err != nil {
		t.Fatal(err)
	}
	result := fastPathResult{Paths: paths, Loss: toF64(out[0])[0]}
	for _, g := range out[1:] {
		result.Grads = append(result.Grads, toF64(g))
	}
	fastPathWrite(t, filepath.Join(dir, "reference.gob"), &result)
}

func fastPathWrite(t *testing.T, path string, v any) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fastPathRead(t *testing.T, path string, v any) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(v); err != nil {
		t.Fatal(err)
	}
}
