package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/datasets/scenes"
	"github.com/dreamteacher-go/dreamteacher/train"
)

// The runs of these tests use the demo's configs at the quick demo's sizes, on a small
// generated scenes dataset shared by the tests of this file.
var (
	scenesOnce sync.Once
	scenesDir  string
	scenesErr  error
)

func testScenes(t *testing.T) string {
	t.Helper()
	scenesOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dreamteacher-runs-")
		if err != nil {
			scenesErr = err
			return
		}
		scenesDir = filepath.Join(dir, "scenes")
		scenesErr = scenes.Ensure(scenesDir, scenes.Config{Train: 40, Val: 4, Size: 32, Seed: 1}) // the demo configs label 32
	})
	if scenesErr != nil {
		t.Fatal(scenesErr)
	}
	return scenesDir
}

// Tiny variants of each training command: (arguments without --out).
func teacherArgs(data string) []string {
	return []string{"pretrain-diffusion", "--config", "demo_teacher", "--set", "data=" + data, "--set", "adm=adm_tiny",
		"--set", "size=32,32", "--set", "batch=2", "--set", "steps=3", "--set", "samples=0", "--set", "log_every=1"}
}

func ganArgs(data string) []string {
	return []string{"pretrain-gan", "--set", "dataset=scenes", "--set", "data=" + data, "--set", "biggan=biggan_tiny_uncond",
		"--set", "batch=2", "--set", "steps=3", "--set", "d_steps=1", "--set", "samples=0", "--set", "log_every=1"}
}

func distillArgs(data, teacher string) []string {
	return []string{"distill", "--config", "demo_distill", "--set", "data=" + data, "--set", "teacher=" + teacher,
		"--set", "size=32,32", "--set", "small_stem=true", "--set", "regressor_width=16", "--set", "batch=2",
		"--set", "steps=3", "--set", "warmup=1", "--set", "feature_images=0", "--set", "log_every=1"}
}

func sslArgs(data string) []string {
	return []string{"pretrain-ssl", "--method", "mocov2", "--config", "demo_mocov2", "--set", "data=" + data,
		"--set", "size=32,32", "--set", "small_stem=true", "--set", "proj_dim=16", "--set", "queue=6", "--set", "batch=4",
		"--set", "steps=3", "--set", "log_every=1"}
}

func byolArgs(data string) []string {
	return []string{"pretrain-ssl", "--method", "byol", "--config", "camvid_byol", "--set", "dataset=scenes", "--set", "data=" + data,
		"--set", "size=32,32", "--set", "small_stem=true", "--set", "proj_hidden=32", "--set", "proj_dim=16", "--set", "batch=4",
		"--set", "steps=3", "--set", "warmup=1", "--set", "log_every=1"}
}

func semsegArgs(data string, extra ...string) []string {
	return append([]string{"finetune", "--task", "semseg", "--config", "demo_semseg", "--set", "data=" + data,
		"--set", "small_stem=true", "--set", "label_count=4", "--set", "crop=32,32", "--set", "scale=32,32",
		"--set", "head_channels=8", "--set", "batch=2", "--set", "steps=3", "--set", "warmup=1", "--set", "overlays=0",
		"--set", "log_every=1"}, extra...)
}

func instsegArgs(data string) []string {
	return []string{"finetune", "--task", "instseg", "--config", "demo_instseg", "--set", "data=" + data,
		"--set", "small_stem=true", "--set", "label_count=4", "--set", "min_size_train=32", "--set", "max_size_train=32",
		"--set", "min_size_test=32", "--set", "max_size_test=32", "--set", "canvas=32,32", "--set", "batch=2",
		"--set", "steps=3", "--set", "warmup=1", "--set", "overlays=0", "--set", "log_every=1"}
}

func interpretArgs(data, teacher string) []string {
	return []string{"interpret", "--set", "dataset=scenes", "--set", "data=" + data, "--set", "teacher=" + teacher,
		"--set", "keep_zero_label=true", "--set", "label_count=4", "--set", "size=32,32", "--set", "width=8",
		"--set", "batch=2", "--set", "epochs=2", "--set", "warmup_epochs=1", "--set", "overlays=0", "--set", "log_every=1"}
}

// mustRun runs a command line and fails the test on a non-zero exit.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, stdout, stderr := runCLI(args...)
	if code != 0 {
		t.Fatalf("%v: exit %d\n%s\n%s", args, code, stdout, stderr)
	}
	return stdout
}

// losses reads the loss of every logged step of a run folder.
func losses(t *testing.T, dir string) []float64 {
	t.Helper()
	records, err := train.ReadMetrics(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	for _, r := range records {
		out = append(out, r["loss"])
	}
	return out
}

// TestFreshRunsAreIdentical runs every training command twice from scratch with the same seed
// and requires the same loss at every step, bit for bit. At GOMAXPROCS=1 the Go backend adds in
// a fixed order; with more threads its parallel sums may group additions differently (see
// docs/RESULTS.md for what was measured at 2).
func TestFreshRunsAreIdentical(t *testing.T) {
	if testing.Short() {
		t.Skip("trains eight tiny models twice")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	data := testScenes(t)
	root := t.TempDir()
	teacher := ""
	cases := []struct {
		name string
		args func() []string
	}{
		{"pretrain-diffusion", func() []string { return teacherArgs(data) }},
		{"pretrain-gan", func() []string { return ganArgs(data) }},
		{"distill", func() []string { return distillArgs(data, teacher) }},
		{"pretrain-ssl", func() []string { return sslArgs(data) }},
		{"pretrain-ssl-byol", func() []string { return byolArgs(data) }},
		{"interpret", func() []string { return interpretArgs(data, teacher) }},
		{"finetune-semseg", func() []string { return semsegArgs(data) }},
		{"finetune-instseg", func() []string { return instsegArgs(data) }},
	}
	for _, c := range cases {
		var runs [2][]float64
		for i := range runs {
			out := filepath.Join(root, c.name, []string{"a", "b"}[i])
			mustRun(t, append(c.args(), "--out", out)...)
			runs[i] = losses(t, out)
			if c.name == "pretrain-diffusion" && i == 0 {
				teacher = out
			}
		}
		if len(runs[0]) == 0 || len(runs[0]) != len(runs[1]) {
			t.Fatalf("%s: %d and %d logged steps", c.name, len(runs[0]), len(runs[1]))
		}
		for s := range runs[0] {
			if runs[0][s] != runs[1][s] {
				t.Errorf("%s: step %d loss %.9g vs %.9g: two fresh runs with one seed differ", c.name, s+1, runs[0][s], runs[1][s])
				break
			}
		}
	}
}

// TestRunFolderKnowsWhatItHolds: a folder resumes only the run that wrote it; --restart moves
// the earlier run aside instead of mixing with it; stale temporary files are removed; the
// training time of a resumed run counts its earlier segment.
func TestRunFolderKnowsWhatItHolds(t *testing.T) {
	if testing.Short() {
		t.Skip("trains tiny models")
	}
	data := testScenes(t)
	root := t.TempDir()

	// A teacher's checkpoint in a fine-tuning folder.
	teacher := filepath.Join(root, "teacher")
	mustRun(t, append(teacherArgs(data), "--out", teacher)...)
	seg := filepath.Join(root, "seg")
	os.MkdirAll(seg, 0o755)
	last, _, _ := train.Latest(teacher)
	raw, _ := os.ReadFile(last.Path)
	os.WriteFile(filepath.Join(seg, filepath.Base(last.Path)), raw, 0o644)
	code, _, stderr := runCLI(append(semsegArgs(data), "--out", seg)...)
	if code != 2 || !strings.Contains(stderr, "holds a pretrain-diffusion run") || !strings.Contains(stderr, "--restart") {
		t.Errorf("fine-tuning over a teacher's folder: exit %d, %q", code, stderr)
	}

	// A resnet34 run over a resnet18 folder names the setting; --restart starts over, with the
	// old checkpoints (numbered higher than the new run's) moved aside, not pruned in.
	os.RemoveAll(seg)
	mustRun(t, append(semsegArgs(data, "--set", "steps=4"), "--out", seg)...)
	code, _, stderr = runCLI(append(semsegArgs(data, "--set", "backbone=resnet34"), "--out", seg)...)
	if code != 2 || !strings.Contains(stderr, "setting backbone") || !strings.Contains(stderr, "resnet18") {
		t.Errorf("resnet34 over a resnet18 run: exit %d, %q", code, stderr)
	}
	stale := filepath.Join(seg, ".ckpt-00000004.safetensors.tmp-123")
	os.WriteFile(stale, []byte("half a checkpoint"), 0o644)
	mustRun(t, append(semsegArgs(data, "--set", "steps=2"), "--restart", "--out", seg)...)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary file %s not removed (%v)", stale, err)
	}
	all, _ := train.List(seg)
	if len(all) != 1 || all[0].Step != 2 {
		t.Errorf("after --restart the folder holds %v, want only the new run's checkpoint 2", all)
	}
	aside, _ := filepath.Glob(filepath.Join(seg, "restarted-*", "ckpt-00000004.safetensors"))
	if len(aside) != 1 {
		t.Errorf("the earlier run's checkpoint was not moved aside: %v", aside)
	}
	var first map[string]any
	readJSON(t, filepath.Join(seg, "result.json"), &first)
	if first["checkpoint"] != all[0].Path {
		t.Errorf("result.json names %v, want %s", first["checkpoint"], all[0].Path)
	}

	// Resuming to more steps: the training time counts both segments.
	mustRun(t, append(semsegArgs(data, "--set", "steps=4"), "--out", seg)...)
	var second map[string]any
	readJSON(t, filepath.Join(seg, "result.json"), &second)
	if second["train_seconds"].(float64) <= first["train_seconds"].(float64) {
		t.Errorf("train_seconds %v after resuming, %v before: the first segment is not counted", second["train_seconds"], first["train_seconds"])
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestSettingsCheckedAtParseTime: values out of range are usage errors (exit 2, one line naming
// the key and the allowed range) before anything is built, --show-settings included.
func TestSettingsCheckedAtParseTime(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"finetune", "--set", "steps=0"}, "setting steps = 0: want an integer >= 1"},
		{[]string{"pretrain-diffusion", "--set", "steps=-5"}, "setting steps = -5"},
		{[]string{"distill", "--set", "batch=0"}, "setting batch = 0"},
		{[]string{"distill", "--set", "lr=-1"}, "setting lr = -1: want a finite number >= 0"},
		{[]string{"finetune", "--set", "lr=nan"}, "setting lr = NaN"},
		{[]string{"interpret", "--set", "lr=0"}, "setting lr = 0"},
		{[]string{"finetune", "--config", "camvid_finetune", "--set", "crop=32"}, "setting crop = 32: want two integers height,width"},
		{[]string{"distill", "--config", "camvid_distill", "--set", "steps=8"}, "setting warmup = 30: must be below steps = 8"},
		{[]string{"distill", "--set", "backbone=resnet1000"}, "setting backbone = resnet1000: want one of"},
		{[]string{"pretrain-diffusion", "--set", "adm=nope"}, "setting adm = nope"},
		{[]string{"finetune", "--set", "label_fraction=1.5"}, "setting label_fraction = 1.5"},
		{[]string{"finetune", "--task", "instseg", "--set", "optimizer=rmsprop"}, "setting optimizer = rmsprop: want one of adamw, lamb, sgd"},
		{[]string{"pretrain-ssl", "--method", "simclr"}, "setting ssl_method = simclr: want one of mocov2, byol"},
		{[]string{"pretrain-ssl", "--config", "camvid_mocov2", "--set", "queue=8"}, "setting queue = 8: must hold one batch of keys, batch = 16"},
		{[]string{"pretrain-ssl", "--set", "bn_splits=3"}, "setting bn_splits = 3: must divide batch = 32"},
		{[]string{"pretrain-ssl", "--set", "jitter=0.4,0.4,0.4,0.6"}, "setting jitter = "},
		{[]string{"pretrain-ssl", "--set", "blur_p=0.5"}, "setting blur_p = 0.5: want 2 probabilities in [0, 1], per view"},
	}
	for _, c := range cases {
		for _, show := range []bool{false, true} {
			args := append([]string{}, c.args...)
			if show {
				args = append(args, "--show-settings")
			}
			args = append(args, "--out", filepath.Join(t.TempDir(), "out"))
			code, _, stderr := runCLI(args...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if code != 2 || len(lines) != 1 || !strings.Contains(stderr, c.want) {
				t.Errorf("%v: exit %d, %q; want exit 2 and one line with %q", args, code, stderr, c.want)
			}
		}
	}
}

// TestSkipBad: --skip-bad leaves a corrupt image out of training and lists it, with its path,
// in the output and in result.json; without it the run stops naming the file.
func TestSkipBad(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a tiny model")
	}
	src := testScenes(t)
	data := filepath.Join(t.TempDir(), "scenes")
	if err := os.CopyFS(data, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	images, _ := filepath.Glob(filepath.Join(data, "ade20k", "ADEChallengeData2016", "images", "training", "*"))
	if len(images) == 0 {
		t.Fatalf("no training images under %s", data)
	}
	bad := images[0]
	os.WriteFile(bad, []byte("not an image"), 0o644)
	// 40 training images at batch 2: 20 steps read every one of them.
	out := filepath.Join(t.TempDir(), "teacher")
	code, _, stderr := runCLI(append(teacherArgs(data), "--set", "steps=20", "--out", out)...)
	if code == 0 || !strings.Contains(stderr, filepath.Base(bad)) {
		t.Errorf("a corrupt image without --skip-bad: exit %d, %q; want a failure naming it", code, stderr)
	}
	stdout := mustRun(t, append(teacherArgs(data), "--set", "steps=20", "--skip-bad", "--restart", "--out", out)...)
	if !strings.Contains(stdout, "skipped 1 training images") || !strings.Contains(stdout, filepath.Base(bad)) {
		t.Errorf("output does not list the skipped image:\n%s", stdout)
	}
	var res map[string]any
	readJSON(t, filepath.Join(out, "result.json"), &res)
	if s, _ := res["skipped"].([]any); len(s) != 1 || !strings.Contains(s[0].(string), bad) {
		t.Errorf("result.json skipped = %v, want [%s: ...]", res["skipped"], bad)
	}
}

// TestDryRun: --dry-run times a few steps on the real data at a small batch and prints the plan
// (settings, backend, steps per epoch, projected time), writing nothing to --out; a missing
// init is an error that says a dry run times the same with random weights.
func TestDryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a tiny model")
	}
	data := testScenes(t)
	out := filepath.Join(t.TempDir(), "teacher")
	stdout := mustRun(t, append(teacherArgs(data), "--set", "batch=8", "--set", "steps=1000", "--dry-run", "2", "--out", out)...)
	for _, want := range []string{"dry run of `dreamteacher pretrain-diffusion`", "adm = adm_tiny", "backend: ",
		"40 images; 8 images a step: 5 steps per epoch; the run's 1000 steps are 200.0 epochs", "2 steps at batch 2",
		"per step at batch 8 (x8/2"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, stdout)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a dry run wrote %s (%v)", out, err)
	}
	code, _, stderr := runCLI(append(semsegArgs(data, "--set", "init="+filepath.Join(t.TempDir(), "none")), "--dry-run", "2")...)
	if code != 2 || !strings.Contains(stderr, "--set init=random") {
		t.Errorf("dry run with a missing init: exit %d, %q", code, stderr)
	}
}
