package ssl

import (
	"io"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/configs/configstest"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/configs"
	_ "github.com/dreamteacher-go/dreamteacher/datasets/all"
	"github.com/dreamteacher-go/dreamteacher/datasets/scenes"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	_ "github.com/dreamteacher-go/dreamteacher/models/backbones/all"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/dreamteacher-go/dreamteacher/train/finetune"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

func f32(v *model.Variable) []float32 { return tensors.MustCopyFlatData[float32](v.MustValue()) }

// TestEnqueue: keys replace the rows from the pointer on, wrapping around the end of the ring,
// and the pointer moves by the batch modulo K.
func TestEnqueue(t *testing.T) {
	queue := make([]float32, 5*2)
	for i := range queue {
		queue[i] = float32(10 * (i / 2)) // row r holds (10r, 10r)
	}
	keys := tensors.FromFlatDataAndDimensions([]float32{1, 1, 2, 2}, 2, 2)
	for _, c := range []struct {
		ptr, next int64
		rows      []float32 // the first value of each row after the enqueue
	}{
		{0, 2, []float32{1, 2, 20, 30, 40}},
		{1, 3, []float32{0, 1, 2, 30, 40}},
		{3, 0, []float32{0, 10, 20, 1, 2}},
		{4, 1, []float32{2, 10, 20, 30, 1}}, // wraps: key 0 at row 4, key 1 at row 0
	} {
		out := MustExecOnceN(backend.Go(), func(q, p, k *Node) []*Node {
			nq, np := Enqueue(q, p, k)
			return []*Node{nq, np}
		}, tensors.FromFlatDataAndDimensions(queue, 5, 2), tensors.FromScalar(c.ptr), keys)
		got := tensors.MustCopyFlatData[float32](out[0])
		for r, want := range c.rows {
			if got[2*r] != want || got[2*r+1] != want {
				t.Errorf("ptr %d: row %d = %v, want %g", c.ptr, r, got[2*r:2*r+2], want)
			}
		}
		if p := out[1].Value().(int64); p != c.next {
			t.Errorf("ptr %d: next pointer %d, want %d", c.ptr, p, c.next)
		}
	}
}

// TestInterleave: with 2 parts the key batch 0..5 is ordered 0, 2, 4 | 1, 3, 5, and
// Deinterleave restores it.
func TestInterleave(t *testing.T) {
	x := tensors.FromFlatDataAndDimensions([]float32{0, 1, 2, 3, 4, 5}, 6, 1)
	out := MustExecOnceN(backend.Go(), func(x *Node) []*Node {
		y := Interleave(x, 2)
		return []*Node{y, Deinterleave(y, 2), Interleave(x, 1)}
	}, x)
	if got := tensors.MustCopyFlatData[float32](out[0]); !slices.Equal(got, []float32{0, 2, 4, 1, 3, 5}) {
		t.Errorf("interleaved %v", got)
	}
	for i, o := range out[1:] {
		if got := tensors.MustCopyFlatData[float32](o); !slices.Equal(got, []float32{0, 1, 2, 3, 4, 5}) {
			t.Errorf("output %d: %v, want the batch in order", i+1, got)
		}
	}
}

// tinyStep is the MoCo step of a small-stem ResNet-18 on 16x16 views, batch 4 in 2 BatchNorm
// parts, a queue of 6 (so the second enqueue wraps), m = 0.9.
func tinyStep(t *testing.T, set ...string) (*model.Store, *Step, *train.Trainer) {
	t.Helper()
	store := configstest.Store(t, Defaults(), append([]string{"size=16,16", "small_stem=true", "batch=4", "queue=6", "key_momentum=0.9",
		"proj_dim=8", "steps=10"}, set...)...)
	step, err := NewStep(store)
	if err != nil {
		t.Fatal(err)
	}
	if err := train.Seed(store, 1); err != nil {
		t.Fatal(err)
	}
	// Declared and initialised before the first step, so that the tests can read the weights
	// the first step starts from.
	if err := train.Declare(backend.Go(), store, []shapes.Shape{step.Input}, func(scope *model.Scope, in []*Node) { step.Loss(scope, in) }); err != nil {
		t.Fatal(err)
	}
	if err := store.InitializeVariables(backend.Go(), nil); err != nil {
		t.Fatal(err)
	}
	tr, err := train.NewTrainer(backend.Go(), store, step.Trainer, step.Loss)
	if err != nil {
		t.Fatal(err)
	}
	return store, step, tr
}

func views(seed uint64) *tensors.Tensor {
	flat := tensors.MustCopyFlatData[float64](gradcheck.RandomTensor(seed, 4, 32, 16, 3))
	out := make([]float32, len(flat))
	for i, v := range flat {
		out[i] = float32(0.5 + 0.5*v)
	}
	return tensors.FromFlatDataAndDimensions(out, 4, 32, 16, 3)
}

// TestMomentumUpdateAndQueue runs three steps and checks, exactly: the key encoder starts as a
// copy of the query encoder, then follows key = m·key + (1-m)·query with the query's weights
// before each step's update; its BatchNorm running statistics are its own; nothing optimises
// it; the queue pointer moves by the batch around the ring of 6 and the enqueued rows are unit
// keys.
func TestMomentumUpdateAndQueue(t *testing.T) {
	store, _, tr := tinyStep(t)
	const m = 0.9 // key_momentum; the graph multiplies by float32(m) and float32(1-m)
	snapshot := func(scope string) map[string][]float32 {
		out := map[string][]float32{}
		for v := range store.IterVariables() {
			if rel, ok := strings.CutPrefix(v.Path(), scope+"/"); ok && v.DType() == dtypes.Float32 {
				out[rel] = f32(v)
			}
		}
		return out
	}
	var queueBefore []float32
	for s := range 3 {
		query, key := snapshot(StudentScope), snapshot(KeyScope)
		if s > 0 {
			queueBefore = f32(store.GetVariable(MoCoScope + "/queue"))
		}
		res, err := tr.Step(views(uint64(s)))
		if err != nil {
			t.Fatal(err)
		}
		if !res.Finite || math.IsNaN(res.Loss()) {
			t.Fatalf("step %d: %+v", s+1, res)
		}
		checked := 0
		for v := range store.IterVariables() {
			rel, ok := strings.CutPrefix(v.Path(), KeyScope+"/")
			if !ok || rel == "started" {
				continue
			}
			if v.Trainable {
				t.Errorf("key variable %s is trainable", v.Path())
			}
			q := store.GetVariable(StudentScope + "/" + rel)
			if q == nil {
				t.Fatalf("key variable %s has no query twin", v.Path())
			}
			if !q.Trainable { // BatchNorm running statistics: the key encoder's own, from its views
				if slices.Equal(f32(v), f32(q)) {
					t.Errorf("step %d: key running statistic %s equals the query's", s+1, v.Path())
				}
				continue
			}
			got := f32(v)
			for i := range got {
				want := query[rel][i] // step 1: the copy
				if s > 0 {
					want = float32(float32(m)*key[rel][i]) + float32(float32(1-m)*query[rel][i])
				}
				if got[i] != want {
					t.Fatalf("step %d: %s[%d] = %.9g, want %.9g (m·key %.9g + (1-m)·query %.9g)",
						s+1, v.Path(), i, got[i], want, key[rel][i], query[rel][i])
				}
			}
			checked++
		}
		if checked < 60 {
			t.Fatalf("checked %d key weights", checked)
		}
		// The pointer: 4, then 2 (6 + 2 wraps), then 0.
		ptr := store.GetVariable(MoCoScope + "/queue_ptr").MustValue().Value().(int64)
		if want := int64((4 * (s + 1)) % 6); ptr != want {
			t.Errorf("step %d: queue pointer %d, want %d", s+1, ptr, want)
		}
		if s > 0 {
			// Rows written this step: 4 rows from the old pointer, around the ring.
			queue := f32(store.GetVariable(MoCoScope + "/queue"))
			start := (4 * s) % 6
			for r := range 6 {
				written := (r-start+6)%6 < 4
				same := slices.Equal(queue[r*8:(r+1)*8], queueBefore[r*8:(r+1)*8])
				if written == same {
					t.Errorf("step %d: row %d written %v, changed %v", s+1, r, written, !same)
				}
				norm := 0.0
				for _, v := range queue[r*8 : (r+1)*8] {
					norm += float64(v) * float64(v)
				}
				if math.Abs(norm-1) > 1e-5 {
					t.Errorf("step %d: queue row %d has norm² %g", s+1, r, norm)
				}
			}
		}
	}
	for v := range store.IterVariables() {
		if strings.HasPrefix(v.Path(), "/optimizer"+KeyScope+"/") {
			t.Errorf("the optimiser holds state for %s", v.Path())
		}
	}
}

// TestKeyEncoderGetsNoGradient: the loss's gradient with respect to every key-encoder weight is
// zero; the query encoder's is not.
func TestKeyEncoderGetsNoGradient(t *testing.T) {
	store, step, tr := tinyStep(t)
	if _, err := tr.Step(views(0)); err != nil { // creates and initialises the variables
		t.Fatal(err)
	}
	var keyVars, queryVars []*model.Variable
	for v := range store.IterVariables() {
		if !v.DType().IsFloat() {
			continue
		}
		if strings.HasPrefix(v.Path(), KeyScope+"/") && store.GetVariable(StudentScope+strings.TrimPrefix(v.Path(), KeyScope)).Trainable {
			keyVars = append(keyVars, v)
		}
		if strings.HasPrefix(v.Path(), StudentScope+"/") && v.Trainable {
			queryVars = append(queryVars, v)
		}
	}
	grads := model.MustExecOnceN(backend.Go(), store, func(scope *model.Scope, x *Node) []*Node {
		g := x.Graph()
		store.SetTraining(g, true)
		var wrt []*Node
		for _, v := range append(slices.Clone(keyVars), queryVars...) {
			wrt = append(wrt, v.NodeValue(g))
		}
		return Gradient(step.Loss(scope, []*Node{x})["loss"], wrt...)
	}, views(1))
	for i, v := range keyVars {
		for _, x := range tensors.MustCopyFlatData[float32](grads[i]) {
			if x != 0 {
				t.Fatalf("key variable %s has a gradient", v.Path())
			}
		}
	}
	nonzero := 0
	for _, gr := range grads[len(keyVars):] {
		for _, x := range tensors.MustCopyFlatData[float32](gr) {
			if x != 0 {
				nonzero++
				break
			}
		}
	}
	if len(keyVars) < 60 || nonzero < len(queryVars)/2 {
		t.Errorf("%d key variables; %d of %d query variables have a gradient", len(keyVars), nonzero, len(queryVars))
	}
}

// TestRunInitialisesFinetune: a tiny run of each method on generated scenes (MoCo's resumes
// exactly), whose checkpoint initialises `finetune` as a distilled one does: with the
// backbone frozen, the fine-tuned model's backbone is the query (online) encoder's, variable
// for variable, not the key (target) encoder's.
func TestRunInitialisesFinetune(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1)) // bit-exact resumption
	data := filepath.Join(t.TempDir(), "scenes")
	if err := scenes.Generate(data, scenes.Config{Train: 8, Val: 4, Size: 32, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method string
		set    []string
		lr     float64
	}{
		{"mocov2", []string{"queue=8"}, 0.03 * 4 / 256},
		{"byol", []string{"bn_splits=1", "proj_hidden=32", "optimizer=lars", "weight_decay=1.5e-6"}, 0.2 * 4 / 256},
	} {
		t.Run(tc.method, func(t *testing.T) {
			set := append([]string{"ssl_method=" + tc.method, "dataset=scenes", "data=" + data, "size=32,32", "small_stem=true", "batch=4",
				"key_momentum=0.5", "proj_dim=16", "workers=1", "log_every=1", "schedule=constant"}, tc.set...) // constant: the same rates at steps=2 and 3
			out := t.TempDir()
			res, err := Run(backend.Go(), configstest.Store(t, Defaults(), append(set, "steps=3")...), out, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if res.Steps != 3 || math.IsNaN(res.LastLoss) || res.LastLoss <= 0 || res.LastAcc < 0 || res.LastAcc > 1 || res.LR != tc.lr {
				t.Fatalf("result %+v", res)
			}
			straight := model.NewStore()
			if _, err := train.Restore(straight, res.Checkpoint); err != nil {
				t.Fatal(err)
			}
			if tc.method == "mocov2" { // BYOL's τ follows the run's length: steps=2 then 3 is another run
				checkResume(t, set, res.Checkpoint, straight)
			}
			checkFinetuneInit(t, data, res.Checkpoint, straight)
		})
	}
}

// checkResume: two steps, then resumed to three, give the weights, queue and key encoder of
// three steps straight.
func checkResume(t *testing.T, set []string, want string, straight *model.Store) {
	split := t.TempDir()
	if _, err := Run(backend.Go(), configstest.Store(t, Defaults(), append(set, "steps=2")...), split, io.Discard); err != nil {
		t.Fatal(err)
	}
	last, _, _ := train.Latest(split)
	resumed := model.NewStore()
	if _, err := train.Restore(resumed, last.Path); err != nil {
		t.Fatal(err)
	}
	configs.SetDefaults(resumed, Defaults())
	more, _ := configs.ParseSet([]string{"steps=3"})
	if err := configs.Apply(resumed, Defaults(), more); err != nil {
		t.Fatal(err)
	}
	res2, err := Run(backend.Go(), resumed, split, io.Discard)
	if err != nil || res2.Steps != 3 {
		t.Fatalf("resumed run: %d steps, %v", res2.Steps, err)
	}
	again := model.NewStore()
	train.Restore(again, res2.Checkpoint)
	for _, path := range []string{BackboneScope + "/stem/conv1/weights", KeyScope + "/projector/fc2/weights", MoCoScope + "/queue"} {
		if !slices.Equal(f32(straight.GetVariable(path)), f32(again.GetVariable(path))) {
			t.Errorf("%s differs between the straight and the resumed run", path)
		}
	}
}

// checkFinetuneInit fine-tunes from ckpt with the backbone frozen, so that the fine-tuned
// checkpoint holds what init loaded, and compares it with the pre-training checkpoint's
// backbones.
func checkFinetuneInit(t *testing.T, data, ckpt string, pre *model.Store) {
	ft, err := configs.NewStore(finetune.SemsegDefaults(), nil, "dataset=scenes", "data="+data, "keep_zero_label=true",
		"small_stem=true", "crop=32,32", "scale=64,32", "batch=2", "steps=1", "warmup=0", "head_channels=8", "workers=1",
		"overlays=0", "freeze_backbone=true", "init="+ckpt)
	if err != nil {
		t.Fatal(err)
	}
	ftRes, err := finetune.Semseg(backend.Go(), ft, t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	tuned := model.NewStore()
	if _, err := train.Restore(tuned, ftRes.Checkpoint); err != nil {
		t.Fatal(err)
	}
	compared, differsFromKey := 0, 0
	for v := range pre.IterVariables() {
		rel, ok := strings.CutPrefix(v.Path(), BackboneScope+"/")
		if !ok {
			continue
		}
		got := tuned.GetVariable("/model/backbone/" + rel)
		if got == nil {
			t.Fatalf("fine-tuning did not load %s", v.Path())
		}
		if !slices.Equal(f32(got), f32(v)) {
			t.Errorf("fine-tuned backbone variable %s is not the query encoder's", rel)
		}
		if !slices.Equal(f32(got), f32(pre.GetVariable(KeyScope+"/backbone/"+rel))) {
			differsFromKey++
		}
		compared++
	}
	if compared < 100 || differsFromKey < compared/4 {
		t.Errorf("compared %d backbone variables, %d differ from the key encoder's", compared, differsFromKey)
	}
}

// TestBYOLTau: τ rises from τ_base to 1 along a cosine over the run, and stays 1 after it.
func TestBYOLTau(t *testing.T) {
	for k, want := range []float64{0.9, 1 - 0.05*(math.Cos(math.Pi/4)+1), 0.95, 1 - 0.05*(math.Cos(3*math.Pi/4)+1), 1, 1} {
		got := MustExecOnce(backend.Go(), func(k *Node) *Node { return Tau(k, 0.9, 4) }, tensors.FromScalar(int64(k))).Value().(float64)
		if math.Abs(got-want) > 1e-15 {
			t.Errorf("τ at step %d of 4 = %.17g, want %.17g", k, got, want)
		}
	}
}

// TestBYOLStep: three steps of BYOL; the target (backbone and projector, no predictor) starts as
// the online network's copy and then follows target = τ·target + (1-τ)·online with τ of the
// step; nothing optimises it; the loss lies in [0, 8].
func TestBYOLStep(t *testing.T) {
	store, _, tr := tinyStep(t, "ssl_method=byol", "bn_splits=1", "proj_hidden=16", "key_momentum=0.8", "steps=3", "optimizer=lars", "warmup=0")
	snapshot := func() map[string][]float32 {
		out := map[string][]float32{}
		for v := range store.IterVariables() {
			if v.DType() == dtypes.Float32 {
				out[v.Path()] = f32(v)
			}
		}
		return out
	}
	for s := range 3 {
		before := snapshot()
		res, err := tr.Step(views(uint64(s)))
		if err != nil {
			t.Fatal(err)
		}
		if !res.Finite || !(res.Loss() >= 0 && res.Loss() <= 8) {
			t.Fatalf("step %d: %+v", s+1, res)
		}
		tau := 1 - 0.2*(math.Cos(math.Pi*float64(s)/3)+1)/2
		checked := 0
		for v := range store.IterVariables() {
			rel, ok := strings.CutPrefix(v.Path(), KeyScope+"/")
			if !ok || rel == "started" {
				continue
			}
			if strings.HasPrefix(rel, "predictor") {
				t.Fatalf("the target has a predictor: %s", v.Path())
			}
			online := store.GetVariable(StudentScope + "/" + rel)
			if v.Trainable || online == nil {
				t.Fatalf("target variable %s: trainable %v, online twin %v", v.Path(), v.Trainable, online != nil)
			}
			if !online.Trainable {
				continue // running statistics: the target's own
			}
			got, q, k := f32(v), before[online.Path()], before[v.Path()]
			for i := range got {
				want := float64(q[i])
				if s > 0 {
					want = float64(float32(tau))*float64(k[i]) + float64(float32(1-tau))*float64(q[i])
				}
				if math.Abs(float64(got[i])-want) > 1e-6*(math.Abs(want)+1e-3) {
					t.Fatalf("step %d (τ %g): %s[%d] = %.9g, want %.9g", s+1, tau, v.Path(), i, got[i], want)
				}
			}
			checked++
		}
		if checked < 60 {
			t.Fatalf("checked %d target weights", checked)
		}
	}
	for v := range store.IterVariables() {
		if strings.HasPrefix(v.Path(), "/optimizer"+KeyScope+"/") || strings.HasPrefix(v.Path(), MoCoScope) {
			t.Errorf("unexpected variable %s in a BYOL run", v.Path())
		}
	}
	if store.GetVariable("/optimizer"+PredictorScope+"/fc1/weights/momentum") == nil {
		t.Error("the predictor is not optimised")
	}
}
