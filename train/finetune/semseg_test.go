package finetune

import (
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/configs"
	_ "github.com/dreamteacher-go/dreamteacher/datasets/all"
	"github.com/dreamteacher-go/dreamteacher/datasets/scenes"
	_ "github.com/dreamteacher-go/dreamteacher/models/backbones/all"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

func tinyScenes(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "scenes")
	if err := scenes.Generate(dir, scenes.Config{Train: 8, Val: 4, Size: 32, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func semsegStore(t *testing.T, data string, set ...string) *model.Store {
	store, err := configs.NewStore(SemsegDefaults(), nil, append([]string{"dataset=scenes", "data=" + data, "keep_zero_label=true",
		"crop=32,32", "scale=64,32", "batch=4", "steps=2", "warmup=0", "head_channels=16", "workers=1", "overlays=2"}, set...)...)
	if err != nil {
		t.Fatal(err)
	}
	return store
}

func TestSemsegFineTuneStepAndEval(t *testing.T) {
	data := tinyScenes(t)
	out := t.TempDir()
	res, err := Semseg(backend.Go(), semsegStore(t, data, "label_count=6"), out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.LabeledImages != 6 || len(res.Classes) != 7 {
		t.Errorf("labelled %d images, %d classes; want 6 and 7 (background + 6 shapes)", res.LabeledImages, len(res.Classes))
	}
	if math.IsNaN(res.Metrics.AAcc) || res.Metrics.AAcc < 0 || res.Metrics.AAcc > 1 {
		t.Errorf("aAcc %v", res.Metrics.AAcc)
	}
	for _, p := range []string{res.Checkpoint, res.Overlays, filepath.Join(out, "metrics.jsonl")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("missing output: %v", err)
		}
	}

	// Initialising the backbone from that checkpoint (as from a distilled student) loads every
	// backbone variable; a wrong scope fails loudly.
	store := semsegStore(t, data, "init="+res.Checkpoint, "init_scope=/model/backbone", "steps=1")
	if _, err := Semseg(backend.Go(), store, t.TempDir(), io.Discard); err != nil {
		t.Fatal(err)
	}
	store = semsegStore(t, data, "init="+res.Checkpoint, "init_scope=/student/backbone", "steps=1")
	if _, err := Semseg(backend.Go(), store, t.TempDir(), io.Discard); err == nil {
		t.Error("init from a scope the checkpoint lacks must fail")
	}
	if train.CurrentStep(store) != 0 {
		t.Error("a failed init must not train")
	}
}

// With freeze_backbone only the head trains: every backbone variable, BatchNorm's running
// statistics included, keeps the value it was initialised with.
func TestSemsegFrozenBackbone(t *testing.T) {
	data := tinyScenes(t)
	first, err := Semseg(backend.Go(), semsegStore(t, data, "steps=1"), t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	store := semsegStore(t, data, "init="+first.Checkpoint, "init_scope=/model/backbone", "freeze_backbone=true", "steps=2")
	res, err := Semseg(backend.Go(), store, t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checkFrozenBackbone(t, first.Checkpoint, res.Checkpoint)
}

// checkFrozenBackbone checks that between the checkpoints before and after every variable under
// /model/backbone/ kept its value and some other /model/ variable changed.
func checkFrozenBackbone(t *testing.T, beforePath, afterPath string) {
	t.Helper()
	before, after := model.NewStore(), model.NewStore()
	for _, c := range []struct {
		s    *model.Store
		path string
	}{{before, beforePath}, {after, afterPath}} {
		if _, err := train.Restore(c.s, c.path); err != nil {
			t.Fatal(err)
		}
	}
	backboneVars, headChanged := 0, false
	for v := range after.IterVariables() {
		old := before.GetVariable(v.Path())
		if old == nil || v.Path() == "/global_step" || !strings.HasPrefix(v.Path(), "/model/") {
			continue
		}
		a := tensors.MustCopyFlatData[float32](old.MustValue())
		b := tensors.MustCopyFlatData[float32](v.MustValue())
		if strings.HasPrefix(v.Path(), "/model/backbone/") {
			backboneVars++
			if !slices.Equal(a, b) {
				t.Errorf("frozen backbone variable %s changed", v.Path())
			}
		} else if !slices.Equal(a, b) {
			headChanged = true
		}
	}
	if backboneVars == 0 || !headChanged {
		t.Errorf("%d backbone variables compared, head changed: %v", backboneVars, headChanged)
	}
}

// backbone_lr_mult scales the backbone's steps only: with a multiplier of 1e-30 its weights
// keep their values (the scaled AdamW update is below float32 resolution) while the head
// trains; with 1 they move.
func TestSemsegBackboneLRMult(t *testing.T) {
	data := tinyScenes(t)
	first, err := Semseg(backend.Go(), semsegStore(t, data, "steps=1"), t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	before := model.NewStore()
	if _, err := train.Restore(before, first.Checkpoint); err != nil {
		t.Fatal(err)
	}
	for _, mult := range []string{"1e-30", "1"} {
		store := semsegStore(t, data, "init="+first.Checkpoint, "init_scope=/model/backbone", "backbone_lr_mult="+mult, "steps=2")
		res, err := Semseg(backend.Go(), store, t.TempDir(), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		after := model.NewStore()
		if _, err := train.Restore(after, res.Checkpoint); err != nil {
			t.Fatal(err)
		}
		backboneMoved, headMoved := 0, false
		for v := range after.IterVariables() {
			old := before.GetVariable(v.Path())
			if old == nil || !strings.HasPrefix(v.Path(), "/model/") || strings.Contains(v.Path(), "running_") {
				continue
			}
			changed := !slices.Equal(tensors.MustCopyFlatData[float32](old.MustValue()), tensors.MustCopyFlatData[float32](v.MustValue()))
			if strings.HasPrefix(v.Path(), "/model/backbone/") {
				if changed {
					backboneMoved++
				}
			} else if changed {
				headMoved = true
			}
		}
		if !headMoved {
			t.Errorf("backbone_lr_mult=%s: the head did not train", mult)
		}
		if (mult == "1") != (backboneMoved > 0) {
			t.Errorf("backbone_lr_mult=%s: %d backbone weights moved", mult, backboneMoved)
		}
	}
}
