// Package bench times named training workloads on a backend and, side by side, the same
// workloads in PyTorch (scripts/bench_torch.py, Debian's python3-torch): median step time after
// warm-up, images/s, GFLOP/s and peak memory. `dreamteacher bench` prints its results.
package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dreamteacher-go/dreamteacher/configs"
	// configs/camvid_*.conf name the camvid dataset, which validating the settings looks up.
	_ "github.com/dreamteacher-go/dreamteacher/datasets/camvid"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/models/backbones/resnet"
	"github.com/dreamteacher-go/dreamteacher/models/flops"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/dreamteacher-go/dreamteacher/train/distill"
	"github.com/dreamteacher-go/dreamteacher/train/pretrain"
	"github.com/dreamteacher-go/dreamteacher/train/teachers"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// Size of a workload's images.
type Size struct{ Width, Height int }

// String is "64" for a square size, "64x48" (width x height) otherwise.
func (s Size) String() string {
	if s.Width == s.Height {
		return strconv.Itoa(s.Width)
	}
	return fmt.Sprintf("%dx%d", s.Width, s.Height)
}

// ParseSize reads "64" (64x64) or "64x48" (width x height).
func ParseSize(s string) (Size, error) {
	w, h, square := strings.Cut(strings.TrimSpace(s), "x")
	width, err := strconv.Atoi(w)
	height := width
	if err == nil && square {
		height, err = strconv.Atoi(h)
	}
	if err != nil || width <= 0 || height <= 0 {
		return Size{}, fmt.Errorf("size %q: want WIDTH or WIDTHxHEIGHT, positive integers", s)
	}
	return Size{width, height}, nil
}

// Result of one timed workload.
type Result struct {
	Impl       string  `json:"impl"`
	Workload   string  `json:"workload"`
	Width      int     `json:"width"`
	Height     int     `json:"height"`
	Batch      int     `json:"batch"`
	MedianStep float64 `json:"median_step_s"`
	// MinStep is the fastest timed step: on a machine shared with other processes, the least
	// disturbed measure.
	MinStep    float64 `json:"min_step_s,omitempty"`
	ImagesPerS float64 `json:"images_per_s"`
	// GFLOPPerStep is counted on our step graph (forward+backward matmuls and convolutions);
	// the same count is used for the PyTorch row, since the work is the same.
	GFLOPPerStep float64 `json:"gflop_per_step,omitempty"`
	// FwdGFLOP is the forward pass alone (the loss, a frozen teacher included), counted by
	// each implementation on its own model: the check that both do the same work.
	FwdGFLOP   float64 `json:"fwd_gflop,omitempty"`
	PeakRSSMiB float64 `json:"peak_rss_mib,omitempty"`
	Threads    int     `json:"threads,omitempty"`
	// Params counts the parameters of each part of the workload (see Step.Params), as
	// PyTorch's parameters(): BatchNorm statistics and optimiser state are not parameters.
	Params map[string]int64 `json:"params,omitempty"`
	// Layouts are PyTorch's median step by memory layout when it tried several (the faster
	// one is reported).
	Layouts map[string]float64 `json:"layouts,omitempty"`
}

// Size of the result's images.
func (r Result) Size() Size { return Size{r.Width, r.Height} }

// GFLOPPerS is the achieved rate.
func (r Result) GFLOPPerS() float64 {
	if r.MedianStep == 0 {
		return 0
	}
	return r.GFLOPPerStep / r.MedianStep
}

// Step is one training step to time: its loss on fixed inputs, how it is optimised, and the
// store it runs in (settings, then variables).
type Step struct {
	Store   *model.Store
	Loss    train.LossFn
	Inputs  []*tensors.Tensor
	Trainer train.Config
	// Params names the parts whose parameters are counted, by scope ("unet": "/unet").
	Params map[string]string
}

// Workload is a named training step and its defaults.
type Workload struct {
	About string // one line: the step, its sizes
	Sizes []Size // default image sizes
	Batch int    // default batch size
	// Build makes the step at an image size and batch size.
	Build func(size Size, batch int) (*Step, error)
}

// Workloads are the named training steps. Each has a PyTorch peer of the same architecture in
// scripts/bench_torch.py.
var Workloads = map[string]Workload{
	"resnet18-cifar": {
		About: "ResNet-18 (CIFAR stem, 10 classes), cross-entropy, Adam",
		Sizes: []Size{{32, 32}, {64, 64}}, Batch: 8, Build: resnet18Step,
	},
	"adm": {
		About: "ADM pre-training step of configs/camvid_teacher.conf: adm_camvid UNet, hybrid loss, AdamW, clipping, EMA",
		Sizes: []Size{{64, 48}}, Batch: 16, Build: admCamVid,
	},
	"distill": {
		About: "feature distillation step of configs/camvid_distill.conf: frozen adm_camvid teacher at half size, t=50; ResNet-18 + PPM/FPN regressor; LN-MSE + AT; AdamW",
		Sizes: []Size{{128, 96}}, Batch: 16, Build: camvidDistill,
	},
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

func lookup(name string) (Workload, error) {
	w, ok := Workloads[name]
	if !ok {
		return Workload{}, fmt.Errorf("unknown workload %q: known workloads are %s", name, strings.Join(Names(), ", "))
	}
	return w, nil
}

// randomImages are deterministic pseudo-random images in [0, 1] [batch, height, width, 3].
func randomImages(size Size, batch int) *tensors.Tensor {
	x := make([]float32, batch*size.Height*size.Width*3)
	for i := range x {
		x[i] = float32((i*7919)%255) / 255
	}
	return tensors.FromFlatDataAndDimensions(x, batch, size.Height, size.Width, 3)
}

// resnet18Step is the resnet18-cifar workload: resnet18CIFAR, optimised as the PyTorch peer.
func resnet18Step(size Size, batch int) (*Step, error) {
	loss, inputs := resnet18CIFARAt(size, batch)
	return &Step{
		Store: model.NewStore(), Loss: loss, Inputs: inputs,
		// torch.optim.Adam's defaults, as the PyTorch peer.
		Trainer: train.Config{
			Optimizer: train.OptimizerConfig{Name: "adamw", Beta1: 0.9, Beta2: 0.999, Eps: 1e-8},
			Schedule:  train.Schedule{Kind: "constant", BaseLR: 1e-3},
		},
		Params: map[string]string{"model": "/model"},
	}, nil
}

// resnet18CIFAR is ResNet-18 with the CIFAR stem, 10 classes, cross-entropy, on random
// size x size images.
func resnet18CIFAR(size, batch int) (train.LossFn, []*tensors.Tensor) {
	return resnet18CIFARAt(Size{size, size}, batch)
}

func resnet18CIFARAt(size Size, batch int) (train.LossFn, []*tensors.Tensor) {
	loss := func(scope *model.Scope, in []*Node) map[string]*Node {
		out := resnet.Build(scope.In("model"), in[0], resnet.Configs["resnet18"],
			backbones.Options{NumClasses: 10, SmallInputStem: true})
		logp := LogSoftmax(out.Logits, -1)
		ce := Neg(ReduceAllMean(ReduceSum(Mul(logp, OneHot(in[1], 10, logp.DType())), -1)))
		return map[string]*Node{"loss": ce}
	}
	x := make([]float32, batch*size.Height*size.Width*3)
	for i := range x {
		x[i] = float32((i*7919)%255)/127.5 - 1
	}
	y := make([]int32, batch)
	for i := range y {
		y[i] = int32(i % 10)
	}
	return loss, []*tensors.Tensor{tensors.FromFlatDataAndDimensions(x, batch, size.Height, size.Width, 3), tensors.FromFlatDataAndDimensions(y, batch)}
}

// admCamVid is the step of `dreamteacher pretrain-diffusion --config camvid_teacher`
// (train/pretrain.NewDiffusionStep) on random images of the given size.
func admCamVid(size Size, batch int) (*Step, error) {
	settings, err := configs.Load("camvid_teacher")
	if err != nil {
		return nil, err
	}
	store, err := configs.NewStore(pretrain.DiffusionDefaults(), settings,
		fmt.Sprintf("size=%d,%d", size.Height, size.Width), fmt.Sprintf("batch=%d", batch))
	if err != nil {
		return nil, err
	}
	step, err := pretrain.NewDiffusionStep(store)
	if err != nil {
		return nil, err
	}
	return &Step{Store: store, Loss: step.Loss, Inputs: []*tensors.Tensor{randomImages(size, batch)}, Trainer: step.Trainer,
		Params: map[string]string{"unet": pretrain.UNetScope}}, nil
}

// camvidDistill is the step of `dreamteacher distill --config camvid_distill`
// (train/distill.NewFeatureStep) on random images of the given (student) size, the teacher
// — configs/camvid_teacher.conf's UNet, freshly initialised instead of loaded — at the
// config's teacher_size / size ratio (one half).
func camvidDistill(size Size, batch int) (*Step, error) {
	teacherSettings, err := configs.Load("camvid_teacher")
	if err != nil {
		return nil, err
	}
	tstore, err := configs.NewStore(pretrain.DiffusionDefaults(), teacherSettings)
	if err != nil {
		return nil, err
	}
	settings, err := configs.Load("camvid_distill")
	if err != nil {
		return nil, err
	}
	store, err := configs.NewStore(distill.Defaults(), settings)
	if err != nil {
		return nil, err
	}
	// The teacher's input keeps the config's ratio to the student's.
	s, ts := configs.Get[[]int](store, "size"), configs.Get[[]int](store, "teacher_size")
	th, tw := size.Height*ts[0], size.Width*ts[1]
	if th%s[0] != 0 || tw%s[1] != 0 {
		return nil, fmt.Errorf("distill at %s: the teacher's input, %d/%d of it as in camvid_distill, is not a whole size", size, ts[1], s[1])
	}
	store, err = configs.NewStore(distill.Defaults(), settings, fmt.Sprintf("size=%d,%d", size.Height, size.Width),
		fmt.Sprintf("teacher_size=%d,%d", th/s[0], tw/s[1]), fmt.Sprintf("batch=%d", batch))
	if err != nil {
		return nil, err
	}
	teacher, err := teachers.NewDiffusion(configs.Get[string](tstore, "adm"), map[string]any{
		"noise_schedule": configs.Get[string](tstore, "noise_schedule"), "diffusion_steps": configs.Get[int](tstore, "diffusion_steps"),
	}, configs.Get[int](store, "t"), configs.Get[[]string](store, "taps"))
	if err != nil {
		return nil, err
	}
	step, err := distill.NewFeatureStep(store, teacher)
	if err != nil {
		return nil, err
	}
	return &Step{Store: store, Loss: step.Loss, Inputs: []*tensors.Tensor{randomImages(size, batch)}, Trainer: step.Trainer,
		Params: map[string]string{"student": distill.StudentScope, "teacher": teachers.Scope}}, nil
}

// Run times workload `name` on backend b: warmup untimed steps (the first compiles), then
// steps timed ones; the result has the median.
func Run(b compute.Backend, name string, size Size, batch, warmup, steps int) (Result, error) {
	w, err := lookup(name)
	if err != nil {
		return Result{}, err
	}
	step, err := w.Build(size, batch)
	if err != nil {
		return Result{}, err
	}
	tr, err := train.NewTrainer(b, step.Store, step.Trainer, step.Loss)
	if err != nil {
		return Result{}, err
	}
	var times []float64
	for i := range warmup + steps {
		t0 := time.Now()
		if _, err := tr.Step(step.Inputs...); err != nil {
			return Result{}, err
		}
		if i >= warmup {
			times = append(times, time.Since(t0).Seconds())
		}
	}
	rss := PeakRSSMiB()
	sort.Float64s(times)
	med := times[len(times)/2]
	if len(times)%2 == 0 {
		med = (times[len(times)/2-1] + times[len(times)/2]) / 2
	}
	c, err := count(b, step)
	if err != nil {
		return Result{}, err
	}
	return Result{
		Impl: "gomlx " + b.String(), Workload: name, Width: size.Width, Height: size.Height, Batch: batch,
		MedianStep: med, MinStep: times[0], ImagesPerS: float64(batch) / med, GFLOPPerStep: c.Total, FwdGFLOP: c.Fwd,
		PeakRSSMiB: rss, Params: c.Params,
	}, nil
}

// Counts of a step: its parameters by part, and GFLOP.
type Counts struct {
	Params map[string]int64
	Fwd    float64 // the forward pass (the loss)
	Total  float64 // the forward and backward pass (the loss and the gradients of the trained variables)
}

// Count counts workload name's parameters and FLOPs at an image size and batch size, on its
// graph alone: nothing is compiled, initialised or run.
func Count(b compute.Backend, name string, size Size, batch int) (Counts, error) {
	w, err := lookup(name)
	if err != nil {
		return Counts{}, err
	}
	step, err := w.Build(size, batch)
	if err != nil {
		return Counts{}, err
	}
	return count(b, step)
}

// count builds the step's loss and gradients on a fresh store and counts them; the parameters
// of a part are its trainable variables (those under its scope).
func count(b compute.Backend, step *Step) (c Counts, err error) {
	g := NewGraph(b, "bench.count")
	defer g.Finalize()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("counting the step's FLOPs: %v", r)
		}
	}()
	store := model.NewStore()
	model.SetStore(g, store)
	in := make([]*Node, len(step.Inputs))
	for i, t := range step.Inputs {
		in[i] = Parameter(g, fmt.Sprintf("input%d", i), t.Shape())
	}
	var paths []string
	outs := trainedLossAndGradients(store, step.Loss, step.Trainer.Train, &paths)(store.RootScope(), in)
	c.Fwd = flops.CountFrom(outs[0]).GFLOPs()
	c.Total = flops.CountFrom(outs...).GFLOPs()
	c.Params = map[string]int64{}
	for name, scope := range step.Params {
		c.Params[name] = 0
		for v := range store.IterVariables() {
			if v.Trainable && strings.HasPrefix(v.Path(), scope+"/") {
				c.Params[name] += int64(v.Shape().Size())
			}
		}
	}
	return c, nil
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

// RunTorch runs scripts/bench_torch.py for the workload, once per size (so that each peak RSS is
// its own), with PyTorch's faster memory layout (--layout best: NCHW or channels-last), and
// parses its results.
func RunTorch(script, name string, sizes []Size, batch, warmup, steps, threads int) ([]Result, error) {
	var results []Result
	for _, size := range sizes {
		r, err := runScript(script, "--workload", name, "--size", size.String(), "--batch", strconv.Itoa(batch),
			"--warmup", strconv.Itoa(warmup), "--steps", strconv.Itoa(steps), "--threads", strconv.Itoa(threads), "--layout", "best")
		if err != nil {
			return results, err
		}
		results = append(results, r...)
	}
	return results, nil
}

// CountTorch runs scripts/bench_torch.py --count-only: the PyTorch peer's parameter counts and
// forward GFLOP, without timing anything.
func CountTorch(script, name string, size Size, batch int) (Result, error) {
	r, err := runScript(script, "--workload", name, "--size", size.String(), "--batch", strconv.Itoa(batch), "--count-only")
	if err != nil {
		return Result{}, err
	}
	return r[0], nil
}

func runScript(script string, args ...string) ([]Result, error) {
	if _, err := os.Stat(script); err != nil {
		return nil, fmt.Errorf("PyTorch peer: %s not found (run from the repository root)", script)
	}
	cmd := exec.Command(TorchPython, append([]string{script}, args...)...)
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
	if len(results) == 0 {
		return nil, fmt.Errorf("PyTorch peer printed nothing")
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
// weights initialised on ref (the trained variables that are all zeros given values, see
// fillZeros), and compares the results.
func Verify(ref, test compute.Backend, name string, size Size, batch int) (Verification, error) {
	w, err := lookup(name)
	if err != nil {
		return Verification{}, err
	}
	step, err := w.Build(size, batch)
	if err != nil {
		return Verification{}, err
	}
	store := step.Store
	var paths []string
	graphFn := trainedLossAndGradients(store, step.Loss, step.Trainer.Train, &paths)
	args := make([]any, len(step.Inputs))
	for i, in := range step.Inputs {
		args[i] = in
	}
	refExec, err := model.NewExec(ref, store, graphFn)
	if err != nil {
		return Verification{}, err
	}
	// The first execution initialises the variables. Each execution advances the RNG state
	// (the diffusion timesteps and noise) and changes BatchNorm's running statistics: the two
	// compared ones start from the same state.
	if _, err := refExec.Exec(args...); err != nil {
		return Verification{}, err
	}
	fillZeros(store, paths)
	saved := map[*model.Variable]*tensors.Tensor{}
	for v := range store.IterVariables() {
		if v.HasValue() {
			c, _ := v.MustValue().LocalClone()
			saved[v] = c
		}
	}
	run := func(e *model.Exec) ([]*tensors.Tensor, error) {
		out, err := e.Exec(args...)
		for v, val := range saved {
			v.MustSetValue(val)
		}
		return out, err
	}
	refOut, err := run(refExec)
	if err != nil {
		return Verification{}, err
	}
	testExec, err := model.NewExec(test, store, graphFn)
	if err != nil {
		return Verification{}, err
	}
	testOut, err := run(testExec)
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

// fillZeros gives the variables at paths that are all zeros (the zero-initialised last convs
// of guided-diffusion's blocks, biases) deterministic values, uniform in ±1/sqrt(fan-in) (±0.1
// for vectors): with a zero last conv, every gradient upstream of it is zero, and comparing
// zeros verifies nothing.
func fillZeros(store *model.Store, paths []string) {
	for _, path := range paths {
		v := store.GetVariable(path)
		if v == nil || !v.HasValue() || v.Shape().DType != dtypes.Float32 {
			continue
		}
		zero := true
		for _, x := range toF64(v.MustValue()) {
			if x != 0 {
				zero = false
				break
			}
		}
		if !zero {
			continue
		}
		dims := v.Shape().Dimensions
		scale := 0.1
		if len(dims) >= 2 {
			fanIn := 1
			for _, d := range dims[:len(dims)-1] {
				fanIn *= d
			}
			scale = 1 / math.Sqrt(float64(fanIn))
		}
		h := fnv.New64a()
		h.Write([]byte(path))
		rng := rand.New(rand.NewPCG(h.Sum64(), 1))
		vals := make([]float32, v.Shape().Size())
		for i := range vals {
			vals[i] = float32((2*rng.Float64() - 1) * scale)
		}
		v.MustSetValue(tensors.FromFlatDataAndDimensions(vals, dims...))
	}
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
	return trainedLossAndGradients(store, lossFn, nil, paths)
}

// trainedLossAndGradients is lossAndGradients for the variables under the scopes (all when
// none), as train.Trainer chooses the variables it trains with Config.Train.
func trainedLossAndGradients(store *model.Store, lossFn train.LossFn, scopes []string, paths *[]string) func(*model.Scope, []*Node) []*Node {
	return func(scope *model.Scope, in []*Node) []*Node {
		g := in[0].Graph()
		store.SetTraining(g, true)
		loss := lossFn(scope, in)["loss"]
		var vars []*Node
		*paths = (*paths)[:0]
		for v := range store.IterVariables() {
			if v.Trainable && v.InUseByGraph(g) && v.DType().IsFloat() && trained(v.Path(), scopes) {
				vars = append(vars, v.NodeValue(g))
				*paths = append(*paths, v.Path())
			}
		}
		return append([]*Node{loss}, Gradient(loss, vars...)...)
	}
}

// trained reports whether a variable at path is under one of the scopes (all are when none),
// as train.Trainer decides.
func trained(path string, scopes []string) bool {
	if len(scopes) == 0 {
		return true
	}
	for _, s := range scopes {
		if strings.HasPrefix(path, strings.TrimSuffix(s, "/")+"/") {
			return true
		}
	}
	return false
}
