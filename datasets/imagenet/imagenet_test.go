package imagenet

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/internal/fixture"
)

var wnids = []string{"n01440764", "n01443537", "n15075141"}

// imagenetFixture lays out base/train/<wnid>/ and a flat base/val/ with LOC_val_solution.csv
// and LOC_synset_mapping.txt in root (the Kaggle archive when kaggle is set).
func imagenetFixture(t *testing.T, kaggle bool) (root, base string) {
	root = t.TempDir()
	base = root
	if kaggle {
		base = filepath.Join(root, "ILSVRC", "Data", "CLS-LOC")
	}
	for c, w := range wnids {
		for i := 0; i < 2; i++ {
			fixture.JPEG(t, filepath.Join(base, "train", w, fmt.Sprintf("%s_%d.JPEG", w, i)), 8, 6, c)
		}
	}
	csv := "ImageId,PredictionString\n"
	for i := 1; i <= 4; i++ {
		name := fmt.Sprintf("ILSVRC2012_val_%08d", i)
		fixture.JPEG(t, filepath.Join(base, "val", name+".JPEG"), 8, 6, i)
		w := wnids[(i*2)%3]
		csv += fmt.Sprintf("%s,%s 1 2 3 4 %s 5 6 7 8 \n", name, w, w)
	}
	fixture.Write(t, filepath.Join(root, "LOC_val_solution.csv"), []byte(csv))
	fixture.Write(t, filepath.Join(root, "LOC_synset_mapping.txt"),
		[]byte("n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\nn15075141 toilet tissue, toilet paper\n"))
	return root, base
}

func TestLayouts(t *testing.T) {
	for _, kaggle := range []bool{false, true} {
		root, _ := imagenetFixture(t, kaggle)
		train, err := datasets.Open("imagenet", root, "train", datasets.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if train.Len() != 6 || !slices.Equal(train.Classes(), []string{"tench", "goldfish", "toilet tissue"}) {
			t.Fatalf("train: %d images, classes %q", train.Len(), train.Classes())
		}
		for i := 0; i < 6; i++ {
			s, err := train.Get(i)
			if err != nil {
				t.Fatal(err)
			}
			if s.Label != i/2 || !strings.Contains(s.Path, wnids[i/2]) {
				t.Errorf("train %d: %s label %d", i, s.Path, s.Label)
			}
		}
		val, err := Open(root, "val", datasets.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var labels []int
		for i := 0; i < val.Len(); i++ {
			s, err := val.Get(i)
			if err != nil {
				t.Fatal(err)
			}
			labels = append(labels, s.Label)
		}
		if !slices.Equal(labels, []int{2, 1, 0, 2}) {
			t.Errorf("kaggle=%v: val labels %v, want [2 1 0 2]", kaggle, labels)
		}
		if got := val.(*Dataset).WNIDs(); !slices.Equal(got, wnids) {
			t.Errorf("wnids %v", got)
		}
	}
}

func TestValInFolders(t *testing.T) {
	root := t.TempDir()
	for c, w := range wnids[:2] {
		fixture.JPEG(t, filepath.Join(root, "val", w, "ILSVRC2012_val_0000000"+fmt.Sprint(c+1)+".JPEG"), 8, 6, c)
	}
	ds, err := Open(root, "val", datasets.Options{}) // no train/, no mapping: classes from val
	if err != nil {
		t.Fatal(err)
	}
	if ds.Len() != 2 || !slices.Equal(ds.Classes(), wnids[:2]) {
		t.Errorf("%d images, classes %v", ds.Len(), ds.Classes())
	}
}

func TestBadInput(t *testing.T) {
	root, base := imagenetFixture(t, false)
	ds, err := Open(root, "train", datasets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(base, "train", wnids[0], wnids[0]+"_1.JPEG")
	fixture.Truncate(t, bad)
	if _, err := ds.Get(1); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("truncated: %v", err)
	}
	// A val image whose wnid is not a training class.
	fixture.JPEG(t, filepath.Join(base, "val", "ILSVRC2012_val_00000009.JPEG"), 8, 6, 1)
	csv, _ := os.ReadFile(filepath.Join(root, "LOC_val_solution.csv"))
	fixture.Write(t, filepath.Join(root, "LOC_val_solution.csv"), append(csv, []byte("ILSVRC2012_val_00000009,n99999999 1 2 3 4\n")...))
	if _, err := Open(root, "val", datasets.Options{}); err == nil || !strings.Contains(err.Error(), "n99999999") {
		t.Errorf("unknown wnid: %v", err)
	}
	os.Remove(filepath.Join(root, "LOC_val_solution.csv"))
	if _, err := Open(root, "val", datasets.Options{}); err == nil || !strings.Contains(err.Error(), "LOC_val_solution.csv") {
		t.Errorf("flat val without csv: %v", err)
	}
	if _, err := Open(filepath.Join(root, "none"), "train", datasets.Options{}); err == nil {
		t.Error("missing root accepted")
	}
}
