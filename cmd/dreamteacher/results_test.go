package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/gomlx/ml/model"
)

// writeRun writes a fine-tuning run folder holding only its result.json.
func writeRun(t *testing.T, dir, name string, metrics map[string]any, settings map[string]any) string {
	t.Helper()
	s := map[string]any{"dataset": "camvid", "backbone": "resnet18", "steps": 800, "lr": 4e-4, "label_fraction": 1.0,
		"label_count": 0, "workers": 2, "data": "/data/camvid"}
	for k, v := range settings {
		s[k] = v
	}
	r := map[string]any{"task": "semseg", "settings": s}
	for k, v := range metrics {
		r[k] = v
	}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "result.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// pretrainedCheckpoint writes a checkpoint (no variables) recording a command and settings.
func pretrainedCheckpoint(t *testing.T, dir, command string, settings map[string]any) string {
	t.Helper()
	store := model.NewStore()
	store.SetParam(commandParam, command)
	for k, v := range settings {
		store.SetParam("/"+k, v)
	}
	p, err := train.Save(store, dir, 600, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEvalResultsOverSeeds: `eval --results 'DIR/*'` groups the fine-tuning runs that differ
// only by seed into the paper's layout, mean ± sample std with n; the pre-training is read
// from the init checkpoint's command, else the run folder's name.
func TestEvalResultsOverSeeds(t *testing.T) {
	dir := t.TempDir()
	distilled := pretrainedCheckpoint(t, filepath.Join(dir, "distill"), "distill", map[string]any{"mode": "feature"})
	moco := pretrainedCheckpoint(t, filepath.Join(dir, "moco"), "pretrain-ssl", map[string]any{"ssl_method": "mocov2"})
	out := filepath.Join(dir, "out", "camvid")
	run := func(name string, labels int, mIoU float64, settings map[string]any) {
		writeRun(t, out, name, map[string]any{"mIoU": mIoU, "labeled_images": labels}, settings)
	}
	for seed, v := range []float64{40, 42, 47} { // mean 43, sample std sqrt(13) = 3.606
		run("random-37-s"+string(rune('0'+seed)), 37, v, map[string]any{"init": "random", "seed": seed, "label_fraction": 0.1})
	}
	for seed, v := range []float64{50, 52} { // 51 ± sqrt(2)
		run("random-367-s"+string(rune('0'+seed)), 367, v, map[string]any{"init": "random", "seed": seed})
	}
	for seed, v := range []float64{44, 45, 46} { // 45 ± 1; a folder named otherwise: the checkpoint says dt
		run("distilled-seed"+string(rune('0'+seed)), 37, v, map[string]any{"init": distilled, "seed": seed, "label_fraction": 0.1})
	}
	for seed, v := range []float64{41, 43} { // 42 ± sqrt(2); the init run folder's newest checkpoint
		run("mocov2-37-s"+string(rune('0'+seed)), 37, v, map[string]any{"init": filepath.Dir(moco), "seed": seed, "label_fraction": 0.1})
	}
	// A checkpoint that is not here: the folder's name.
	run("dt-mixed-37-s0", 37, 48, map[string]any{"init": "/elsewhere/distill-mixed/ckpt-00000600.safetensors", "seed": 0, "label_fraction": 0.1})
	// Not fine-tuning runs, or not runs: left out.
	teacher := filepath.Join(out, "teacher")
	os.MkdirAll(teacher, 0o755)
	os.WriteFile(filepath.Join(teacher, "result.json"), []byte(`{"task": "pretrain-diffusion", "settings": {"seed": 0}}`), 0o644)
	os.MkdirAll(filepath.Join(out, "notes"), 0o755)

	want := `camvid, semseg: mIoU, mean ± sample std over seeds (n runs)

| pre-training \ labelled images | 37 | 367 |
|---|---:|---:|
| random | 43.00 ± 3.61 (n=3) | 51.00 ± 1.41 (n=2) |
| mocov2 | 42.00 ± 1.41 (n=2) | - |
| dt | 45.00 ± 1.00 (n=3) | - |
| dt-mixed | 48.00 (n=1) | - |

mIoU minus random's, paired by seed (the same labelled images, data order and head initialisation): mean ± sample std over the seeds both rows have (n pairs)

| pre-training \ labelled images | 37 | 367 |
|---|---:|---:|
| mocov2 | +1.00 ± 0.00 (n=2) | - |
| dt | +2.00 ± 2.65 (n=3) | - |
| dt-mixed | +8.00 (n=1) | - |

- random (from init=random): random-37-s0, random-37-s1, random-37-s2, random-367-s0, random-367-s1
- mocov2 (from the init checkpoint's command: pretrain-ssl, method mocov2): mocov2-37-s0, mocov2-37-s1
- dt (from the init checkpoint's command: distill, mode feature): distilled-seed0, distilled-seed1, distilled-seed2
- dt-mixed (from the run folders' names (<init>-<labels>-s<seed>)): dt-mixed-37-s0
`
	for _, layout := range []string{"paper", "auto"} {
		code, stdout, stderr := runCLI("eval", "--results", filepath.Join(out, "*"), "--layout", layout)
		if code != 0 || stdout != want {
			t.Errorf("--layout %s: exit %d %s\n%s\nwant\n%s", layout, code, stderr, stdout, want)
		}
	}
	// A list of folders is the same as the pattern; --layout runs is one row per run.
	code, stdout, _ := runCLI("eval", "--results", filepath.Join(out, "random-37-s0")+","+filepath.Join(out, "random-37-s1"))
	if code != 0 || !strings.Contains(stdout, "| random | 41.00 ± 1.41 (n=2) |") {
		t.Errorf("a list of two seeds:\n%s", stdout)
	}
	code, stdout, _ = runCLI("eval", "--results", filepath.Join(out, "*"), "--layout", "runs")
	if code != 0 || !strings.Contains(stdout, "| random-37-s2 | semseg | resnet18 | random | 2 | 37 | 47.0 |") {
		t.Errorf("--layout runs:\n%s", stdout)
	}

	// Runs of one cell that differ otherwise than by seed, or repeat a seed: paper refuses
	// naming both, auto falls back to one row per run.
	odd := writeRun(t, out, "random-37-s9", map[string]any{"mIoU": 30.0, "labeled_images": 37}, map[string]any{"init": "random", "seed": 9, "steps": 400})
	code, _, stderr := runCLI("eval", "--results", filepath.Join(out, "*"), "--layout", "paper")
	if code != 2 || !strings.Contains(stderr, "random-37-s9") || !strings.Contains(stderr, "differ in steps (800 and 400)") {
		t.Errorf("a cell with another steps: exit %d, %q", code, stderr)
	}
	code, stdout, _ = runCLI("eval", "--results", filepath.Join(out, "*"))
	if code != 0 || !strings.Contains(stdout, "| random-37-s9 |") {
		t.Errorf("auto with a cell that differs: exit %d\n%s", code, stdout)
	}
	os.RemoveAll(odd)
	writeRun(t, out, "random-37-again", map[string]any{"mIoU": 30.0, "labeled_images": 37}, map[string]any{"init": "random", "seed": 1, "label_fraction": 0.1})
	code, _, stderr = runCLI("eval", "--results", filepath.Join(out, "*"), "--layout", "paper")
	if code != 2 || !strings.Contains(stderr, "the same seed 1") {
		t.Errorf("a seed twice: exit %d, %q", code, stderr)
	}
	code, _, stderr = runCLI("eval", "--results", filepath.Join(dir, "nothing-*"))
	if code != 2 || !strings.Contains(stderr, "no run folder with a result.json matches") {
		t.Errorf("a pattern matching nothing: exit %d, %q", code, stderr)
	}
	code, _, stderr = runCLI("eval", "--results", teacher, "--layout", "paper")
	if code != 2 || !strings.Contains(stderr, "none of the runs is a fine-tuning run") {
		t.Errorf("paper without fine-tuning runs: exit %d, %q", code, stderr)
	}
}

func TestMeanStd(t *testing.T) {
	for _, c := range []struct {
		values    []float64
		mean, std float64
		cell      string
	}{
		{[]float64{40, 42, 47}, 43, math.Sqrt(13), "43.00 ± 3.61 (n=3)"},
		{[]float64{2, 4, 4, 4, 5, 5, 7, 9}, 5, math.Sqrt(32.0 / 7), "5.00 ± 2.14 (n=8)"},
		{[]float64{45.25}, 45.25, math.NaN(), "45.25 (n=1)"},
	} {
		mean, std := meanStd(c.values)
		if math.Abs(mean-c.mean) > 1e-12 || !(math.Abs(std-c.std) < 1e-12 || math.IsNaN(std) && math.IsNaN(c.std)) {
			t.Errorf("meanStd(%v) = %v, %v; want %v, %v", c.values, mean, std, c.mean, c.std)
		}
		if got := meanStdCell(c.values); got != c.cell {
			t.Errorf("meanStdCell(%v) = %q, want %q", c.values, got, c.cell)
		}
	}
	if got := meanStdCell(nil); got != "-" {
		t.Errorf("no values: %q", got)
	}
}
