package main

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
)

// A teacher exported in float16 stands in for its run: distillation from it starts from the
// same loss (to float16 rounding), and bad flags are usage errors.
func TestExportTeacher(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a tiny teacher")
	}
	data := testScenes(t)
	root := t.TempDir()
	teacher := filepath.Join(root, "teacher")
	mustRun(t, append(teacherArgs(data), "--out", teacher)...)
	file := filepath.Join(root, "teacher-f16.safetensors")
	if out := mustRun(t, "export", "--checkpoint", teacher, "--dtype", "float16", "--out", file); !strings.Contains(out, "/ema/unet") {
		t.Errorf("export printed %q", out)
	}
	first := map[string]float64{}
	for name, src := range map[string]string{"run": teacher, "file": file} {
		dir := filepath.Join(root, "distill-"+name)
		mustRun(t, append(distillArgs(data, src), "--out", dir)...)
		first[name] = losses(t, dir)[0]
	}
	// Measured: 1.2e-3 for this 3-step adm_tiny, 1e-4 for the 2000-step adm_demo teacher; a random
	// adm_tiny teacher (weights that did not load) starts 3.2% higher (7.58 against 7.34).
	if d := math.Abs(first["file"]-first["run"]) / first["run"]; d > 5e-3 {
		t.Errorf("first distillation loss %g from the float16 teacher, %g from the run (relative difference %.2g)", first["file"], first["run"], d)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"export", "--checkpoint", teacher}, "--out is required"},
		{[]string{"export", "--checkpoint", teacher, "--out", file, "--dtype", "int8"}, "--dtype"},
		{[]string{"export", "--checkpoint", filepath.Join(root, "nothing"), "--out", file}, "does not exist"},
		{[]string{"export", "--checkpoint", teacher, "--out", file, "--scope", "/generator"}, "no variables under /generator"},
	} {
		if code, _, stderr := runCLI(c.args...); code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, %q; want an error with %q", c.args, code, stderr, c.want)
		}
	}
}
