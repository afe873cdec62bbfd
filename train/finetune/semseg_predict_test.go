package finetune

import (
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/imagefolder"
	"github.com/dreamteacher-go/dreamteacher/eval/semseg"
)

// TestSemsegPredictScoresAsEvaluation: the model restored from a run's checkpoint predicts, on
// the val split, masks at each image's size that score exactly as the run's own evaluation, at
// native size and with eval_size (fitted, padded, mapped back to the image's size).
func TestSemsegPredictScoresAsEvaluation(t *testing.T) {
	data := tinyScenes(t)
	val, err := datasets.Open("scenes", data, "val", datasets.Options{Task: "semantic", KeepZeroLabel: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, evalSize := range []string{"", "48,40"} {
		res, err := Semseg(backend.Go(), semsegStore(t, data, "steps=2", "overlays=0", "eval_size="+evalSize), t.TempDir(), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		m, err := LoadSemseg(backend.Go(), res.Checkpoint)
		if err != nil {
			t.Fatal(err)
		}
		if m.NumClasses != len(res.Classes) || !slices.Equal(m.Classes, res.Classes) {
			t.Errorf("eval_size=%s: restored %d classes %v, the run had %v", evalSize, m.NumClasses, m.Classes, res.Classes)
		}
		ev := semseg.New(m.NumClasses, datasets.IgnoreLabel)
		var seen []int
		_, err = m.Predict(val, 1, false, func(p SemsegPrediction) error {
			seen = append(seen, p.Index)
			if len(p.Classes) != p.Image.W*p.Image.H || len(p.Label) != len(p.Classes) {
				t.Errorf("%s: %d predicted pixels, %d labels, image %dx%d", p.Path, len(p.Classes), len(p.Label), p.Image.W, p.Image.H)
			}
			label := make([]int32, len(p.Label))
			for i, v := range p.Label {
				label[i] = int32(v)
			}
			return ev.Process(p.Classes, label)
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(seen, []int{0, 1, 2, 3}) {
			t.Errorf("eval_size=%s: predicted images %v, want the 4 val images in order", evalSize, seen)
		}
		got := ev.Evaluate()
		if !slices.EqualFunc(got.Confusion, res.Metrics.Confusion, slices.Equal) || got.MIoU != res.Metrics.MIoU || got.AAcc != res.Metrics.AAcc {
			t.Errorf("eval_size=%s: predictions give mIoU %v aAcc %v (confusion %v), the run's evaluation %v %v (%v)",
				evalSize, got.MIoU, got.AAcc, got.Confusion, res.Metrics.MIoU, res.Metrics.AAcc, res.Metrics.Confusion)
		}
	}
}

// TestSemsegPredictFolder: a native-size model predicts a folder of images of different sizes
// (each batch one size) at each image's size; an unreadable image stops it naming the file, or
// is skipped and returned under skipBad.
func TestSemsegPredictFolder(t *testing.T) {
	data := tinyScenes(t)
	res, err := Semseg(backend.Go(), semsegStore(t, data, "steps=1", "overlays=0"), t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadSemseg(backend.Go(), res.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sizes := map[string][2]int{"a.png": {32, 32}, "b.png": {40, 24}, "c.png": {32, 32}, "d.png": {40, 24}, "e.png": {36, 36}}
	for name, wh := range sizes {
		writePNG(t, filepath.Join(dir, name), datasets.NewImage(wh[0], wh[1]))
	}
	ds, err := imagefolder.Open(dir, "", datasets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	predicted := map[string]int{}
	predict := func(skipBad bool) ([]string, error) {
		clear(predicted)
		skipped, err := m.Predict(ds, 2, skipBad, func(p SemsegPrediction) error {
			wh := sizes[filepath.Base(p.Path)]
			if p.Image.W != wh[0] || p.Image.H != wh[1] || len(p.Classes) != wh[0]*wh[1] || p.Label != nil {
				t.Errorf("%s: image %dx%d, %d classes, label %v; want %v", p.Path, p.Image.W, p.Image.H, len(p.Classes), p.Label != nil, wh)
			}
			if filepath.Base(ds.(*imagefolder.Dataset).Path(p.Index)) != filepath.Base(p.Path) {
				t.Errorf("%s: index %d", p.Path, p.Index)
			}
			for _, c := range p.Classes {
				if c < 0 || int(c) >= m.NumClasses {
					t.Fatalf("%s: class %d", p.Path, c)
				}
			}
			predicted[filepath.Base(p.Path)]++
			return nil
		})
		var names []string
		for _, s := range skipped {
			names = append(names, s.Path)
		}
		return names, err
	}
	if _, err := predict(false); err != nil {
		t.Fatal(err)
	}
	if len(predicted) != len(sizes) {
		t.Errorf("predicted %v, want every image once", predicted)
	}

	bad := filepath.Join(dir, "b.png")
	if err := os.WriteFile(bad, []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := predict(false); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("an unreadable image: %v, want an error naming %s", err, bad)
	}
	skipped, err := predict(true)
	if err != nil || !slices.Equal(skipped, []string{bad}) || len(predicted) != len(sizes)-1 || predicted["b.png"] != 0 {
		t.Errorf("skipBad: %v, skipped %v, predicted %v", err, skipped, predicted)
	}
}

// TestToImageSize: classes of the fitted region of a padded input go back to the image's size.
func TestToImageSize(t *testing.T) {
	// A 4x2 image fitted into 2x2 is 2x1 (fitSize); the input is 2 wide, padded below.
	if w, h := fitSize(4, 2, 2, 2); w != 2 || h != 1 {
		t.Fatalf("fitSize(4, 2 into 2x2) = %dx%d, want 2x1", w, h)
	}
	pred := []int32{1, 2, 9, 9} // row 0: the fitted image; row 1: padding
	got := toImageSize(pred, 2, 2, 1, 4, 2)
	if want := []int32{1, 1, 2, 2, 1, 1, 2, 2}; !slices.Equal(got, want) {
		t.Errorf("toImageSize = %v, want %v", got, want)
	}
	// Same size: the identity on the unpadded region.
	if got := toImageSize([]int32{1, 2, 3, 4, 5, 6}, 3, 2, 2, 2, 2); !slices.Equal(got, []int32{1, 2, 4, 5}) {
		t.Errorf("toImageSize at the same size = %v", got)
	}
}

func writePNG(t *testing.T, path string, img datasets.Image) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img.ToRGBA()); err != nil {
		t.Fatal(err)
	}
}
