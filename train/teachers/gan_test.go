package teachers

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/train/pretrain/pretraintest"

	"github.com/dreamteacher-go/dreamteacher/backend"
	_ "github.com/dreamteacher-go/dreamteacher/datasets/all"
	"github.com/dreamteacher-go/dreamteacher/models/biggan"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// TestConditionalGANTeacher: a class-conditional BigGAN checkpoint makes a conditional teacher
// with its 3 classes; its synthesized images have classes drawn from all of them, or from the
// ones SetClasses gives; the class conditions the images (one seed, one z: class 0 and class 1
// differ, class 1 twice is the same image); classes outside the generator's are refused.
func TestConditionalGANTeacher(t *testing.T) {
	ckpt := pretraintest.ConditionalGAN(t)
	teacher, err := LoadGAN(ckpt, "/generator", []string{"g_s8", "g_s4"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if teacher.Config.NumClasses != 3 || teacher.Name != "biggan_tiny" || !strings.Contains(teacher.Describe(), "uniform over all 3") {
		t.Fatalf("teacher %s with %d classes: %s", teacher.Name, teacher.Config.NumClasses, teacher.Describe())
	}
	if err := teacher.SetClasses([]int{1, 3}); err == nil || !strings.Contains(err.Error(), "class 3") {
		t.Errorf("class 3 of 3: %v", err)
	}
	if err := (&GAN{Config: biggan.Configs["biggan_tiny_uncond"]}).SetClasses([]int{0}); err == nil || !strings.Contains(err.Error(), "unconditional") {
		t.Errorf("classes for an unconditional teacher: %v", err)
	}

	const n = 8
	// generate draws one batch of the teacher with the given classes, from a store seeded with
	// seed, and returns the images, the tap g_s4 (GBlock 0's output, the first the class
	// conditions: g_s8 is the projection of z) and the labels.
	generate := func(seed int64, classes []int) (images, tap []float32, labels []int32) {
		t.Helper()
		if err := teacher.SetClasses(classes); err != nil {
			t.Fatal(err)
		}
		store := model.NewStore()
		fn := func(scope *model.Scope, like *Node) []*Node {
			img, feats, y := teacher.GenerateWithLabels(scope.In("teacher"), like.Graph(), n, like)
			return []*Node{img, feats["g_s4"], y}
		}
		like := shapes.Make(dtypes.Float32)
		if err := train.Declare(backend.Go(), store, []shapes.Shape{like}, func(scope *model.Scope, in []*Node) { fn(scope, in[0]) }); err != nil {
			t.Fatal(err)
		}
		if err := teacher.Load(store); err != nil {
			t.Fatal(err)
		}
		if err := store.SetRNGStateFromSeed(seed); err != nil {
			t.Fatal(err)
		}
		outs, err := model.ExecOnceN(backend.Go(), store, fn, tensors.FromValue(float32(0)))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(outs[0].Shape().Dimensions, []int{n, 32, 32, 3}) || !slices.Equal(outs[1].Shape().Dimensions, []int{n, 8, 8, 128}) {
			t.Fatalf("images %s, tap g_s4 %s", outs[0].Shape(), outs[1].Shape())
		}
		return tensors.MustCopyFlatData[float32](outs[0]), tensors.MustCopyFlatData[float32](outs[1]), tensors.MustCopyFlatData[int32](outs[2])
	}

	_, _, all := generate(1, nil)
	if slices.Min(all) < 0 || slices.Max(all) > 2 || slices.Min(all) == slices.Max(all) {
		t.Errorf("labels over all 3 classes: %v", all)
	}
	_, _, some := generate(1, []int{0, 2})
	if slices.Contains(some, 1) || slices.Min(some) == slices.Max(some) {
		t.Errorf("labels over classes 0 and 2: %v", some)
	}
	img0, tap0, y0 := generate(2, []int{0})
	img1, tap1, y1 := generate(2, []int{1})
	img1b, _, _ := generate(2, []int{1})
	if slices.Max(y0) != 0 || slices.Min(y1) != 1 || slices.Max(y1) != 1 {
		t.Fatalf("labels of class 0 %v and of class 1 %v", y0, y1)
	}
	if !slices.Equal(img1, img1b) {
		t.Errorf("one seed and one class drew different images")
	}
	var dImg, dTap float64
	for i := range img0 {
		dImg = max(dImg, math.Abs(float64(img0[i]-img1[i])))
	}
	for i := range tap0 {
		dTap = max(dTap, math.Abs(float64(tap0[i]-tap1[i])))
	}
	if dImg < 1e-4 || dTap < 1e-4 {
		t.Errorf("classes 0 and 1 with one z: images differ by at most %g, features by %g; the class must condition both", dImg, dTap)
	}
	for _, v := range img0 {
		if !(v >= 0 && v <= 1) {
			t.Fatalf("teacher image value %g outside [0, 1]", v)
		}
	}
}
