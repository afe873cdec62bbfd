// Package bench times named training workloads on a backend and, side by side, the same
// workloads in PyTorch (scripts/bench_torch.py, Debian's python3-torch): median step time after
// warm-up, images/s, GFLOP/s and peak memory. `dreamteacher bench` prints its results.
package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/backbones/resnet"
	"github.com/dreamteacher-go/dreamteacher/models/flops"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// Result of one timed workload.
type Result struct {
	Impl       string  `json:"impl"`
	Workload   string  `json:"workload"`
	Size       int     `json:"size"`
	Batch      int     `json:"batch"`
	MedianStep float64 `json:"median_step_s"`
	// MinStep is the fastest timed step: on a machine shared with other processes, the least
	// disturbed measure.
	MinStep    float64 `json:"min_step_s,omitempty"`
	ImagesPerS float64 `json:"images_per_s"`
	// GFLOPPerStep is counted on our compiled step graph (forward+backward matmuls); the same
	// count is used for the PyTorch row, since the work is the same.
	GFLOPPerStep float64 `json:"gflop_per_step,omitempty"`
	PeakRSSMiB   float64 `json:"peak_rss_mib,omitempty"`
	Threads      int     `json:"threads,omitempty"`
}

// GFLOPPerS is the achieved rate.
func (r Result) GFLOPPerS() float64 {
	if r.MedianStep == 0 {
		return 0
	}
	return r.GFLOPPerStep / r.MedianStep
}

// Workloads are the named training steps.
var Workloads = map[string]func(size, batch int) (train.LossFn, []*tensors.Tensor){
	"resnet18-cifar": resnet18CIFAR,
}

// Names lists the workloads.
func Names() []string {
	var n []string
	for k := range Workloads {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// resnet18CIFAR is ResNet-18 with the CIFAR stem, 10 classes, cross-entropy, on random images.
func resnet18CIFAR(size, batch int) (train.LossFn, []*tensors.Tensor) {
	loss := func(scope *model.Scope, in []*Node) map[string]*Node {
		out := resnet.Build(scope.In("model"), in[0], resnet.Configs["resnet18"],
			backbones.Options{NumClasses: 10, SmallInputStem: true})
		logp := LogSoftmax(out.Logits, -1)
		ce := Neg(ReduceAllMean(ReduceSum(Mul(logp, OneHot(in[1], 10, logp.DType())), -1)))
		return map[string]*Node{"loss": ce}
	}
	x := make([]float32, batch*size*size*3)
	for i := range x {
		x[i] = float32((i*7919)%255)/127.5 - 1
	}
	y := make([]int32, batch)
	for i := range y {
		y[i] = int32(i % 10)
	}
	return loss, []*tensors.Tensor{tensors.FromFlatDataAndDimensions(x, batch, size, size, 3), tensors.FromFlatDataAndDimensions(y, batch)}
}

// Run times workload `name` on backend b: warmup untimed steps (the first compiles), then
// steps timed ones; the result has the median.
func Run(b compute.Backend, name string, size, batch, warmup, steps int) (Result, error) {
	w, ok := Workloads[name]
	if !ok {
		return Result{}, fmt.Errorf("unknown workload %q: known workloads are %s", name, strings.Join(Names(), ", "))
	}
	lossFn, inputs := w(size, batch)
	store := model.NewStore()
	// torch.optim.Adam's defaults, as the PyTorch peer.
	tr, err := train.NewTrainer(b, store, train.Config{
		Optimizer: train.OptimizerConfig{Name: "adamw", Beta1: 0.9, Beta2: 0.999, Eps: 1e-8},
		Schedule:  train.Schedule{Kind: "constant", BaseLR: 1e-3},
	}, lossFn)
	if err != nil {
		return Result{}, err
	}
	var times []float64
	for i := range warmup + steps {
		t0 := time.Now()
		if _, err := tr.Step(inputs...); err != nil {
			return Result{}, err
		}
		if i >= warmup {
			times = append(times, time.Since(t0).Seconds())
		}
	}
	sort.Float64s(times)
	med := times[len(times)/2]
	if len(times)%2 == 0 {
		med = (times[len(times)/2-1] + times[len(times)/2]) / 2
	}
	gflop, err := stepGFLOP(b, lossFn, inputs)
	if err != nil {
		return Result{}, err
	}
	return Result{
		Impl: "gomlx " + b.String(), Workload: name, Size: size, Batch: batch,
		MedianStep: med, MinStep: times[0], ImagesPerS: float64(batch) / med, GFLOPPerStep: gflop, PeakRSSMiB: PeakRSSMiB(),
	}, nil
}

// stepGFLOP counts the FLOPs of the forward and backward pass of the workload.
func stepGFLOP(b compute.Backend, lossFn train.LossFn, inputs []*tensors.Tensor) (float64, error) {
	store := model.NewStore()
	e, err := model.NewExec(b, store, func(scope *model.Scope, in []*Node) *Node {
		store.SetTraining(in[0].Graph(), true)
		loss := lossFn(scope, in)["loss"]
		var vars []*Node
		for v := range store.IterVariables() {
			if v.Trainable && v.InUseByGraph(in[0].Graph()) {
				vars = append(vars, v.NodeValue(in[0].Graph()))
			}
		}
		grads := Gradient(loss, vars...)
		sum := loss
		for _, g := range grads {
			sum = Add(sum, ConvertDType(ReduceAllSum(g), loss.DType()))
		}
		return sum
	})
	if err != nil {
		return 0, err
	}
	shapesIn := make([]shapes.Shape, len(inputs))
	for i, in := range inputs {
		shapesIn[i] = in.Shape()
	}
	g, err := e.Compile(shapesIn...)
	if err != nil {
		return 0, err
	}
	return flops.Count(g).GFLOPs(), nil
}

// PeakRSSMiB is the peak resident memory of this process (VmHWM), 0 where unknown.
func PeakRSSMiB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// TorchPython is the interpreter with Debian's python3-torch.
var TorchPython = "/usr/bin/python3"

// RunTorch runs scripts/bench_torch.py for the workload and sizes and parses its results.
func RunTorch(script, name string, sizes []int, batch, warmup, steps, threads int) ([]Result, error) {
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("PyTorch peer: %s not found (run from the repository root)", script)
	}
	args := []string{script, "--workload", name, "--batch", strconv.Itoa(batch), "--warmup", strconv.Itoa(warmup),
		"--steps", strconv.Itoa(steps), "--threads", strconv.Itoa(threads)}
	for _, s := range sizes {
		args = append(args, "--size", strconv.Itoa(s))
	}
	cmd := exec.Command(TorchPython, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "No module named 'torch'") {
			msg = "python3-torch is not installed (apt-get install python3-torch python3-torchvision)"
		}
		return nil, fmt.Errorf("PyTorch peer failed: %v: %s", err, lastLine(msg))
	}
	var results []Result
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("PyTorch peer printed %q: %v", line, err)
		}
		results = append(results, r)
	}
	return results, nil
}

func lastLine(s string) string {
	lines := strings.Split(s, "\n")
	return lines[len(lines)-1]
}

// Verification compares a workload's loss and gradients on two backends from the same weights
// and inputs (e.g. XLA on a GPU against the Go backend).
type Verification struct {
	Workload          string
	LossRef, LossGot  float64
	MaxGradRelErr     float64 // max over variables of ||g_got - g_ref|| / ||g_ref||
	WorstVariable     string
	NumGradsCompared  int
	RefName, TestName string
}

// Verify runs the workload's forward and backward pass once on ref and once on test, with the
// weights initialised on ref, and compares the results.
func Verify(ref, test compute.Backend, name string, size, batch int) (Verification, error) {
	w, ok := Workloads[name]
	if !ok {
		return Verification{}, fmt.Errorf("unknown workload %q", name)
	}
	lossFn, inputs := w(size, batch)
	store := model.NewStore()
	var paths []string
	graphFn := lossAndGradients(store, lossFn, &paths)
	args := make([]any, len(inputs))
	for i, in := range inputs {
		args[i] = in
	}
	run := func(b compute.Backend) ([]*tensors.Tensor, error) {
		e, err := model.NewExec(b, store, graphFn)
		if err != nil {
			return nil, err
		}
		// BatchNorm running statistics change in the training graph: restore them after.
		saved := map[*model.Variable]*tensors.Tensor{}
		for v := range store.IterVariables() {
			if v.HasValue() {
				c, _ := v.MustValue().LocalClone()
				saved[v] = c
			}
		}
		out, err := e.Exec(args...)
		for v, val := range saved {
			v.MustSetValue(val)
		}
		return out, err
	}
	refOut, err := run(ref)
	if err != nil {
		return Verification{}, err
	}
	testOut, err := run(test)
	if err != nil {
		return Verification{}, err
	}
	v := Verification{Workload: name, RefName: ref.String(), TestName: test.String(),
		LossRef: toF64(refOut[0])[0], LossGot: toF64(testOut[0])[0]}
	for i := 1; i < len(refOut); i++ {
		a, b := toF64(refOut[i]), toF64(testOut[i])
		var d, n float64
		for j := range a {
			d += (a[j] - b[j]) * (a[j] - b[j])
			n += a[j] * a[j]
		}
		if n == 0 {
			continue
		}
		rel := math.Sqrt(d / n)
		v.NumGradsCompared++
		if rel > v.MaxGradRelErr {
			v.MaxGradRelErr, v.WorstVariable = rel, paths[i-1]
		}
	}
	return v, nil
}

func toF64(t *tensors.Tensor) []float64 {
	var out []float64
	t.MustConstFlatData(func(flat any) {
		switch f := flat.(type) {
		case []float32:
			for _, x := range f {
				out = append(out, float64(x))
			}
		case []float64:
			out = append(out, f...)
		}
	})
	return out
}

// lossAndGradients is the graph of one forward+backward pass of lossFn in training mode: the
// loss, then the gradient of every trainable variable the loss uses, whose paths it writes to
// *paths in the same order.
func lossAndGradients(store *model.Store, lossFn train.LossFn, paths *[]string) func(*model.Scope, []*Node) []*Node {
	return func(scope *model.Scope, in []*Node) []*Node {
		g := in[0].Graph()
		store.SetTraining(g, true)
		loss := lossFn(scope, in)["loss"]
		var vars []*Node
		*paths = (*paths)[:0]
		for v := range store.IterVariables() {
			if v.Trainable && v.InUseByGraph(g) {
				vars = append(vars, v.NodeValue(g))
				*paths = append(*paths, v.Path())
			}
		}
		return append([]*Node{loss}, Gradient(loss, vars...)...)
	}
}
