package distill

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/configs/configstest"
	"github.com/dreamteacher-go/dreamteacher/train/pretrain/pretraintest"

	"github.com/dreamteacher-go/dreamteacher/backend"
)

// TestConditionalGANTeacher distils the paper's kind of GAN teacher, a class-conditional
// BigGAN (biggan_tiny with 3 classes, pre-trained for one step on a generated ImageNet-layout
// folder of JPEGs), into a student: the synthesized images' classes drawn from
// teacher_classes. A class the teacher lacks is an error naming the setting, and so is
// teacher_classes with a teacher that is not a BigGAN (a diffusion teacher has no classes).
func TestConditionalGANTeacher(t *testing.T) {
	set := []string{"teacher=" + pretraintest.ConditionalGAN(t), "small_stem=true", "batch=2", "steps=2", "warmup=0", "regressor_width=8",
		"feature_images=2", "data=/nowhere", "seed=1"}

	var log bytes.Buffer
	res, err := Run(backend.Go(), configstest.Store(t, Defaults(), append(set, "teacher_classes=1,2")...), t.TempDir(), &log)
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 2 || !(res.LastLoss > 0) || len(res.Targets) != 4 {
		t.Fatalf("result %+v", res)
	}
	if _, err := os.Stat(res.Features); err != nil {
		t.Error(err)
	}
	if !strings.Contains(log.String(), "classes uniform over [1 2]") {
		t.Errorf("the log does not say which classes the teacher draws:\n%s", log.String())
	}

	_, err = Run(backend.Go(), configstest.Store(t, Defaults(), append(set, "teacher_classes=3")...), t.TempDir(), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "teacher_classes") || !strings.Contains(err.Error(), "class 3") {
		t.Errorf("class 3 of a 3-class teacher: %v, want an error naming teacher_classes", err)
	}
	_, err = Run(backend.Go(), configstest.Store(t, Defaults(), "teacher=/nowhere/adm.safetensors", "teacher_classes=1"), t.TempDir(), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "teacher_classes [1]") || !strings.Contains(err.Error(), "not a BigGAN") {
		t.Errorf("teacher_classes for a teacher that is not a BigGAN: %v", err)
	}
}
