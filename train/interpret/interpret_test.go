package interpret

import (
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/configs/configstest"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/configs"
	_ "github.com/dreamteacher-go/dreamteacher/datasets/all"
	"github.com/dreamteacher-go/dreamteacher/datasets/scenes"
	"github.com/dreamteacher-go/dreamteacher/models/adm"
	"github.com/dreamteacher-go/dreamteacher/models/diffusion"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/dreamteacher-go/dreamteacher/train/pretrain"
	"github.com/dreamteacher-go/dreamteacher/train/teachers"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// fixture is a tiny scenes dataset and a teacher checkpoint pre-trained on it for one step
// (adm_tiny at 32 px).
func fixture(t *testing.T) (data, teacher string) {
	t.Helper()
	data = filepath.Join(t.TempDir(), "scenes")
	if err := scenes.Generate(data, scenes.Config{Train: 8, Val: 4, Size: 32, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	store := configstest.Store(t, pretrain.DiffusionDefaults(), "dataset=scenes", "data="+data, "adm=adm_tiny", "size=32,32",
		"batch=2", "steps=1", "samples=0", "workers=1")
	res, err := pretrain.Diffusion(backend.Go(), store, t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return data, res.Checkpoint
}

func interpretStore(t *testing.T, data, teacher string, set ...string) *model.Store {
	return configstest.Store(t, Defaults(), append([]string{"teacher=" + teacher, "dataset=scenes", "data=" + data,
		"keep_zero_label=true", "batch=2", "epochs=1", "warmup_epochs=0", "width=16", "workers=1", "overlays=2", "log_every=1"}, set...)...)
}

func TestTrainEvaluateAndLoad(t *testing.T) {
	data, teacherCkpt := fixture(t)
	out := t.TempDir()
	store := interpretStore(t, data, teacherCkpt, "label_count=4")
	res, err := Run(backend.Go(), store, out, testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mIoU %.3f aAcc %.3f loss %.3f, train %v, eval %v", res.Metrics.MIoU, res.Metrics.AAcc, res.LastLoss, res.TrainTime, res.EvalTime)
	if res.Steps != 2 || res.LabeledImages != 4 || len(res.Classes) != 7 || res.Teacher != "adm_tiny" {
		t.Errorf("%d steps on %d labelled images, %d classes, teacher %s; want 2 steps (1 epoch of 4 images, batch 2), 4, 7 and adm_tiny",
			res.Steps, res.LabeledImages, len(res.Classes), res.Teacher)
	}
	if math.IsNaN(res.LastLoss) || math.IsInf(res.LastLoss, 0) || res.LastLoss <= 0 {
		t.Errorf("last loss %v", res.LastLoss)
	}
	m := res.Metrics
	if math.IsNaN(m.MIoU) || m.MIoU < 0 || m.MIoU > 1 || m.AAcc < 0 || m.AAcc > 1 {
		t.Errorf("mIoU %v, aAcc %v: want values in [0, 1]", m.MIoU, m.AAcc)
	}
	for _, p := range []string{res.Checkpoint, res.Overlays, filepath.Join(out, "metrics.jsonl")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("missing output: %v", err)
		}
	}

	// A store restored from the checkpoint resumes (the teacher is reloaded from its own).
	resumed := model.NewStore()
	if _, err := train.Restore(resumed, res.Checkpoint); err != nil {
		t.Fatal(err)
	}
	configs.SetDefaults(resumed, Defaults())
	more, _ := configs.ParseSet([]string{"epochs=2"})
	if err := configs.Apply(resumed, Defaults(), more); err != nil {
		t.Fatal(err)
	}
	if res2, err := Run(backend.Go(), resumed, out, io.Discard); err != nil || res2.Steps != 4 {
		t.Fatalf("resumed run: %d steps, %v; want 4", res2.Steps, err)
	}

	// The teacher is the checkpoint's EMA UNet, untouched by training.
	teacherStore := model.NewStore()
	if _, err := train.Restore(teacherStore, teacherCkpt); err != nil {
		t.Fatal(err)
	}
	compared := 0
	for v := range teacherStore.IterVariables() {
		rel, ok := strings.CutPrefix(v.Path(), pretrain.EMAScope+"/")
		if !ok {
			continue
		}
		got := store.GetVariable(teachers.Scope + "/unet/" + rel)
		if got == nil {
			t.Fatalf("teacher variable %s was not loaded", rel)
		}
		if got.Trainable {
			t.Errorf("teacher variable %s is trainable", got.Path())
		}
		if !slices.Equal(tensors.MustCopyFlatData[float32](v.MustValue()), tensors.MustCopyFlatData[float32](got.MustValue())) {
			t.Errorf("teacher variable %s changed during training", got.Path())
		}
		compared++
	}
	if compared < 50 {
		t.Errorf("compared only %d teacher variables", compared)
	}

	// The checkpoint holds the interpreter, not the teacher, and the resolved settings.
	ckptStore := model.NewStore()
	if _, err := train.Restore(ckptStore, res.Checkpoint); err != nil {
		t.Fatal(err)
	}
	interp := 0
	for v := range ckptStore.IterVariables() {
		switch {
		case strings.HasPrefix(v.Path(), teachers.Scope+"/"):
			t.Errorf("the checkpoint holds the teacher's %s", v.Path())
		case strings.HasPrefix(v.Path(), InterpreterScope+"/"):
			interp++
		}
	}
	if interp == 0 {
		t.Error("the checkpoint holds no interpreter variable")
	}
	if got := configs.Get[string](ckptStore, "adm"); got != "adm_tiny" {
		t.Errorf("recorded adm %q", got)
	}

	// Label distillation loads it under another scope, frozen, and checks its teacher.
	distStore := model.NewStore()
	it, err := LoadInterpreter(distStore, res.Checkpoint, "/label/interpreter")
	if err != nil {
		t.Fatal(err)
	}
	if it.NumClasses != 7 || it.ADM != "adm_tiny" || it.T != 50 || !slices.Equal(it.Taps, adm.DefaultTaps(adm.Configs["adm_tiny"])) ||
		it.Config.Width != 16 || !slices.Equal(it.Size, []int{32, 32}) {
		t.Errorf("loaded interpreter %+v", it)
	}
	for v := range distStore.IterVariables() {
		if v.Trainable {
			t.Errorf("loaded interpreter variable %s is trainable", v.Path())
		}
	}
	teacher, err := teachers.LoadDiffusion(it.Teacher, it.TeacherScope, "", it.T, it.Taps)
	if err != nil {
		t.Fatal(err)
	}
	if err := it.CheckTeacher(teacher); err != nil {
		t.Error(err)
	}
	// Built from the loaded copy inside a training graph, the interpreter gives the logits of
	// the trained one in inference (same noise: same RNG seed).
	x := randomImages(2, 32, 32)
	ref := model.MustNewExec(backend.Go(), store, func(scope *model.Scope, x *Node) *Node {
		return (&setup{teacher: teacher, cfg: it.Config, numClasses: it.NumClasses}).logits(scope, x)
	})
	xShape := []shapes.Shape{x.Shape()}
	if err := train.Declare(backend.Go(), distStore, xShape, func(scope *model.Scope, in []*Node) { teacher.Features(scope.In("teacher"), in[0]) }); err != nil {
		t.Fatal(err)
	}
	if err := teacher.Load(distStore); err != nil {
		t.Fatal(err)
	}
	label := model.MustNewExec(backend.Go(), distStore, func(scope *model.Scope, x *Node) *Node {
		distStore.SetTraining(x.Graph(), true)
		return it.Logits(scope.In("label").In("interpreter"), teacher.Features(scope.In("teacher"), x))
	})
	var logits [2][]float32
	for i, e := range []*model.Exec{ref, label} {
		if err := []*model.Store{store, distStore}[i].SetRNGStateFromSeed(9); err != nil {
			t.Fatal(err)
		}
		out := e.MustCall(x)[0]
		if want := shapes.Make(dtypes.Float32, 2, 32, 32, 7); !out.Shape().Equal(want) {
			t.Fatalf("logits %s, want %s", out.Shape(), want)
		}
		logits[i] = tensors.MustCopyFlatData[float32](out)
	}
	t.Logf("loaded vs trained interpreter: max difference %g, logits of magnitude %g", maxDiff(logits[0], logits[1]), maxDiff(logits[0], make([]float32, len(logits[0]))))
	if d := maxDiff(logits[0], logits[1]); d > 1e-5 {
		t.Errorf("the loaded interpreter's logits differ from the trained one's by %g", d)
	}

	other, err := teachers.LoadDiffusion(it.Teacher, it.TeacherScope, "", 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := it.CheckTeacher(other); err == nil || !strings.Contains(err.Error(), "t 100, the interpreter's 50") {
		t.Errorf("a teacher at another timestep: error %v", err)
	}
}

// A teacher pre-trained with another ADM configuration than the one asked for is a clear error
// naming both, before any training.
func TestConflictingADMConfiguration(t *testing.T) {
	data, teacherCkpt := fixture(t)
	store := interpretStore(t, data, teacherCkpt, "adm=adm_small")
	_, err := Run(backend.Go(), store, t.TempDir(), io.Discard)
	if err == nil || !strings.Contains(err.Error(), `"adm_small"`) || !strings.Contains(err.Error(), `"adm_tiny"`) || !strings.Contains(err.Error(), teacherCkpt) {
		t.Errorf("error %v: want one naming adm_small, adm_tiny and the checkpoint", err)
	}
	if train.CurrentStep(store) != 0 {
		t.Error("a conflicting configuration must not train")
	}
	if _, err := teachers.LoadDiffusion(teacherCkpt, pretrain.EMAScope, "", 50, []string{"dec_s64"}); err == nil || !strings.Contains(err.Error(), "dec_s4") {
		t.Errorf("unknown tap: error %v, want one listing the valid taps", err)
	}
	if _, err := teachers.LoadDiffusion(teacherCkpt, pretrain.EMAScope, "", 1000, nil); err == nil || !strings.Contains(err.Error(), "1000") {
		t.Errorf("t outside the process: error %v", err)
	}
	// A folder stands for its newest checkpoint; a folder without one is an error naming it.
	if tc, err := teachers.LoadDiffusion(filepath.Dir(teacherCkpt), pretrain.EMAScope, "adm_tiny", 50, nil); err != nil || tc.Checkpoint != teacherCkpt {
		t.Errorf("teacher folder: %v, %v", tc, err)
	}
	empty := t.TempDir()
	if _, err := teachers.LoadDiffusion(empty, pretrain.EMAScope, "", 50, nil); err == nil || !strings.Contains(err.Error(), empty) {
		t.Errorf("empty teacher folder: error %v", err)
	}
}

// The teacher runs as in inference inside the interpreter's training graph: with dropout in
// its residual blocks, its features in a training graph equal those of an inference graph
// given the same noise, while an unfrozen UNet's differ.
func TestTeacherIsInferenceInTrainingGraph(t *testing.T) {
	cfg, err := adm.GetConfig("adm_tiny")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dropout = 0.5
	proc, err := diffusion.New(diffusion.DefaultConfig(cfg.LearnSigma))
	if err != nil {
		t.Fatal(err)
	}
	teacher := &teachers.Diffusion{Config: cfg, Name: "adm_tiny+dropout", Process: proc, Step: 50}
	for _, name := range []string{"dec_s1"} {
		info, _ := adm.LookupTap(cfg, name)
		teacher.Taps = append(teacher.Taps, info)
	}
	x := randomImages(2, 16, 16)
	rng := rand.New(rand.NewPCG(1, 2))

	features := func(store *model.Store, training, frozen bool) []float32 {
		t.Helper()
		exec := model.MustNewExec(backend.Go(), store, func(scope *model.Scope, x *Node) *Node {
			store.SetTraining(x.Graph(), training)
			if frozen {
				return teacher.Features(scope.In("teacher"), x)["dec_s1"]
			}
			unet := scope.In("teacher").In("unet")
			out := proc.EncodeAt(unet, adm.New(unet, cfg).Taps("dec_s1"), AddScalar(MulScalar(x, 2), -1), 50, nil)
			return out.Taps["dec_s1"]
		})
		if err := store.SetRNGStateFromSeed(5); err != nil {
			t.Fatal(err)
		}
		return tensors.MustCopyFlatData[float32](exec.MustCall(x)[0])
	}
	// Create the variables, then give every weight random values: the UNet's zero-initialised
	// last convs would hide what dropout does.
	store := model.NewStore()
	features(store, false, true)
	for v := range store.IterVariables() {
		if strings.HasPrefix(v.Path(), teachers.Scope+"/") {
			val := tensors.FromShape(v.Shape())
			tensors.MustMutableFlatData(val, func(f []float32) {
				for i := range f {
					f[i] = 0.4 * (rng.Float32() - 0.5)
				}
			})
			v.MustSetValue(val)
		}
	}
	inference := features(store, false, true)
	frozen := features(store, true, true)
	if d := maxDiff(inference, frozen); d > 1e-5 {
		t.Errorf("the frozen teacher's features differ between training and inference graphs by %g", d)
	}

	// Control: the same weights, not frozen, in a training graph (dropout active).
	plain := model.NewStore()
	for v := range store.IterVariables() {
		if strings.HasPrefix(v.Path(), teachers.Scope+"/") {
			val, _ := v.MustValue().LocalClone()
			if _, err := plain.CreateVariable(v.Path(), val); err != nil {
				t.Fatal(err)
			}
		}
	}
	if d := maxDiff(inference, features(plain, false, false)); d > 1e-5 {
		t.Fatalf("control: the unfrozen UNet in inference differs from the teacher by %g", d)
	}
	d := maxDiff(inference, features(plain, true, false))
	t.Logf("frozen teacher, training vs inference graph: %g; unfrozen UNet with dropout: %g", maxDiff(inference, frozen), d)
	if d < 1e-3 {
		t.Errorf("control: dropout changed the unfrozen UNet's features by only %g; the test would not see a teacher in training mode", d)
	}
}

// randomImages returns n random h x w RGB images in [0, 1].
func randomImages(n, h, w int) *tensors.Tensor {
	x := tensors.FromShape(shapes.Make(dtypes.Float32, n, h, w, 3))
	rng := rand.New(rand.NewPCG(uint64(n), uint64(h*w)))
	tensors.MustMutableFlatData(x, func(f []float32) {
		for i := range f {
			f[i] = rng.Float32()
		}
	})
	return x
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}
