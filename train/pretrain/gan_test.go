package pretrain

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/datasets/imagenet/imagenettest"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/gomlx/ml/model"
)

func ganStore(t *testing.T, set ...string) *model.Store {
	t.Helper()
	store, err := configs.NewStore(GANDefaults(), nil, set...)
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// TestGANPretrainConditional pre-trains the class-conditional biggan_tiny on a labelled
// ImageNet-layout folder of 3 classes (JPEGs through the ImageNet loader): the configuration's
// 10 classes are an error naming num_classes; num_classes = 3 trains, the checkpoint's
// embeddings have 3 rows and its settings rebuild the 3-class generator, the run resumes, and
// the sample grid takes classes. A conditional configuration on unlabelled images is an error
// naming the unconditional ones.
func TestGANPretrainConditional(t *testing.T) {
	root := imagenettest.Folder(t, []string{"train"}, 3, 4, 40)
	set := []string{"dataset=imagenet", "data=" + root, "biggan=biggan_tiny", "batch=2", "steps=2", "d_steps=1", "samples=4", "workers=1", "seed=3"}

	_, err := GAN(backend.Go(), ganStore(t, set...), t.TempDir(), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "num_classes = 3") || !strings.Contains(err.Error(), "3 classes") {
		t.Fatalf("10 classes for a 3-class dataset: %v, want an error naming num_classes", err)
	}
	_, err = GAN(backend.Go(), ganStore(t, append(set, "dataset=imagefolder")...), t.TempDir(), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no class labels") || !strings.Contains(err.Error(), "biggan_tiny_uncond") {
		t.Errorf("a conditional model on unlabelled images: %v", err)
	}

	out := t.TempDir()
	set = append(set, "num_classes=3")
	res, err := GAN(backend.Go(), ganStore(t, set...), out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 2 || !(res.LastLoss == res.LastLoss) {
		t.Fatalf("result %+v", res)
	}
	if _, err := os.Stat(res.Samples); err != nil {
		t.Error(err)
	}
	settings, err := train.ReadSettings(res.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	cfg, name, err := GANConfigOf(settings)
	if err != nil || name != "biggan_tiny" || cfg.NumClasses != 3 || !cfg.Hier {
		t.Fatalf("the checkpoint's configuration: %s with %d classes (%v)", name, cfg.NumClasses, err)
	}
	store := model.NewStore()
	if _, err := train.Restore(store, res.Checkpoint); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string][]int{
		"/generator/shared/embeddings":     {3, 128},
		"/discriminator/embed/embeddings":  {3, 128},
		"/ema/generator/shared/embeddings": {3, 128},
	} {
		if v := store.GetVariable(path); v == nil || !slices.Equal(v.Shape().Dimensions, want) {
			t.Errorf("%s: %v, want %v", path, v, want)
		}
	}
	if d, g := store.GetVariable(GANDStepVar), store.GetVariable(GANGStepVar); d == nil || g == nil ||
		d.MustValue().Value().(int64) != 2 || g.MustValue().Value().(int64) != 2 {
		t.Errorf("step counters D %v, G %v; want 2 and 2", d, g)
	}

	// Samples of one class, and a class the generator does not have.
	grid := filepath.Join(t.TempDir(), "class1.png")
	if err := GANSampleGrid(backend.Go(), store, cfg, 2, grid, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(grid); err != nil {
		t.Error(err)
	}
	if err := GANSampleGrid(backend.Go(), store, cfg, 2, grid, 3); err == nil || !strings.Contains(err.Error(), "class 3") {
		t.Errorf("class 3 of 3: %v", err)
	}

	// Resume to a third generator step.
	configs.SetDefaults(store, GANDefaults())
	s, _ := configs.ParseSet(append(set, "steps=3", "samples=0"))
	if err := configs.Apply(store, GANDefaults(), s); err != nil {
		t.Fatal(err)
	}
	res2, err := GAN(backend.Go(), store, out, io.Discard)
	if err != nil || res2.Steps != 3 {
		t.Fatalf("resumed run: %+v, %v", res2, err)
	}
}

func TestGANConfig(t *testing.T) {
	cfg, err := GANConfig("biggan_128", 0)
	if err != nil || cfg.NumClasses != 1000 {
		t.Errorf("biggan_128 as registered: %d classes, %v", cfg.NumClasses, err)
	}
	if cfg, err := GANConfig("biggan_128", 10); err != nil || cfg.NumClasses != 10 {
		t.Errorf("biggan_128 with num_classes 10: %d classes, %v", cfg.NumClasses, err)
	}
	if _, err := GANConfig("biggan_128", -1); err == nil || !strings.Contains(err.Error(), "num_classes") {
		t.Errorf("num_classes -1: %v", err)
	}
	if _, _, err := GANConfigOf(map[string]any{"adm": "adm_tiny"}); err == nil || !strings.Contains(err.Error(), "biggan") {
		t.Errorf("an ADM checkpoint's settings: %v", err)
	}
	// Checkpoints written before num_classes existed keep their configuration's classes.
	if cfg, name, err := GANConfigOf(map[string]any{"biggan": "biggan_tiny"}); err != nil || name != "biggan_tiny" || cfg.NumClasses != 10 {
		t.Errorf("settings without num_classes: %s, %d classes, %v", name, cfg.NumClasses, err)
	}
}
