package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/datasets/imagenet/imagenettest"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/dreamteacher-go/dreamteacher/train/pretrain"
	"github.com/gomlx/gomlx/ml/model"
)

// runCLI runs the command line in-process and returns its exit status and outputs.
func runCLI(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestBadInputIsOneLineAndStatus2 checks every subcommand: an unknown flag, and a missing path
// where the command takes one, print one line naming it and exit with status 2.
func TestBadInputIsOneLineAndStatus2(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	cases := [][]string{
		{"no-such-command"},
		{"inspect", "backend", "--backend", "xla:" + missing + ".so"},
		{"inspect", "model", "resnet1000"},
		{"eval", "--task", "semseg", "--dataset", "camvid", "--data", missing, "--predictions", missing},
		{"eval", "--table", "no-such-table"},
		{"sample", "--checkpoint", missing},
		{"convert", "--input", "x"},
		{"finetune", "--task", "detection"},
		{"pretrain-diffusion", "--set", "data=" + missing},
		{"distill", "--set", "teacher=" + missing},
		{"finetune", "--task", "semseg", "--set", "init=" + missing},
		{"finetune", "--task", "instseg", "--config", missing + ".conf"},
		{"interpret", "--set", "no_such_setting=1"},
	}
	for name := range commands {
		cases = append(cases, []string{name, "--no-such-flag"})
	}
	for _, args := range cases {
		code, _, stderr := runCLI(args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 2 || len(lines) != 1 || lines[0] == "" {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line", args, code, stderr)
		}
	}
}

func TestInspect(t *testing.T) {
	t.Setenv("GOMLX_BACKEND", "go")
	code, out, stderr := runCLI("inspect", "backend")
	if code != 0 || !strings.Contains(out, "backend: go") {
		t.Errorf("inspect backend: %d %q %q", code, out, stderr)
	}
	code, out, stderr = runCLI("inspect", "model", "resnet18")
	if code != 0 || !strings.Contains(out, "parameters:  11689512") || !strings.Contains(out, "3.628 GFLOPs") {
		t.Errorf("inspect model resnet18: %d %q %q", code, out, stderr)
	}
}

// TestDemoQuick runs the README's demo in its quick variant, end to end.
func TestDemoQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("demo --quick takes about a minute")
	}
	// A relative --out, as `make demo` uses: every path below it must be joined once.
	t.Chdir(t.TempDir())
	out := filepath.Join("out", "demo")
	code, stdout, stderr := runCLI("demo", "--quick", "--out", out)
	if code != 0 {
		t.Fatalf("demo --quick: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"| DreamTeacher (distilled) |", "| random init |", "mIoU", "APbb", "APmk", "teacher pre-training"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, stdout)
		}
	}
	for _, f := range []string{"demo.md", "teacher/samples.png", "distill/features.png", "semseg-dt/predictions.png", "instseg-random/predictions.png"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
}

// TestEveryConfigApplies checks each embedded config against its command's settings.
func TestEveryConfigApplies(t *testing.T) {
	commandOf := func(name string) []string {
		switch {
		case strings.HasSuffix(name, "_teacher"):
			return []string{"pretrain-diffusion"}
		case strings.HasSuffix(name, "_mocov2"):
			return []string{"pretrain-ssl", "--method", "mocov2"}
		case strings.HasSuffix(name, "_byol"):
			return []string{"pretrain-ssl", "--method", "byol"}
		case strings.HasPrefix(name, "imagenet_") || strings.HasSuffix(name, "_distill"):
			return []string{"distill"}
		case strings.Contains(name, "maskrcnn") || strings.HasSuffix(name, "_instseg"):
			return []string{"finetune", "--task", "instseg"}
		case strings.Contains(name, "upernet") || strings.HasSuffix(name, "_finetune") || strings.HasSuffix(name, "_semseg"):
			return []string{"finetune", "--task", "semseg"}
		}
		return nil
	}
	for _, name := range configs.Names() {
		cmd := commandOf(name)
		if cmd == nil {
			continue
		}
		code, _, stderr := runCLI(append(cmd, "--config", name, "--show-settings")...)
		if code != 0 {
			t.Errorf("%s with %v: exit %d: %s", name, cmd, code, stderr)
		}
	}
}

func TestEvalResultsTable(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "result.json"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("random-0.1", `{"task": "semseg", "mIoU": 40, "labeled_images": 37, "train_seconds": 61,
		"classes": ["Sky", "Road"], "per_class_iou": {"Sky": 50, "Road": 30},
		"settings": {"backbone": "resnet18", "init": "random", "seed": 3}}`)
	b := write("dt-0.1", `{"task": "semseg", "mIoU": 45, "labeled_images": 37, "train_seconds": 62,
		"per_class_iou": {"Sky": 55, "Road": null},
		"settings": {"backbone": "resnet18", "init": "out/distill/ckpt-00000600.safetensors", "seed": 3}}`)
	code, stdout, stderr := runCLI("eval", "--results", a+","+b)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"| random-0.1 | semseg | resnet18 | random | 3 | 37 | 40.0 | - | - | 1m1s |",
		"| dt-0.1 | semseg | resnet18 | distilled (distill) | 3 | 37 | 45.0 | - | - | 1m2s |",
		"| run | Sky | Road |", // the dataset's class order, from the first result that has it
		"| dt-0.1 | 55.0 | - |",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("eval --results lacks %q:\n%s", want, stdout)
		}
	}
}

// TestTableRowFromRunFolder: the README's `eval --table ... --row 'DT (ours)|ADE20K mIoU=RUN'`
// takes a run folder as --results does (its result.json).
func TestTableRowFromRunFolder(t *testing.T) {
	run := filepath.Join(t.TempDir(), "dt-r50")
	os.MkdirAll(run, 0o755)
	os.WriteFile(filepath.Join(run, "result.json"), []byte(`{"task": "semseg", "mIoU": 42.25}`), 0o644)
	code, stdout, stderr := runCLI("eval", "--table", "imagenet-r50", "--row", "DT (ours)|ADE20K mIoU="+run)
	if code != 0 || !strings.Contains(stdout, "DT (ours)") || !strings.Contains(stdout, "42.") {
		t.Errorf("--row with a run folder: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// TestHelpOfEveryCommand: `dreamteacher CMD -h` prints help and exits 0 for every command.
func TestHelpOfEveryCommand(t *testing.T) {
	for name := range commands {
		code, stdout, stderr := runCLI(name, "-h")
		if code != 0 || strings.TrimSpace(stdout) == "" {
			t.Errorf("%s -h: exit %d, stdout %q, stderr %q", name, code, stdout, stderr)
		}
	}
}

// TestLinearProbeCommand: `eval --task linear-probe --data DIR --init RUN` (the paper's
// linear-probe table) on an ImageNet-layout folder, from a run folder; k-NN likewise; a missing
// --init is a usage error.
func TestLinearProbeCommand(t *testing.T) {
	root := imagenettest.Folder(t, []string{"train", "val"}, 3, 4, 32)
	run := filepath.Join(t.TempDir(), "distill")
	// A run folder holding a backbone under /student/backbone: a random one, saved by a probe
	// of random init would not write a checkpoint, so distillation's layout is made by hand.
	store := model.NewStore()
	store.SetParam("/backbone", "resnet18")
	store.SetParam("/small_stem", true)
	if _, err := train.Save(store, run, 0, nil, 0); err != nil {
		t.Fatal(err)
	}
	common := []string{"--data", root, "--set", "size=32,32", "--set", "batch=4", "--set", "workers=1", "--set", "epochs=20"}
	code, _, stderr := runCLI(append([]string{"eval", "--task", "linear-probe", "--out", t.TempDir()}, common...)...)
	if code != 2 || !strings.Contains(stderr, "--init is required") {
		t.Errorf("no --init: exit %d, %q", code, stderr)
	}
	code, _, stderr = runCLI(append([]string{"eval", "--task", "knn", "--init", "random", "--dry-run", "1", "--out", t.TempDir()}, common...)...)
	if code != 2 || !strings.Contains(stderr, "no training loop") {
		t.Errorf("a probe's --dry-run: exit %d, %q", code, stderr)
	}
	for _, task := range []string{"linear-probe", "knn"} {
		out := filepath.Join(t.TempDir(), task)
		args := append([]string{"eval", "--task", task, "--init", "random", "--set", "backbone=resnet18", "--set", "small_stem=true", "--out", out}, common...)
		code, stdout, stderr := runCLI(args...)
		want := map[string]string{"linear-probe": "linear probe: top-1", "knn": "k-NN: top-1"}[task]
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("eval --task %s: exit %d\n%s\n%s", task, code, stdout, stderr)
			continue
		}
		var res map[string]any
		readJSON(t, filepath.Join(out, "result.json"), &res)
		if top1, ok := res["top1"].(float64); !ok || top1 <= 100.0/3 {
			t.Errorf("eval --task %s: result.json top1 %v, want above chance", task, res["top1"])
		}
	}
	// From a run folder: the backbone is read from its checkpoint's settings; a checkpoint
	// without the backbone's variables is an error naming the scope.
	code, _, stderr = runCLI(append([]string{"eval", "--task", "knn", "--init", run, "--out", t.TempDir()}, common...)...)
	if code == 0 || !strings.Contains(stderr, "/student/backbone") {
		t.Errorf("a run folder without a backbone: exit %d, %q", code, stderr)
	}
}

// The shipped demo teacher is what configs/demo_teacher.conf trains (the settings that define
// the run agree), and `sample` draws from it.
func TestShippedDemoTeacher(t *testing.T) {
	path := filepath.Join(t.TempDir(), "teacher.safetensors")
	if err := os.WriteFile(path, demoTeacher, 0o644); err != nil {
		t.Fatal(err)
	}
	settings, err := train.ReadSettings(path)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := configs.Load("demo_teacher")
	if err != nil {
		t.Fatal(err)
	}
	store, err := configs.NewStore(pretrain.DiffusionDefaults(), conf)
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range conf {
		if k := set.Key; k != "checkpoint_every" && k != "log_every" {
			if got, want := fmt.Sprint(settings[k]), fmt.Sprint(configs.Get[any](store, k)); got != want {
				t.Errorf("shipped teacher: %s = %s, configs/demo_teacher.conf says %s", k, got, want)
			}
		}
	}
	png := filepath.Join(t.TempDir(), "samples.png")
	if code, out, stderr := runCLI("sample", "--checkpoint", path, "--n", "1", "--steps", "2", "--out", png); code != 0 {
		t.Fatalf("sample from the shipped teacher: exit %d\n%s\n%s", code, out, stderr)
	}
	if _, err := os.Stat(png); err != nil {
		t.Error(err)
	}
}
