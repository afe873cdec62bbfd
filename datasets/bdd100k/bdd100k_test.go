package bdd100k

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/coco"
	"github.com/dreamteacher-go/dreamteacher/datasets/internal/fixture"
)

const w, h = 16, 10

// bitmask builds an RGBA bitmask with instances given as rectangles.
type inst struct {
	x0, y0, x1, y1 int
	cat, attr      uint8
	id             int
}

func bitmask(insts []inst) []uint8 {
	pix := make([]uint8, 4*w*h)
	for _, in := range insts {
		for y := in.y0; y < in.y1; y++ {
			for x := in.x0; x < in.x1; x++ {
				p := pix[4*(y*w+x):]
				p[0], p[1], p[2], p[3] = in.cat, in.attr, uint8(in.id>>8), uint8(in.id)
			}
		}
	}
	return pix
}

var frame = []inst{
	{0, 0, 4, 4, 3, 0, 1},                               // car
	{5, 2, 9, 10, 1, AttrOccluded | AttrTruncated, 300}, // pedestrian, id with a high byte
	{10, 0, 16, 5, 2, AttrCrowd, 7},                     // rider crowd
	{10, 6, 16, 10, 0, AttrIgnore | AttrCrowd, 9},       // background ignore region
}

func bddFixture(t *testing.T) string {
	root := filepath.Join(t.TempDir(), "bdd100k")
	for _, split := range []string{"train", "val"} {
		for i := 0; i < 2; i++ {
			name := fmt.Sprintf("%s-%08d", split[:1], i)
			fixture.JPEG(t, filepath.Join(root, "images", "10k", split, name+".jpg"), w, h, i)
			lab := make([]uint8, w*h)
			for p := range lab {
				lab[p] = uint8(p % 19)
			}
			lab[0] = 255
			fixture.Label(t, filepath.Join(root, "labels", "sem_seg", "masks", split, name+".png"), lab, w, h)
			fixture.RGBA(t, filepath.Join(root, "labels", "ins_seg", "bitmasks", split, name+".png"), bitmask(frame), w, h)
		}
		// A 10k image without semantic mask: not part of the split.
		fixture.JPEG(t, filepath.Join(root, "images", "10k", split, "extra.jpg"), w, h, 9)
	}
	return root
}

func TestSemantic(t *testing.T) {
	root := bddFixture(t)
	ds, err := datasets.Open("bdd100k", root, "val", datasets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Len() != 2 || len(ds.Classes()) != 19 {
		t.Fatalf("%d samples, %d classes", ds.Len(), len(ds.Classes()))
	}
	s, err := ds.Get(1)
	if err != nil {
		t.Fatal(err)
	}
	if s.Semantic[0] != 255 || s.Semantic[20] != 1 || s.Semantic[18] != 18 {
		t.Errorf("labels %v", s.Semantic[:21])
	}
	bad := filepath.Join(root, "labels", "sem_seg", "masks", "val", "v-00000001.png")
	fixture.Label(t, bad, fixture.Fill(w, h, 19), w, h)
	if _, err := ds.Get(1); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("train id 19: %v", err)
	}
}

func TestInstanceBitmasks(t *testing.T) {
	root := bddFixture(t)
	ds, err := Open(root, "train", datasets.Options{Task: "instance"})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Len() != 2 || len(ds.Classes()) != 8 {
		t.Fatalf("%d samples, %d classes", ds.Len(), len(ds.Classes()))
	}
	s, err := ds.Get(0)
	if err != nil {
		t.Fatal(err)
	}
	want := []datasets.Instance{
		{ID: 1, Class: 2, Box: [4]float32{0, 0, 4, 4}, Area: 16},
		{ID: 7, Class: 1, Box: [4]float32{10, 0, 16, 5}, Area: 30, IsCrowd: true},
		{ID: 300, Class: 0, Box: [4]float32{5, 2, 9, 10}, Area: 32},
	}
	if len(s.Instances) != len(want) {
		t.Fatalf("%d instances, want %d (the category-0 region is background)", len(s.Instances), len(want))
	}
	for i, w := range want {
		g := s.Instances[i]
		if g.ID != w.ID || g.Class != w.Class || g.Box != w.Box || g.Area != w.Area || g.IsCrowd != w.IsCrowd {
			t.Errorf("instance %d: %+v, want %+v", i, g, w)
		}
		area := 0
		for _, v := range g.Mask {
			area += int(v)
		}
		if float64(area) != w.Area {
			t.Errorf("instance %d mask area %d", i, area)
		}
	}
	// Bad inputs: a category outside 1..8, one instance with two categories, another size.
	bm := filepath.Join(root, "labels", "ins_seg", "bitmasks", "train", "t-00000001.png")
	tests := []struct {
		name  string
		pix   []uint8
		w, h  int
		words string
	}{
		{"category 9", bitmask([]inst{{0, 0, 2, 2, 9, 0, 4}}), w, h, "category id 9"},
		{"two categories", bitmask([]inst{{0, 0, 2, 2, 3, 0, 4}, {3, 3, 5, 5, 4, 0, 4}}), w, h, "categories"},
		{"other size", make([]uint8, 4*8*8), 8, 8, "8x8"},
	}
	for _, tc := range tests {
		fixture.RGBA(t, bm, tc.pix, tc.w, tc.h)
		if _, err := ds.Get(1); err == nil || !strings.Contains(err.Error(), bm) || !strings.Contains(err.Error(), tc.words) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// BDD100K's to_coco conversion, read through the coco loader.
func TestInstanceCOCOJSON(t *testing.T) {
	root := bddFixture(t)
	f := coco.File{
		Images: []coco.Image{{ID: 1, FileName: "t-00000000.jpg", Width: w, Height: h}},
		Annotations: []coco.Annotation{{ID: 5, ImageID: 1, CategoryID: 3, BBox: []float64{0, 0, 4, 4}, Area: 16,
			Segmentation: json.RawMessage(`[[0,0,4,0,4,4,0,4]]`)}},
	}
	for i, n := range InstanceClasses {
		f.Categories = append(f.Categories, coco.Category{ID: int64(i + 1), Name: n})
	}
	data, _ := json.Marshal(f)
	fixture.Write(t, filepath.Join(root, "labels", "ins_seg", "polygons", "ins_seg_train_coco.json"), data)
	ds, err := Open(root, "train", datasets.Options{Task: "instance", Annotations: "labels/ins_seg/polygons/ins_seg_train_coco.json"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ds.Get(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Instances) != 1 || s.Instances[0].Class != 2 || ds.Classes()[2] != "car" {
		t.Errorf("instances %+v, classes %v", s.Instances, ds.Classes())
	}
	if _, err := Open(root, "train", datasets.Options{Task: "panoptic"}); err == nil {
		t.Error("unknown task accepted")
	}
}
