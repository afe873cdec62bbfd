package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/train/pretrain/pretraintest"
)

// TestSampleConditionalGAN: `sample` draws from a class-conditional BigGAN checkpoint whose
// number of classes was set by num_classes, all classes or those of --classes; a class the
// generator lacks is a one-line usage error.
func TestSampleConditionalGAN(t *testing.T) {
	t.Setenv("GOMLX_BACKEND", "go")
	ckpt := pretraintest.ConditionalGAN(t)
	for _, classes := range []string{"", "2,0"} {
		png := filepath.Join(t.TempDir(), "samples.png")
		code, out, stderr := runCLI("sample", "--checkpoint", ckpt, "--n", "2", "--out", png, "--classes", classes)
		if code != 0 || !strings.Contains(out, "2 samples of biggan_tiny") {
			t.Errorf("sample --classes %q: exit %d, %q %q", classes, code, out, stderr)
		}
		if _, err := os.Stat(png); err != nil {
			t.Error(err)
		}
	}
	code, _, stderr := runCLI("sample", "--checkpoint", ckpt, "--n", "2", "--out", t.TempDir(), "--classes", "1,3")
	if lines := strings.Split(strings.TrimSpace(stderr), "\n"); code != 2 || len(lines) != 1 || !strings.Contains(stderr, "class 3") {
		t.Errorf("sample --classes 1,3 of 3 classes: exit %d, stderr %q; want exit 2 and one line naming class 3", code, stderr)
	}
}
