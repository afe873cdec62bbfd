package bench

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/models/adm"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// tinySizes are the smallest sizes each workload builds at, for the tests.
var tinySizes = map[string]Size{
	"resnet18-cifar": {8, 8},
	"adm":            {16, 16}, // adm_camvid: multiples of 16
	"distill":        {32, 32}, // the teacher at half size
}

// TestRunSmall runs one step of every workload at a tiny size on the Go backend and checks what
// it reports.
func TestRunSmall(t *testing.T) {
	camvidUNet := int64(adm.NumParams(adm.Configs["adm_camvid"]))
	want := map[string]map[string]int64{
		"resnet18-cifar": {"model": 11173962}, // torchvision's resnet18, CIFAR stem, 10 classes
		"adm":            {"unet": camvidUNet},
		"distill":        {"teacher": camvidUNet},
	}
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			size, ok := tinySizes[name]
			if !ok {
				t.Fatalf("no tiny size for workload %s", name)
			}
			r, err := Run(backend.Go(), name, size, 2, 0, 1)
			if err != nil {
				t.Fatal(err)
			}
			if r.MedianStep <= 0 || r.ImagesPerS <= 0 || r.FwdGFLOP <= 0 || r.GFLOPPerStep <= r.FwdGFLOP || r.PeakRSSMiB <= 0 {
				t.Errorf("result %+v", r)
			}
			if r.Size() != size || r.Batch != 2 || r.Workload != name {
				t.Errorf("result for %s at %s batch 2: %+v", name, size, r)
			}
			for part, n := range want[name] {
				if r.Params[part] != n {
					t.Errorf("%s: %d parameters, want %d", part, r.Params[part], n)
				}
			}
			for part, n := range r.Params {
				if n <= 0 {
					t.Errorf("%s has no parameters", part)
				}
			}
		})
	}
	if _, err := Run(backend.Go(), "nope", Size{8, 8}, 2, 1, 1); err == nil {
		t.Error("unknown workload must fail")
	}
}

// TestDistillTrainsTheStudentOnly: a distillation step changes the student's weights, not the
// teacher's, and the teacher is adm_camvid.
func TestDistillTrainsTheStudentOnly(t *testing.T) {
	step, err := camvidDistill(tinySizes["distill"], 2)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := train.NewTrainer(backend.Go(), step.Store, step.Trainer, step.Loss)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Step(step.Inputs...); err != nil {
		t.Fatal(err)
	}
	before := map[string]float64{}
	for v := range step.Store.IterVariables() {
		if strings.HasPrefix(v.Path(), "/teacher/") || strings.HasPrefix(v.Path(), "/student/") {
			before[v.Path()] = sumOf(v.MustValue())
		}
	}
	if _, err := tr.Step(step.Inputs...); err != nil {
		t.Fatal(err)
	}
	teacherVars, studentChanged := 0, false
	for v := range step.Store.IterVariables() {
		old, ok := before[v.Path()]
		if !ok {
			continue
		}
		now := sumOf(v.MustValue())
		if strings.HasPrefix(v.Path(), "/teacher/") {
			teacherVars++
			if now != old {
				t.Errorf("teacher variable %s changed", v.Path())
			}
		} else if now != old {
			studentChanged = true
		}
	}
	if teacherVars == 0 || !studentChanged {
		t.Errorf("%d teacher variables; student changed: %v", teacherVars, studentChanged)
	}
	c, err := count(backend.Go(), step)
	if err != nil {
		t.Fatal(err)
	}
	if c.Params["teacher"] != int64(adm.NumParams(adm.Configs["adm_camvid"])) {
		t.Errorf("counts %+v", c)
	}
}

func sumOf(t *tensors.Tensor) float64 {
	s := 0.0
	for _, x := range toF64(t) {
		s += x
	}
	return s
}

// TestTorchPeerCounts checks, where Debian's python3-torch is installed, that each workload's
// PyTorch peer (scripts/bench_torch.py) has our parameter counts and forward FLOPs.
func TestTorchPeerCounts(t *testing.T) {
	if err := exec.Command(TorchPython, "-c", "import torch, torchvision").Run(); err != nil {
		t.Skip("python3-torch and python3-torchvision are not installed")
	}
	script := "../scripts/bench_torch.py"
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			size := Workloads[name].Sizes[0]
			if testing.Short() {
				size = tinySizes[name]
			}
			ours, err := Count(backend.Go(), name, size, 2)
			if err != nil {
				t.Fatal(err)
			}
			theirs, err := CountTorch(script, name, size, 2)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(ours.Params, theirs.Params) {
				t.Errorf("parameters: ours %v, PyTorch %v", ours.Params, theirs.Params)
			}
			if math.Abs(ours.Fwd-theirs.FwdGFLOP) > 1e-3*ours.Fwd {
				t.Errorf("forward: ours %.6f GFLOP, PyTorch %.6f", ours.Fwd, theirs.FwdGFLOP)
			}
		})
	}
}

// TestProfile writes a CPU profile of the ResNet-18 step when BENCH_PROFILE is set
// (image size BENCH_PROFILE_SIZE, default 32; BENCH_PROFILE_STEPS profiled steps after 2 of
// warm-up, default 4).
func TestProfile(t *testing.T) {
	path := os.Getenv("BENCH_PROFILE")
	if path == "" {
		t.Skip("set BENCH_PROFILE=file.prof to profile the ResNet-18 step")
	}
	size := 32
	if v := os.Getenv("BENCH_PROFILE_SIZE"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			size = n
		}
	}
	lossFn, inputs := resnet18CIFAR(size, 8)
	store := model.NewStore()
	tr, err := train.NewTrainer(backend.Go(), store, train.Config{
		Optimizer: train.OptimizerConfig{Name: "adamw"}, Schedule: train.Schedule{Kind: "constant", BaseLR: 1e-3},
	}, lossFn)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		tr.Step(inputs...)
	}
	f, _ := os.Create(path)
	pprof.StartCPUProfile(f)
	steps := 4
	if v, err := strconv.Atoi(os.Getenv("BENCH_PROFILE_STEPS")); err == nil && v > 0 {
		steps = v
	}
	for range steps {
		tr.Step(inputs...)
	}
	pprof.StopCPUProfile()
	f.Close()
}

// TestVerifySameBackendIsExact: a backend verified against itself gives the same loss and
// gradients, every workload (its RNG draws included), and compares the gradients upstream of
// guided-diffusion's zero-initialised convs too.
func TestVerifySameBackendIsExact(t *testing.T) {
	minGrads := map[string]int{"resnet18-cifar": 62, "adm": 300, "distill": 100}
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			v, err := Verify(backend.Go(), backend.Go(), name, tinySizes[name], 2)
			if err != nil {
				t.Fatal(err)
			}
			if v.LossRef != v.LossGot || v.MaxGradRelErr != 0 || v.NumGradsCompared < minGrads[name] {
				t.Errorf("verification of a backend against itself: %+v", v)
			}
		})
	}
}

// TestTiming times the ResNet-18 step on the Go backend when BENCH_TIMING is set to a list of image
// sizes (e.g. "32,64"), with BENCH_TIMING_STEPS timed steps (default 5) after 2 of warm-up (same
// trainer as Run). It prints the median and the fastest step, and the CPU time of the process per
// step (all threads): on a machine shared with other processes, the fastest step and the CPU time
// are the least disturbed measures.
func TestTiming(t *testing.T) {
	sizes := os.Getenv("BENCH_TIMING")
	if sizes == "" {
		t.Skip("set BENCH_TIMING=32,64 to time the ResNet-18 step")
	}
	steps := 5
	if v, err := strconv.Atoi(os.Getenv("BENCH_TIMING_STEPS")); err == nil && v > 0 {
		steps = v
	}
	cpuTime := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for _, f := range strings.Split(sizes, ",") {
		size, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatal(err)
		}
		lossFn, inputs := resnet18CIFAR(size, 8)
		tr, err := train.NewTrainer(backend.Go(), model.NewStore(), train.Config{
			Optimizer: train.OptimizerConfig{Name: "adamw", Beta1: 0.9, Beta2: 0.999, Eps: 1e-8},
			Schedule:  train.Schedule{Kind: "constant", BaseLR: 1e-3},
		}, lossFn)
		if err != nil {
			t.Fatal(err)
		}
		var times, cpus []float64
		for i := range 2 + steps {
			t0, c0 := time.Now(), cpuTime()
			if _, err := tr.Step(inputs...); err != nil {
				t.Fatal(err)
			}
			if i >= 2 {
				times = append(times, time.Since(t0).Seconds())
				cpus = append(cpus, (cpuTime() - c0).Seconds())
			}
		}
		sort.Float64s(times)
		sort.Float64s(cpus)
		c, err := count(backend.Go(), &Step{Loss: lossFn, Inputs: inputs})
		if err != nil {
			t.Fatal(err)
		}
		gflop := c.Total
		med := times[len(times)/2]
		fmt.Printf("resnet18-cifar %3dpx batch 8: median %.3f s, min %.3f s, cpu/step median %.3f s (min %.3f), %.1f images/s, %.1f GFLOP/step, %.1f GFLOP/s (median), %.1f GFLOP/s (min)\n",
			size, med, times[0], cpus[len(cpus)/2], cpus[0], 8/med, gflop, gflop/med, gflop/times[0])
	}
}

// TestLossTrace prints the loss of BENCH_LOSS_TRACE_STEPS (default 5) Adam steps of the ResNet-18
// workload at image size BENCH_LOSS_TRACE (when set): run it with GOMLX_DT_PATCHES=off and without
// to compare the patched Go backend with the upstream one (same initialization and data).
func TestLossTrace(t *testing.T) {
	size, err := strconv.Atoi(os.Getenv("BENCH_LOSS_TRACE"))
	if err != nil {
		t.Skip("set BENCH_LOSS_TRACE=32 to print the losses of a few training steps")
	}
	steps := 5
	if v, err := strconv.Atoi(os.Getenv("BENCH_LOSS_TRACE_STEPS")); err == nil && v > 0 {
		steps = v
	}
	lossFn, inputs := resnet18CIFAR(size, 8)
	tr, err := train.NewTrainer(backend.Go(), model.NewStore(), train.Config{
		Optimizer: train.OptimizerConfig{Name: "adamw"}, Schedule: train.Schedule{Kind: "constant", BaseLR: 1e-3},
	}, lossFn)
	if err != nil {
		t.Fatal(err)
	}
	for i := range steps {
		r, err := tr.Step(inputs...)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("step %d loss %.9g\n", i, r.Terms["loss"])
	}
}

// TestGradDump writes the loss and the gradients of one forward+backward pass of the ResNet-18
// workload (image size from BENCH_GRAD_DUMP_SIZE, default 32) with deterministic weights to the
// file BENCH_GRAD_DUMP; TestGradCompare compares two such files (BENCH_GRAD_COMPARE=a,b). Run the
// dump with GOMLX_DT_PATCHES=off and without to compare the patched Go backend with upstream.
func TestGradDump(t *testing.T) {
	path := os.Getenv("BENCH_GRAD_DUMP")
	if path == "" {
		t.Skip("set BENCH_GRAD_DUMP=file")
	}
	size := 32
	if v, err := strconv.Atoi(os.Getenv("BENCH_GRAD_DUMP_SIZE")); err == nil && v > 0 {
		size = v
	}
	lossFn, inputs := resnet18CIFAR(size, 8)
	store := model.NewStore()
	var paths []string
	graphFn := lossAndGradients(store, lossFn, &paths)
	e, err := model.NewExec(backend.Go(), store, graphFn)
	if err != nil {
		t.Fatal(err)
	}
	args := []any{inputs[0], inputs[1]}
	if _, err := e.Exec(args...); err != nil { // Creates (and initializes) the variables.
		t.Fatal(err)
	}
	// Deterministic weights: each float32 variable gets values of its initial scale from a PCG
	// seeded by its path; BatchNorm statistics back to their defaults.
	for v := range store.IterVariables() {
		if !v.HasValue() || v.Shape().DType != dtypes.Float32 {
			if os.Getenv("BENCH_GRAD_DUMP_VERBOSE") != "" {
				fmt.Printf("skip %s %s hasValue=%v\n", v.Path(), v.Shape(), v.HasValue())
			}
			continue
		}
		// Constant variables (BatchNorm's scale and offset, zero biases) keep their (constant)
		// initial value; the others get uniform values in ±1/sqrt(fan-in).
		var first float32
		constant := true
		v.MustValue().MustConstFlatData(func(flat any) {
			f := flat.([]float32)
			first = f[0]
			for _, x := range f {
				if x != first {
					constant = false
				}
			}
		})
		dims := v.Shape().Dimensions
		fanIn := 1
		for _, d := range dims[:max(len(dims)-1, 0)] {
			fanIn *= d
		}
		scale := 1 / math.Sqrt(float64(max(fanIn, 1)))
		h := fnv.New64a()
		h.Write([]byte(v.Path()))
		rng := rand.New(rand.NewPCG(h.Sum64(), 7))
		vals := make([]float32, v.Shape().Size())
		for i := range vals {
			if constant {
				vals[i] = first
			} else {
				vals[i] = float32((2*rng.Float64() - 1) * scale)
			}
		}
		v.MustSetValue(tensors.FromFlatDataAndDimensions(vals, v.Shape().Dimensions...))
	}
	out, err := e.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for i, o := range out {
		name := "loss"
		if i > 0 {
			name = paths[i-1]
		}
		o.MustConstFlatData(func(flat any) {
			f := flat.([]float32)
			fmt.Fprintf(&buf, "%s %d", name, len(f))
			for _, x := range f {
				fmt.Fprintf(&buf, " %08x", math.Float32bits(x))
			}
			buf.WriteString("\n")
		})
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestGradCompare(t *testing.T) {
	files := strings.Split(os.Getenv("BENCH_GRAD_COMPARE"), ",")
	if len(files) != 2 {
		t.Skip("set BENCH_GRAD_COMPARE=a,b (files written by TestGradDump)")
	}
	read := func(path string) (names []string, values [][]float64) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			fields := strings.Fields(line)
			vals := make([]float64, 0, len(fields)-2)
			for _, h := range fields[2:] {
				bits, _ := strconv.ParseUint(h, 16, 32)
				vals = append(vals, float64(math.Float32frombits(uint32(bits))))
			}
			names = append(names, fields[0])
			values = append(values, vals)
		}
		return
	}
	na, va := read(files[0])
	nb, vb := read(files[1])
	if len(na) != len(nb) {
		t.Fatalf("%d vs %d tensors", len(na), len(nb))
	}
	worst, worstName := 0.0, ""
	for i := range na {
		var d, n float64
		for j := range va[i] {
			d += (va[i][j] - vb[i][j]) * (va[i][j] - vb[i][j])
			n += va[i][j] * va[i][j]
		}
		rel := math.Sqrt(d / max(n, 1e-300))
		if i == 0 {
			fmt.Printf("loss %.9g vs %.9g (rel diff %.3g)\n", va[0][0], vb[0][0], rel)
			continue
		}
		if rel > worst {
			worst, worstName = rel, na[i]
		}
	}
	fmt.Printf("%d gradients compared, max relative L2 difference %.3g (%s)\n", len(na)-1, worst, worstName)
}
