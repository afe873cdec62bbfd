package distill

import (
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/configs/configstest"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/configs"
	_ "github.com/dreamteacher-go/dreamteacher/datasets/all"
	"github.com/dreamteacher-go/dreamteacher/datasets/scenes"
	_ "github.com/dreamteacher-go/dreamteacher/models/backbones/all"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/dreamteacher-go/dreamteacher/train/interpret"
	"github.com/dreamteacher-go/dreamteacher/train/pretrain"
	"github.com/dreamteacher-go/dreamteacher/train/teachers"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// tinyTeacher pre-trains adm_tiny for one step on generated scenes.
func tinyTeacher(t *testing.T) (data, ckpt string) {
	t.Helper()
	data = filepath.Join(t.TempDir(), "scenes")
	if err := scenes.Generate(data, scenes.Config{Train: 6, Val: 2, Size: 32, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	res, err := pretrain.Diffusion(backend.Go(), configstest.Store(t, pretrain.DiffusionDefaults(),
		"dataset=scenes", "data="+data, "size=32,32", "batch=2", "steps=1", "samples=0", "workers=1"), t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return data, res.Checkpoint
}

func TestDistillStep(t *testing.T) {
	data, teacher := tinyTeacher(t)
	out := t.TempDir()
	store := configstest.Store(t, Defaults(), "dataset=scenes", "data="+data, "size=32,32", "teacher="+teacher,
		"batch=2", "steps=2", "warmup=0", "regressor_width=16", "workers=1", "feature_images=2")
	teacherBefore := map[string][]float32{}
	res, err := Run(backend.Go(), store, out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 2 || math.IsNaN(res.LastLoss) || res.LastLoss <= 0 {
		t.Fatalf("result %+v", res)
	}
	if _, err := os.Stat(res.Features); err != nil {
		t.Error(err)
	}
	// The teacher did not change: compare with its checkpoint (EMA scope).
	ref := model.NewStore()
	if _, err := train.Restore(ref, teacher); err != nil {
		t.Fatal(err)
	}
	n := 0
	for v := range store.IterVariables() {
		rest, ok := strings.CutPrefix(v.Path(), teachers.Scope+"/unet/")
		if !ok {
			continue
		}
		if v.Trainable {
			t.Errorf("teacher variable %s is trainable", v.Path())
		}
		want := tensors.MustCopyFlatData[float32](ref.GetVariable(pretrain.EMAScope + "/" + rest).MustValue())
		got := tensors.MustCopyFlatData[float32](v.MustValue())
		for i := range want {
			if want[i] != got[i] {
				t.Fatalf("teacher variable %s changed during distillation", v.Path())
			}
		}
		n++
	}
	_ = teacherBefore
	if n == 0 {
		t.Fatal("no teacher variables")
	}
	// The student's checkpoint has the backbone, and not the teacher.
	ck := model.NewStore()
	if _, err := train.Restore(ck, res.Checkpoint); err != nil {
		t.Fatal(err)
	}
	var backbone, teacherVars int
	for v := range ck.IterVariables() {
		if strings.HasPrefix(v.Path(), BackboneScope+"/") {
			backbone++
		}
		if strings.HasPrefix(v.Path(), teachers.Scope+"/") {
			teacherVars++
		}
	}
	if backbone == 0 || teacherVars != 0 {
		t.Errorf("checkpoint has %d backbone and %d teacher variables", backbone, teacherVars)
	}
}

func TestDistillErrors(t *testing.T) {
	data, teacher := tinyTeacher(t)
	base := []string{"dataset=scenes", "data=" + data, "size=32,32", "batch=2", "steps=1", "warmup=0", "workers=1", "regressor_width=8"}
	for _, tc := range []struct{ set, want string }{
		{"taps=dec_s64", `unknown feature tap "dec_s64"`},
		{"size=30,32", "30"},
		{"t=5000", "t = 5000"},
		{"teacher=" + filepath.Join(t.TempDir(), "none.safetensors"), "none.safetensors"},
	} {
		set := append(append([]string{}, base...), "teacher="+teacher, tc.set)
		_, err := Run(backend.Go(), configstest.Store(t, Defaults(), set...), t.TempDir(), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.set, err, tc.want)
		}
	}
}

// TestEveryStudentVariableGetsAGradient runs one SGD step: the momentum buffer of each student
// variable then equals its gradient, which must not be zero everywhere. adm_tiny's taps have
// strides 4, 2 and 1, so the student uses the small stem (levels at strides 1..8) for every
// level of its FPN to be regressed.
func TestEveryStudentVariableGetsAGradient(t *testing.T) {
	data, teacher := tinyTeacher(t)
	store := configstest.Store(t, Defaults(), "dataset=scenes", "data="+data, "size=32,32", "teacher="+teacher,
		"batch=2", "steps=1", "warmup=0", "regressor_width=8", "workers=1", "feature_images=0", "optimizer=sgd", "weight_decay=0", "small_stem=true")
	if _, err := Run(backend.Go(), store, t.TempDir(), io.Discard); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for v := range store.IterVariables() {
		if !v.Trainable || !strings.HasPrefix(v.Path(), StudentScope+"/") {
			continue
		}
		buf := store.GetVariable("/optimizer" + v.Path() + "/momentum")
		if buf == nil {
			t.Errorf("%s was not optimised", v.Path())
			continue
		}
		nonZero := false
		for _, g := range tensors.MustCopyFlatData[float32](buf.MustValue()) {
			if g != 0 {
				nonZero = true
				break
			}
		}
		if !nonZero {
			t.Errorf("%s got a zero gradient", v.Path())
		}
		checked++
	}
	if checked < 50 {
		t.Errorf("only %d student variables checked", checked)
	}
}

// TestMixedDistillation trains an interpreter for a step on the teacher, then distils with
// L_feat + L_ld: the student's logit head is trained, the interpreter is frozen and not saved.
func TestMixedDistillation(t *testing.T) {
	data, teacher := tinyTeacher(t)
	itRes, err := interpret.Run(backend.Go(), configstest.Store(t, interpret.Defaults(), "teacher="+teacher, "dataset=scenes", "data="+data,
		"keep_zero_label=true", "batch=2", "epochs=1", "warmup_epochs=0", "width=16", "workers=1", "overlays=0", "label_count=2"),
		t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	store := configstest.Store(t, Defaults(), "dataset=scenes", "data="+data, "size=32,32", "teacher="+teacher, "mode=mixed",
		"interpreter="+itRes.Checkpoint, "batch=2", "steps=2", "warmup=0", "regressor_width=8", "workers=1", "feature_images=0", "small_stem=true")
	res, err := Run(backend.Go(), store, t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	records, err := train.ReadMetrics(filepath.Join(filepath.Dir(res.Checkpoint), "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	last := records[len(records)-1]
	if ld, feat := last["loss/ld"], last["loss/feat"]; !(ld > 0) || !(feat > 0) || math.Abs(last["loss"]-(feat+ld)) > 1e-4*last["loss"] {
		t.Errorf("terms %v: want loss = feat + ld with both positive", last)
	}
	if store.GetVariable(StudentScope+"/logit_head/logits/weights") == nil {
		t.Error("no logit head")
	}
	for v := range store.IterVariables() {
		if strings.HasPrefix(v.Path(), "/label/") && v.Trainable {
			t.Errorf("interpreter variable %s is trainable", v.Path())
		}
	}
	// A mode typo is an error: at parse time, and in Run for a store made by hand.
	if _, err := configs.NewStore(Defaults(), nil, "mode=labels"); err == nil || !strings.Contains(err.Error(), "mode = labels") {
		t.Errorf("bad mode setting: %v", err)
	}
	bad := configstest.Store(t, Defaults(), "dataset=scenes", "data="+data, "size=32,32", "teacher="+teacher)
	bad.SetParam("/mode", "labels")
	if _, err := Run(backend.Go(), bad, t.TempDir(), io.Discard); err == nil || !strings.Contains(err.Error(), `"labels"`) {
		t.Errorf("bad mode error: %v", err)
	}
}

// TestGANTeacher distils a BigGAN's features ("synthesized dataset"): the student sees the
// generator's samples; no dataset is read.
func TestGANTeacher(t *testing.T) {
	data := filepath.Join(t.TempDir(), "scenes")
	if err := scenes.Generate(data, scenes.Config{Train: 4, Val: 1, Size: 32, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	gan, err := pretrain.GAN(backend.Go(), configstest.Store(t, pretrain.GANDefaults(), "dataset=scenes", "data="+data, "batch=2", "steps=1",
		"d_steps=1", "samples=0", "workers=1"), t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	store := configstest.Store(t, Defaults(), "teacher="+gan.Checkpoint, "small_stem=true", "batch=2", "steps=2", "warmup=0",
		"regressor_width=8", "feature_images=2", "data=/nowhere")
	res, err := Run(backend.Go(), store, t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 2 || !(res.LastLoss > 0) || len(res.Targets) == 0 {
		t.Fatalf("result %+v", res)
	}
	if _, err := os.Stat(res.Features); err != nil {
		t.Error(err)
	}
	for v := range store.IterVariables() {
		if strings.HasPrefix(v.Path(), teachers.Scope+"/") && v.Trainable {
			t.Fatalf("teacher variable %s is trainable", v.Path())
		}
	}
}
