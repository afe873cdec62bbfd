package train

import (
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/safetensors"
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// quadratic is a loss with known gradients: loss = sum(w*c) + sum(b*d) + 0.5*sum(w^2), so
// dw = c + w and db = d.
var (
	cVals = []float64{0.5, -1, 2, 0.1, -0.3, 1.5}
	dVals = []float64{-2, 0.25}
	w0    = []float64{0.2, -0.4, 1, 0.3, -0.7, 0.05}
	b0    = []float64{1, -1}
)

func quadraticLoss(scope *model.Scope, batch []*Node) map[string]*Node {
	g := batch[0].Graph()
	w := scope.VariableWithValue("w", [][]float64{w0[:3], w0[3:]}).NodeValue(g)
	b := scope.VariableWithValue("b", b0).NodeValue(g)
	c := Reshape(Const(g, cVals), 2, 3)
	d := Const(g, dVals)
	loss := Add(Add(ReduceAllSum(Mul(w, c)), ReduceAllSum(Mul(b, d))), MulScalar(ReduceAllSum(Square(w)), 0.5))
	return map[string]*Node{"loss": Mul(loss, batch[0])}
}

// reference implements the PyTorch update rules on flat slices.
type reference struct {
	name                string
	lr, wd, b1, b2, eps float64
	mom, eta            float64
	nesterov            bool
	m, v                map[int][]float64
}

func (r *reference) step(t int, params [][]float64, grads [][]float64, decays []bool) {
	if r.m == nil {
		r.m, r.v = map[int][]float64{}, map[int][]float64{}
	}
	for i, p := range params {
		g := grads[i]
		if r.m[i] == nil {
			r.m[i], r.v[i] = make([]float64, len(p)), make([]float64, len(p))
		}
		m, v := r.m[i], r.v[i]
		switch r.name {
		case "sgd":
			for j := range p {
				gj := g[j]
				if decays[i] {
					gj += r.wd * p[j]
				}
				m[j] = r.mom*m[j] + gj
				d := m[j]
				if r.nesterov {
					d = gj + r.mom*m[j]
				}
				p[j] -= r.lr * d
			}
		case "lars":
			upd := make([]float64, len(p))
			wn, un := 0.0, 0.0
			for j := range p {
				upd[j] = g[j]
				if decays[i] {
					upd[j] += r.wd * p[j]
				}
				wn += p[j] * p[j]
				un += upd[j] * upd[j]
			}
			trust := 1.0
			if decays[i] && wn > 0 && un > 0 {
				trust = r.eta * math.Sqrt(wn) / math.Sqrt(un)
			}
			for j := range p {
				m[j] = r.mom*m[j] + trust*upd[j]
				p[j] -= r.lr * m[j]
			}
		case "adamw", "lamb":
			upd := make([]float64, len(p))
			for j := range p {
				m[j] = r.b1*m[j] + (1-r.b1)*g[j]
				v[j] = r.b2*v[j] + (1-r.b2)*g[j]*g[j]
				mh := m[j] / (1 - math.Pow(r.b1, float64(t)))
				vh := v[j] / (1 - math.Pow(r.b2, float64(t)))
				upd[j] = mh / (math.Sqrt(vh) + r.eps)
			}
			if r.name == "adamw" {
				for j := range p {
					if decays[i] {
						p[j] *= 1 - r.lr*r.wd
					}
					p[j] -= r.lr * upd[j]
				}
				continue
			}
			if decays[i] {
				for j := range p {
					upd[j] += r.wd * p[j]
				}
			}
			wn, un := 0.0, 0.0
			for j := range p {
				wn += p[j] * p[j]
				un += upd[j] * upd[j]
			}
			trust := 1.0
			if wn > 0 && un > 0 {
				trust = math.Sqrt(wn) / math.Sqrt(un)
			}
			for j := range p {
				p[j] -= r.lr * trust * upd[j]
			}
		}
	}
}

func one() *tensors.Tensor { return tensors.FromScalar(1.0) }

func TestOptimizersMatchPyTorchRules(t *testing.T) {
	for _, tc := range []struct {
		cfg OptimizerConfig
		ref reference
	}{
		{OptimizerConfig{Name: "adamw", WeightDecay: 0.05}, reference{name: "adamw", wd: 0.05, b1: 0.9, b2: 0.95, eps: 1e-8}},
		{OptimizerConfig{Name: "lamb", WeightDecay: 0.05}, reference{name: "lamb", wd: 0.05, b1: 0.9, b2: 0.95, eps: 1e-6}},
		{OptimizerConfig{Name: "sgd", WeightDecay: 1e-4}, reference{name: "sgd", wd: 1e-4, mom: 0.9}},
		{OptimizerConfig{Name: "sgd", Momentum: 0.8, Nesterov: true}, reference{name: "sgd", mom: 0.8, nesterov: true}},
		{OptimizerConfig{Name: "lars", WeightDecay: 1.5e-6}, reference{name: "lars", wd: 1.5e-6, mom: 0.9, eta: 1e-3}},
		{OptimizerConfig{Name: "lars", WeightDecay: 0.1, Momentum: 0.5, Eta: 0.02}, reference{name: "lars", wd: 0.1, mom: 0.5, eta: 0.02}},
	} {
		t.Run(tc.cfg.Name, func(t *testing.T) {
			store := model.NewStore()
			sched := Schedule{Kind: "constant", BaseLR: 0.1}
			tr, err := NewTrainer(backend.Go(), store, Config{Optimizer: tc.cfg, Schedule: sched}, quadraticLoss)
			if err != nil {
				t.Fatal(err)
			}
			ref := tc.ref
			ref.lr = 0.1
			w, b := append([]float64{}, w0...), append([]float64{}, b0...)
			for step := 1; step <= 3; step++ {
				grads := [][]float64{make([]float64, 6), append([]float64{}, dVals...)}
				for j := range w {
					grads[0][j] = cVals[j] + w[j]
				}
				ref.step(step, [][]float64{w, b}, grads, []bool{true, false})
				res, err := tr.Step(one())
				if err != nil {
					t.Fatal(err)
				}
				if res.Step != int64(step) || !res.Finite {
					t.Fatalf("step %d: result %+v", step, res)
				}
			}
			gotW := tensors.MustCopyFlatData[float64](store.GetVariable("/w").MustValue())
			gotB := tensors.MustCopyFlatData[float64](store.GetVariable("/b").MustValue())
			for j := range w {
				if math.Abs(gotW[j]-w[j]) > 1e-12 {
					t.Errorf("w[%d] = %.15g, want %.15g", j, gotW[j], w[j])
				}
			}
			for j := range b {
				if math.Abs(gotB[j]-b[j]) > 1e-12 {
					t.Errorf("b[%d] = %.15g, want %.15g", j, gotB[j], b[j])
				}
			}
		})
	}
}

func TestScheduleGraphMatchesHost(t *testing.T) {
	for _, s := range []Schedule{
		{Kind: "cosine", BaseLR: 4e-3, MinLR: 1e-6, WarmupSteps: 3, TotalSteps: 10},
		{Kind: "poly", BaseLR: 1e-2, MinLR: 1e-4, WarmupSteps: 0, TotalSteps: 8, Power: 0.9},
		{Kind: "constant", BaseLR: 0.5, WarmupSteps: 2},
		{Kind: "multistep", BaseLR: 0.02, WarmupSteps: 3, WarmupFactor: 0.001, Milestones: []int{4, 9}, Gamma: 0.1},
		{Kind: "cosine", BaseLR: 1e-3, WarmupSteps: 4, WarmupFactor: 0.01, TotalSteps: 10},
	} {
		steps := []int64{0, 1, 2, 3, 4, 6, 9, 10, 12}
		got := MustExecOnce(backend.Go(), func(st *Node) *Node { return s.Graph(st) }, steps)
		values := got.Value().([]float64)
		for i, st := range steps {
			want := s.At(int(st))
			if math.Abs(float64(values[i])-want) > 1e-6*want+1e-9 {
				t.Errorf("%s step %d: graph %g, host %g", s.Kind, st, values[i], want)
			}
		}
	}
	// Hand-computed points: warm-up is linear to the peak, cosine ends at MinLR.
	s := Schedule{Kind: "cosine", BaseLR: 1, MinLR: 0, WarmupSteps: 4, TotalSteps: 12}
	for step, want := range map[int]float64{0: 0.25, 3: 1, 4: 1, 8: 0.5, 12: 0} {
		if got := s.At(step); math.Abs(got-want) > 1e-12 {
			t.Errorf("cosine At(%d) = %g, want %g", step, got, want)
		}
	}
	// detectron2's WarmupMultiStepLR: factor 0.001 at step 0, x0.1 at each milestone.
	m := Schedule{Kind: "multistep", BaseLR: 1, WarmupSteps: 10, WarmupFactor: 0.001, Milestones: []int{20, 30}}
	for step, want := range map[int]float64{0: 0.001, 5: 0.001*0.5 + 0.5, 10: 1, 19: 1, 20: 0.1, 35: 0.01} {
		if got := m.At(step); math.Abs(got-want) > 1e-12 {
			t.Errorf("multistep At(%d) = %g, want %g", step, got, want)
		}
	}
	if err := (Schedule{Kind: "linear", BaseLR: 1}).Validate(); err == nil || !strings.Contains(err.Error(), "linear") {
		t.Errorf("unknown kind: error %v", err)
	}
}

func TestClippingEMAAndFrozenScopes(t *testing.T) {
	store := model.NewStore()
	loss := func(scope *model.Scope, batch []*Node) map[string]*Node {
		g := batch[0].Graph()
		a := scope.In("student").VariableWithValue("a", []float64{3, 4}).NodeValue(g)
		f := scope.In("teacher").VariableWithValue("f", []float64{1}).NodeValue(g)
		// d loss/da = (3, 4): norm 5.
		return map[string]*Node{"loss": Add(ReduceAllSum(Mul(a, Const(g, []float64{3, 4}))), ReduceAllSum(f))}
	}
	cfg := Config{
		Optimizer: OptimizerConfig{Name: "sgd", Momentum: 0.5},
		Schedule:  Schedule{Kind: "constant", BaseLR: 1},
		ClipNorm:  1, EMADecay: 0.9, Train: []string{"/student"},
	}
	tr, err := NewTrainer(backend.Go(), store, cfg, loss)
	if err != nil {
		t.Fatal(err)
	}
	res, err := tr.Step(one())
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(res.GradNorm-5) > 1e-6 {
		t.Errorf("grad norm %g, want 5 (before clipping)", res.GradNorm)
	}
	// Clipped gradient (0.6, 0.8): a = (3-0.6, 4-0.8).
	a := tensors.MustCopyFlatData[float64](store.GetVariable("/student/a").MustValue())
	if math.Abs(a[0]-2.4) > 1e-6 || math.Abs(a[1]-3.2) > 1e-6 {
		t.Errorf("a = %v, want [2.4 3.2]", a)
	}
	if f := tensors.MustCopyFlatData[float64](store.GetVariable("/teacher/f").MustValue()); f[0] != 1 {
		t.Errorf("frozen teacher variable changed to %v", f)
	}
	ema := tensors.MustCopyFlatData[float64](store.GetVariable("/ema/student/a").MustValue())
	if math.Abs(ema[0]-(0.9*3+0.1*2.4)) > 1e-6 || math.Abs(ema[1]-(0.9*4+0.1*3.2)) > 1e-6 {
		t.Errorf("ema = %v", ema)
	}
	if store.GetVariable("/ema/teacher/f") != nil {
		t.Error("the EMA must only follow trained variables")
	}
}

func TestNonFiniteStepChangesNothing(t *testing.T) {
	store := model.NewStore()
	tr, err := NewTrainer(backend.Go(), store, Config{
		Optimizer: OptimizerConfig{Name: "adamw"}, Schedule: Schedule{Kind: "constant", BaseLR: 0.1},
	}, quadraticLoss)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Step(one()); err != nil {
		t.Fatal(err)
	}
	before := map[string][]float64{}
	for v := range store.IterVariables() {
		if v.DType() == dtypes.Float64 {
			before[v.Path()] = tensors.MustCopyFlatData[float64](v.MustValue())
		}
	}
	res, err := tr.Step(tensors.FromScalar(math.NaN()))
	if err != nil {
		t.Fatal(err)
	}
	if res.Finite || res.Step != 1 || CurrentStep(store) != 1 {
		t.Errorf("NaN step: %+v, step counter %d; want a skipped step", res, CurrentStep(store))
	}
	for path, vals := range before {
		after := tensors.MustCopyFlatData[float64](store.GetVariable(path).MustValue())
		for i := range vals {
			if vals[i] != after[i] {
				t.Fatalf("%s changed by a NaN step: %v -> %v", path, vals, after)
			}
		}
	}
}

// dropoutModel uses the RNG (dropout), running statistics (BatchNorm) and Adam state: all must
// be restored for resumption to be exact.
func dropoutModel(scope *model.Scope, batch []*Node) map[string]*Node {
	x, y := batch[0], batch[1]
	h := nn.Linear(scope.In("fc1"), x, 8).Done()
	h = nn.BatchNorm(scope.In("bn"), h).Done()
	h = nn.Dropout(scope, nn.ReLU(h), 0.3)
	p := nn.Linear(scope.In("fc2"), h, 1).Done()
	mse := ReduceAllMean(Square(Sub(p, y)))
	return map[string]*Node{"loss": mse, "mse": mse}
}

func batchAt(i int) []*tensors.Tensor {
	x := make([]float32, 4*3)
	y := make([]float32, 4)
	for j := range x {
		x[j] = float32(math.Sin(float64(i*12+j) * 0.7))
	}
	for j := range y {
		y[j] = x[3*j] - 2*x[3*j+1]
	}
	return []*tensors.Tensor{tensors.FromFlatDataAndDimensions(x, 4, 3), tensors.FromFlatDataAndDimensions(y, 4, 1)}
}

func newDropoutTrainer(t *testing.T, store *model.Store) *Trainer {
	store.SetParam("example_param", 7)
	if err := store.SetRNGStateFromSeed(3); err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(backend.Go(), store, Config{
		Optimizer: OptimizerConfig{Name: "adamw", WeightDecay: 0.05},
		Schedule:  Schedule{BaseLR: 1e-2, WarmupSteps: 2, TotalSteps: 8},
		ClipNorm:  1, EMADecay: 0.99,
	}, dropoutModel)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestResumeIsExact(t *testing.T) {
	// Uninterrupted: 8 steps.
	full := newDropoutTrainer(t, model.NewStore())
	var want []float64
	for i := range 8 {
		res, err := full.Step(batchAt(i)...)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, res.Loss())
	}
	// Interrupted after 3 steps, resumed in a fresh process-like state from the checkpoint.
	dir := t.TempDir()
	store := model.NewStore()
	first := newDropoutTrainer(t, store)
	for i := range 3 {
		if _, err := first.Step(batchAt(i)...); err != nil {
			t.Fatal(err)
		}
	}
	path, err := Save(store, dir, CurrentStep(store), map[string]string{"data_position": "3"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	resumedStore := model.NewStore()
	ck, err := Restore(resumedStore, path)
	if err != nil {
		t.Fatal(err)
	}
	if ck.Step != 3 || ck.Meta["data_position"] != "3" {
		t.Fatalf("restored %+v", ck)
	}
	if v, _ := resumedStore.GetParam("/example_param"); v != 7 {
		t.Errorf("hyper-parameter restored as %#v, want int 7", v)
	}
	resumed, err := NewTrainer(backend.Go(), resumedStore, Config{
		Optimizer: OptimizerConfig{Name: "adamw", WeightDecay: 0.05},
		Schedule:  Schedule{BaseLR: 1e-2, WarmupSteps: 2, TotalSteps: 8},
		ClipNorm:  1, EMADecay: 0.99,
	}, dropoutModel)
	if err != nil {
		t.Fatal(err)
	}
	for i := 3; i < 8; i++ {
		res, err := resumed.Step(batchAt(i)...)
		if err != nil {
			t.Fatal(err)
		}
		if res.Loss() != want[i] {
			t.Errorf("step %d: resumed loss %.9g, uninterrupted %.9g", i+1, res.Loss(), want[i])
		}
	}
}

func TestCheckpointsKeepLastK(t *testing.T) {
	dir := t.TempDir()
	store := model.NewStore()
	if _, err := store.CreateVariable("/a", tensors.FromValue([]float32{1, 2})); err != nil {
		t.Fatal(err)
	}
	for step := int64(1); step <= 5; step++ {
		if _, err := Save(store, dir, step, nil, 2); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := List(dir)
	if len(all) != 2 || all[0].Step != 4 || all[1].Step != 5 {
		t.Errorf("kept %+v, want steps 4 and 5", all)
	}
	if _, err := Restore(model.NewStore(), filepath.Join(dir, "missing.safetensors")); err == nil {
		t.Error("restoring a missing file must fail")
	}
	bad := filepath.Join(dir, "ckpt-00000009.safetensors")
	os.WriteFile(bad, []byte("garbage"), 0o644)
	if _, err := Restore(model.NewStore(), bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("corrupt checkpoint: error %v, want one naming the file", err)
	}
}

func TestLoadScope(t *testing.T) {
	dir := t.TempDir()
	src := model.NewStore()
	src.CreateVariable("/student/backbone/conv/weights", tensors.FromValue([]float32{1, 2, 3}))
	src.CreateVariable("/student/backbone/head/fc/weights", tensors.FromValue([]float32{9}))
	src.CreateVariable("/student/regressor/out/weights", tensors.FromValue([]float32{5}))
	src.CreateVariable("/optimizer/student/backbone/conv/weights/m", tensors.FromValue([]float32{0, 0, 0}))
	path, err := Save(src, dir, 10, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	dst := model.NewStore()
	n, err := LoadScope(dst, path, LoadSpec{From: "/student/backbone", To: "/model/backbone", Skip: []string{"head/*"}})
	if err != nil || n != 1 {
		t.Fatalf("loaded %d, %v", n, err)
	}
	if got := tensors.MustCopyFlatData[float32](dst.GetVariable("/model/backbone/conv/weights").MustValue()); got[2] != 3 {
		t.Errorf("loaded %v", got)
	}
	// Shape mismatch and missing variables are loud.
	bad := model.NewStore()
	bad.CreateVariable("/model/backbone/conv/weights", tensors.FromValue([]float32{1, 2}))
	bad.CreateVariable("/model/backbone/extra/weights", tensors.FromValue([]float32{1}))
	_, err = LoadScope(bad, path, LoadSpec{From: "/student/backbone", To: "/model/backbone", Skip: []string{"head/*"}, Strict: true})
	if err == nil || !strings.Contains(err.Error(), "/model/backbone/conv/weights: the checkpoint has shape") ||
		!strings.Contains(err.Error(), "/model/backbone/extra/weights is not in the checkpoint") {
		t.Errorf("mismatch error: %v", err)
	}
	if _, err := LoadScope(model.NewStore(), path, LoadSpec{From: "/teacher"}); err == nil || !strings.Contains(err.Error(), "/student/backbone") {
		t.Errorf("wrong scope error %v, want one listing the scopes present", err)
	}
}

func TestLoopStopsOnNaNAndKeepsLastCheckpoint(t *testing.T) {
	dir := t.TempDir()
	store := model.NewStore()
	tr, err := NewTrainer(backend.Go(), store, Config{
		Optimizer: OptimizerConfig{Name: "sgd"}, Schedule: Schedule{Kind: "constant", BaseLR: 0.01},
	}, quadraticLoss)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	next := func() ([]*tensors.Tensor, error) {
		i++
		if i == 5 {
			return []*tensors.Tensor{tensors.FromScalar(math.Inf(1))}, nil
		}
		return []*tensors.Tensor{one()}, nil
	}
	_, err = Run(tr, store, next, LoopConfig{Steps: 10, Dir: dir, CheckpointEvery: 2, LogEvery: 1, Out: io.Discard})
	var nf *NonFiniteError
	if !errors.As(err, &nf) || nf.Step != 5 || !strings.Contains(nf.LastCheckpoint, "ckpt-00000004") {
		t.Fatalf("error %v, want a non-finite loss at step 5 with checkpoint 4 kept", err)
	}
	if !strings.Contains(err.Error(), "step 5") {
		t.Errorf("message %q does not name the step", err)
	}
	last, _, _ := Latest(dir)
	if last.Step != 4 {
		t.Errorf("latest checkpoint %d, want 4", last.Step)
	}
}

func TestLoopWritesMetricsAndPlot(t *testing.T) {
	dir := t.TempDir()
	store := model.NewStore()
	tr, err := NewTrainer(backend.Go(), store, Config{
		Optimizer: OptimizerConfig{Name: "adamw"}, Schedule: Schedule{BaseLR: 0.05, TotalSteps: 12},
	}, quadraticLoss)
	if err != nil {
		t.Fatal(err)
	}
	next := func() ([]*tensors.Tensor, error) { return []*tensors.Tensor{one()}, nil }
	// Losses must be positive for the log plot: shift the quadratic.
	sum, err := Run(tr, store, next, LoopConfig{Steps: 12, Dir: dir, LogEvery: 2, Out: io.Discard, Title: "test"})
	if err != nil {
		t.Fatal(err)
	}
	records, err := ReadMetrics(sum.Metrics)
	if err != nil || len(records) != 7 || records[0]["step"] != 1 || records[6]["step"] != 12 {
		t.Fatalf("metrics %v, %v", records, err)
	}
	if sum.Checkpoint == "" || sum.Steps != 12 {
		t.Errorf("summary %+v", sum)
	}
}

func TestReadSettings(t *testing.T) {
	store := model.NewStore()
	store.SetParam("/adm", "adm_tiny")
	store.SetParam("/size", []int{32, 48})
	store.CreateVariable("/a", tensors.FromValue([]float32{1}))
	path, err := Save(store, t.TempDir(), 3, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ReadSettings(path)
	if err != nil {
		t.Fatal(err)
	}
	if s["adm"] != "adm_tiny" || len(s["size"].([]int)) != 2 {
		t.Errorf("settings %v", s)
	}
}

// statsLoss has a finite loss and gradient, but a running statistic (updated outside the
// gradient, as BatchNorm's) that overflows when the input is large: exp(1000) is Inf in float64.
func statsLoss(scope *model.Scope, batch []*Node) map[string]*Node {
	x := batch[0]
	student := scope.In("student")
	a := student.VariableWithValue("a", []float64{3, 4})
	stat := student.VariableWithValue("running", 0.0).SetTrainable(false)
	stat.SetNodeValue(Exp(x))
	loss := ReduceAllSum(Square(a.NodeValue(x.Graph())))
	return map[string]*Node{"loss": loss}
}

// TestNonFiniteStatisticStopsAndIsNotSaved: an update that makes a running statistic Inf while
// the loss stays finite is not applied; the loop stops naming the step and the variable, and
// every checkpoint on disk holds finite values only.
func TestNonFiniteStatisticStopsAndIsNotSaved(t *testing.T) {
	dir := t.TempDir()
	store := model.NewStore()
	tr, err := NewTrainer(backend.Go(), store, Config{
		Optimizer: OptimizerConfig{Name: "sgd"}, Schedule: Schedule{Kind: "constant", BaseLR: 0.01}, EMADecay: 0.5,
	}, statsLoss)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	next := func() ([]*tensors.Tensor, error) {
		i++
		if i == 3 {
			return []*tensors.Tensor{tensors.FromScalar(1000.0)}, nil
		}
		return []*tensors.Tensor{tensors.FromScalar(1.0)}, nil
	}
	_, err = Run(tr, store, next, LoopConfig{Steps: 5, Dir: dir, CheckpointEvery: 1, LogEvery: 1, Out: io.Discard})
	var nf *NonFiniteError
	if !errors.As(err, &nf) || nf.Step != 3 || len(nf.Variables) != 1 || nf.Variables[0] != "/student/running" {
		t.Fatalf("error %v, want step 3 stopped on /student/running", err)
	}
	if !strings.Contains(err.Error(), "/student/running") || !strings.Contains(nf.LastCheckpoint, "ckpt-00000002") {
		t.Errorf("message %q: want the variable named and checkpoint 2 kept", err)
	}
	if v := tensors.MustCopyFlatData[float64](store.GetVariable("/student/running").MustValue()); v[0] != math.E {
		t.Errorf("the non-finite update was applied: running = %v", v)
	}
	all, _ := List(dir)
	for _, c := range all {
		st, _, err := safetensors.ReadFile(c.Path)
		if err != nil {
			t.Fatal(err)
		}
		for name, x := range st {
			if n := NonFinite(x); n > 0 {
				t.Errorf("%s: %s holds %d non-finite values", c.Path, name, n)
			}
		}
	}

	// Save itself refuses non-finite values, naming the variable, and writes nothing.
	bad := model.NewStore()
	bad.CreateVariable("/bn/var", tensors.FromValue([]float32{1, float32(math.Inf(1))}))
	empty := t.TempDir()
	if _, err := Save(bad, empty, 7, nil, 0); err == nil || !strings.Contains(err.Error(), "/bn/var holds 1 non-finite") {
		t.Errorf("saving an Inf: %v", err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("files written for a refused checkpoint: %v", entries)
	}
}

// TestPruneKeepsTheNewCheckpoint: older checkpoints with higher step numbers (another run's)
// never push out the checkpoint just written.
func TestPruneKeepsTheNewCheckpoint(t *testing.T) {
	dir := t.TempDir()
	store := model.NewStore()
	store.CreateVariable("/a", tensors.FromValue([]float32{1}))
	for _, step := range []int64{100, 200, 300} {
		if _, err := Save(store, dir, step, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	p, err := Save(store, dir, 5, nil, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("the new checkpoint was pruned: %v", err)
	}
}

// TestLRMult: variables under a scope with a learning-rate multiplier move by the scaled rate
// (the longest prefix wins), the others by the base rate, and the optimiser keeps one state per
// variable across the groups (SGD momentum checked over two steps).
func TestLRMult(t *testing.T) {
	store := model.NewStore()
	loss := func(scope *model.Scope, batch []*Node) map[string]*Node {
		g := batch[0].Graph()
		m := scope.In("model")
		bb := m.In("backbone")
		var sum *Node
		for _, s := range []*model.Scope{bb.In("stem").In("w"), bb.In("w"), m.In("head").In("w")} {
			v := ReduceAllSum(s.VariableWithValue("x", []float64{1, 2}).NodeValue(g)) // gradient 1
			if sum == nil {
				sum = v
			} else {
				sum = Add(sum, v)
			}
		}
		return map[string]*Node{"loss": sum}
	}
	cfg := Config{
		Optimizer: OptimizerConfig{Name: "sgd", Momentum: 0.5},
		Schedule:  Schedule{Kind: "constant", BaseLR: 1},
		LRMult:    map[string]float64{"/model/backbone": 0.1, "/model/backbone/stem/": 0.01},
	}
	tr, err := NewTrainer(backend.Go(), store, cfg, loss)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := tr.Step(one()); err != nil {
			t.Fatal(err)
		}
	}
	// Two SGD steps with momentum 0.5 on a constant gradient 1: w -= lr*(1 + 1.5).
	for path, lr := range map[string]float64{"/model/backbone/stem/w/x": 0.01, "/model/backbone/w/x": 0.1, "/model/head/w/x": 1} {
		got := tensors.MustCopyFlatData[float64](store.GetVariable(path).MustValue())
		if math.Abs(got[0]-(1-2.5*lr)) > 1e-12 || math.Abs(got[1]-(2-2.5*lr)) > 1e-12 {
			t.Errorf("%s = %v, want [%g %g] (lr %g)", path, got, 1-2.5*lr, 2-2.5*lr, lr)
		}
	}
}

// Export keeps the scopes asked for, in the precision asked for, with the settings; loading the
// half-precision file into float32 variables (existing, or created by Restore) gives the
// float16-rounded weights; a value float16
// cannot hold is an error naming the tensor.
func TestExport(t *testing.T) {
	dir := t.TempDir()
	src := model.NewStore()
	src.SetParam("/adm", "adm_demo")
	src.CreateVariable("/ema/unet/conv/weights", tensors.FromValue([]float32{1, 0.1, -3.3333}))
	src.CreateVariable("/unet/conv/weights", tensors.FromValue([]float32{7, 7, 7}))
	src.CreateVariable("/optimizer/unet/conv/weights/m", tensors.FromValue([]float32{0, 0, 0}))
	path, err := Save(src, dir, 10, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "teacher.safetensors")
	n, err := Export(path, out, []string{"/ema/unet"}, dtypes.Float16)
	if err != nil || n != 1 {
		t.Fatalf("exported %d, %v", n, err)
	}
	st, _, err := safetensors.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st["ema/unet/conv/weights"].DType != "F16" {
		t.Errorf("exported %v", st)
	}
	if settings, err := ReadSettings(out); err != nil || settings["adm"] != "adm_demo" {
		t.Errorf("settings %v, %v", settings, err)
	}
	dst := model.NewStore()
	dst.CreateVariable("/teacher/unet/conv/weights", tensors.FromValue([]float32{0, 0, 0}))
	if _, err := LoadScope(dst, out, LoadSpec{From: "/ema/unet", To: "/teacher/unet", Strict: true}); err != nil {
		t.Fatal(err)
	}
	got := tensors.MustCopyFlatData[float32](dst.GetVariable("/teacher/unet/conv/weights").MustValue())
	for i, want := range []float32{1, 0.1, -3.3333} {
		if math.Abs(float64(got[i]-want)) > 2e-3*math.Abs(float64(want)) || (i == 0 && got[i] != 1) {
			t.Errorf("weight %d: %g, want %g rounded to float16", i, got[i], want)
		}
	}
	// Restore into an empty store (what `sample` does) creates float32 variables.
	fresh := model.NewStore()
	if _, err := Restore(fresh, out); err != nil {
		t.Fatal(err)
	}
	if v := fresh.GetVariable("/ema/unet/conv/weights"); v == nil || v.Shape().DType != dtypes.Float32 {
		t.Errorf("restored %v, want a float32 variable", v)
	} else if g := tensors.MustCopyFlatData[float32](v.MustValue()); !slices.Equal(g, got) {
		t.Errorf("restored %v, want %v as LoadScope", g, got)
	}
	src.GetVariable("/ema/unet/conv/weights").SetValue(tensors.FromValue([]float32{1, 1e6, 0}))
	if path, err = Save(src, dir, 11, nil, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Export(path, out, []string{"/ema/unet"}, dtypes.Float16); err == nil || !strings.Contains(err.Error(), "ema/unet/conv/weights") {
		t.Errorf("overflow: %v, want an error naming the tensor", err)
	}
	if _, err := Export(path, out, []string{"/ema/generator"}, dtypes.Float16); err == nil || !strings.Contains(err.Error(), "no variables under /ema/generator") {
		t.Errorf("missing scope: %v", err)
	}
}
