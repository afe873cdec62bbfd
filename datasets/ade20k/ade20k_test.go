package ade20k

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

// adeFixture lays out root/ADEChallengeData2016 with n images a split; annotation pixel p of
// image i has value (p+i) % 152 clamped to 150 (0 = other).
func adeFixture(t *testing.T, n, w, h int) string {
	root := t.TempDir()
	base := filepath.Join(root, Folder)
	for _, sp := range [][2]string{{"training", "train"}, {"validation", "val"}} {
		for i := 1; i <= n; i++ {
			name := fmt.Sprintf("ADE_%s_%08d", sp[1], i)
			fixture.JPEG(t, filepath.Join(base, "images", sp[0], name+".jpg"), w, h, i)
			fixture.Label(t, filepath.Join(base, "annotations", sp[0], name+".png"), rawLabels(w, h, i), w, h)
		}
	}
	return root
}

func rawLabels(w, h, i int) []uint8 {
	lab := make([]uint8, w*h)
	for p := range lab {
		lab[p] = uint8(min((p+i)%152, 150))
	}
	return lab
}

func TestOfficialLayout(t *testing.T) {
	root := adeFixture(t, 3, 16, 12)
	tests := []struct {
		split string
		opts  datasets.Options
		root  string
	}{
		{"train", datasets.Options{}, root},
		{"validation", datasets.Options{}, root},
		{"val", datasets.Options{KeepZeroLabel: true}, filepath.Join(root, Folder)},
	}
	for _, tc := range tests {
		ds, err := datasets.Open("ade20k", tc.root, tc.split, tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		k := 150
		if tc.opts.KeepZeroLabel {
			k = 151
		}
		if ds.Len() != 3 || len(ds.Classes()) != k || ds.Classes()[0] != map[bool]string{false: "wall", true: "other"}[tc.opts.KeepZeroLabel] {
			t.Fatalf("%s: %d samples, %d classes starting %q", tc.split, ds.Len(), len(ds.Classes()), ds.Classes()[0])
		}
		s, err := ds.Get(2)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(s.Path, "_00000003.jpg") {
			t.Errorf("sample 2 is %s", s.Path)
		}
		raw := rawLabels(16, 12, 3)
		for p, v := range s.Semantic {
			want := raw[p]
			if !tc.opts.KeepZeroLabel {
				want-- // reduce_zero_label: 0 -> 255 (uint8 wrap), v -> v-1
			}
			if v != want {
				t.Fatalf("%s: pixel %d raw %d -> %d, want %d", tc.split, p, raw[p], v, want)
			}
		}
	}
}

func TestObjectInfo(t *testing.T) {
	root := adeFixture(t, 1, 8, 8)
	// The devkit's file: tab separated, synonyms after commas, stray spaces.
	info := "Idx\tRatio\tTrain\tVal\tName\n1\t0.1576\t11664\t1172\twall\n2 \t0.1072\t6046\t612\tbuilding, edifice\n"
	fixture.Write(t, filepath.Join(root, Folder, "objectInfo150.txt"), []byte(info))
	fixture.Label(t, filepath.Join(root, Folder, "annotations", "training", "ADE_train_00000001.png"), []uint8{0, 1, 2, 255, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 8, 8)
	ds, err := Open(root, "train", datasets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ds.Classes(), []string{"wall", "building"}) {
		t.Errorf("classes %q", ds.Classes())
	}
	s, err := ds.Get(0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Semantic[:4], []uint8{255, 0, 1, 255}) {
		t.Errorf("labels %v", s.Semantic[:4])
	}
	names, err := ReadObjectInfo(filepath.Join(root, Folder, "objectInfo150.txt"))
	if err != nil || len(names) != 2 {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "o.txt")
	if err := WriteObjectInfo(p, []string{"a", "b c"}); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadObjectInfo(p); err != nil || !slices.Equal(got, []string{"a", "b c"}) {
		t.Errorf("round trip: %q %v", got, err)
	}
	if len(Classes) != 150 {
		t.Errorf("%d built-in classes", len(Classes))
	}
}

func TestBadInput(t *testing.T) {
	root := adeFixture(t, 2, 8, 6)
	base := filepath.Join(root, Folder)
	ann := filepath.Join(base, "annotations", "training", "ADE_train_00000002.png")
	img := filepath.Join(base, "images", "training", "ADE_train_00000002.jpg")
	ds, err := Open(root, "train", datasets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		damage func()
		want   string
	}{
		{"value above 150", func() { fixture.Label(t, ann, fixture.Fill(8, 6, 151), 8, 6) }, ann},
		{"mask of another size", func() { fixture.Label(t, ann, fixture.Fill(6, 8, 1), 6, 8) }, ann},
		{"unreadable mask", func() { fixture.Write(t, ann, []byte("garbage")) }, ann},
		{"truncated image", func() { fixture.Truncate(t, img) }, img},
	}
	for _, tc := range tests {
		tc.damage()
		if _, err := ds.Get(1); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
	os.Remove(ann)
	if _, err := Open(root, "train", datasets.Options{}); err == nil || !strings.Contains(err.Error(), ann) {
		t.Errorf("image without annotation: %v, want an error naming %s", err, ann)
	}
	os.RemoveAll(filepath.Join(base, "images", "validation"))
	if _, err := Open(root, "val", datasets.Options{}); err == nil || !strings.Contains(err.Error(), "validation") {
		t.Errorf("missing folder: %v", err)
	}
}

// Real photographs with real VOC masks (labelme-examples) in the ADE20K layout: VOC's
// convention (0 = background, 1..20, 255 = ignore) is the same as ADE20K's.
func TestLabelmeVOCPhotos(t *testing.T) {
	voc := "/usr/share/doc/labelme-examples/examples/instance_segmentation/data_dataset_voc"
	if _, err := os.Stat(voc); err != nil {
		t.Skip("labelme-examples is not installed")
	}
	root := t.TempDir()
	base := filepath.Join(root, Folder)
	imgs, err := datasets.ListFiles(filepath.Join(voc, "JPEGImages"), datasets.ImageExts, "VOC images")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range imgs {
		for _, pair := range [][2]string{{p, filepath.Join(base, "images", "validation", filepath.Base(p))},
			{filepath.Join(voc, "SegmentationClassPNG", datasets.Stem(p)+".png"), filepath.Join(base, "annotations", "validation", datasets.Stem(p)+".png")}} {
			data, err := os.ReadFile(pair[0])
			if err != nil {
				t.Fatal(err)
			}
			fixture.Write(t, pair[1], data)
		}
	}
	names, err := os.ReadFile(filepath.Join(voc, "class_names.txt"))
	if err != nil {
		t.Fatal(err)
	}
	classes := strings.Fields(strings.ReplaceAll(string(names), " ", "_"))[1:] // drop _background_
	if err := WriteObjectInfo(filepath.Join(base, "objectInfo150.txt"), classes); err != nil {
		t.Fatal(err)
	}
	ds, err := Open(root, "val", datasets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Len() != len(imgs) || len(ds.Classes()) != 20 || ds.Classes()[14] != "person" {
		t.Fatalf("%d samples, classes %q", ds.Len(), ds.Classes())
	}
	for i := 0; i < ds.Len(); i++ {
		s, err := ds.Get(i)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[uint8]int{}
		for _, v := range s.Semantic {
			seen[v]++
		}
		if s.Image.W != 500 || len(seen) < 2 || seen[datasets.IgnoreLabel] == 0 {
			t.Errorf("%s: %dx%d, labels %v", s.Path, s.Image.W, s.Image.H, seen)
		}
		t.Logf("%s: %dx%d labels %v", filepath.Base(s.Path), s.Image.W, s.Image.H, seen)
	}
}
