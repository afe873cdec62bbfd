package probe

import (
	"io"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/configs"
	_ "github.com/dreamteacher-go/dreamteacher/datasets/all"
	"github.com/dreamteacher-go/dreamteacher/datasets/imagenet/imagenettest"
	_ "github.com/dreamteacher-go/dreamteacher/models/backbones/all"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/gomlx/ml/model"
)

// TestProbeOfACheckpoint: a backbone saved by one run is probed from its checkpoint (backbone
// and stem read from the checkpoint's settings) on an ImageNet-layout folder whose 3 classes
// differ by colour: the linear probe and k-NN both beat chance (33%) on the val split, and the
// probe gives the same numbers for the same backbone twice.
func TestProbeOfACheckpoint(t *testing.T) {
	root := imagenettest.Folder(t, []string{"train", "val"}, 3, 6, 32)
	set := []string{"data=" + root, "size=32,32", "batch=4", "workers=1", "epochs=50"}
	random, err := configs.NewStore(Defaults(), nil, append(set, "init=random", "backbone=resnet18", "small_stem=true")...)
	if err != nil {
		t.Fatal(err)
	}
	first, err := Run(backend.Go(), random, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if first.TrainImages != 18 || first.ValImages != 18 || first.Classes != 3 || first.FeatureDim != 512 {
		t.Errorf("probe of %d train / %d val images, %d classes, %d-d features", first.TrainImages, first.ValImages, first.Classes, first.FeatureDim)
	}
	t.Logf("random resnet18: linear probe %.1f%%, k-NN %.1f%%", first.LinearTop1, first.KNNTop1)
	for name, v := range map[string]float64{"linear": first.LinearTop1, "knn": first.KNNTop1} {
		if math.IsNaN(v) || v <= 100.0/3 {
			t.Errorf("%s top-1 %.1f%%: not above chance", name, v)
		}
	}

	// The same weights from a checkpoint laid out as distillation writes it (the backbone under
	// /student/backbone), whose settings name the backbone.
	dir := t.TempDir()
	saved := model.NewStore()
	for v := range random.IterVariables() {
		if rel, ok := strings.CutPrefix(v.Path(), "/backbone/"); ok {
			value, err := v.MustValue().Clone()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := saved.CreateVariable("/student/backbone/"+rel, value); err != nil {
				t.Fatal(err)
			}
		}
	}
	saved.SetParam("/backbone", "resnet18")
	saved.SetParam("/small_stem", true)
	path, err := train.Save(saved, dir, 1, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	fromCkpt, err := configs.NewStore(Defaults(), nil, append(set, "init="+path)...)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Run(backend.Go(), fromCkpt, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if second.Backbone != "resnet18" || second.LinearTop1 != first.LinearTop1 || second.KNNTop1 != first.KNNTop1 {
		t.Errorf("from the checkpoint %s: %+v, want the random store's %+v", filepath.Base(path), second, first)
	}
}
