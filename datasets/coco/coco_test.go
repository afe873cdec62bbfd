package coco

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/internal/fixture"
	"github.com/dreamteacher-go/dreamteacher/eval/coco/rle"
)

const w, h = 20, 12

// blob is a row-major mask: the pixels with (x+2y) % 5 == 0 in the left half.
func blob() []uint8 {
	m := make([]uint8, w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w/2; x++ {
			if (x+2*y)%5 == 0 {
				m[y*w+x] = 1
			}
		}
	}
	return m
}

func raw(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// cocoFixture lays out root/annotations/instances_val2017.json and root/val2017/ with COCO's
// sparse category ids listed out of order.
func cocoFixture(t *testing.T, edit func(f *File)) string {
	root := t.TempDir()
	enc := rle.Encode(blob(), h, w)
	f := File{
		Categories: []Category{{ID: 90, Name: "toothbrush"}, {ID: 1, Name: "person"}, {ID: 3, Name: "car"}},
		Images: []Image{
			{ID: 139, FileName: "000000000139.jpg", Width: w, Height: h},
			{ID: 42, FileName: "000000000042.jpg", Width: w, Height: h},
		},
		Annotations: []Annotation{
			{ID: 11, ImageID: 139, CategoryID: 3, BBox: []float64{2, 1, 4, 3}, Area: 12,
				Segmentation: raw([][]float64{{2, 1, 6, 1, 6, 4, 2, 4}, {10, 5, 12, 5, 12, 7, 10, 7}})},
			{ID: 12, ImageID: 139, CategoryID: 90, BBox: []float64{0, 0, 10, 12}, Area: float64(enc.Area()), IsCrowd: 1,
				Segmentation: raw(map[string]any{"counts": enc.Counts, "size": []int{h, w}})},
			{ID: 13, ImageID: 139, CategoryID: 1, BBox: []float64{0, 0, 10, 12}, Area: float64(enc.Area()),
				Segmentation: raw(map[string]any{"counts": enc.String(), "size": []int{h, w}})},
		},
	}
	if edit != nil {
		edit(&f)
	}
	data, _ := json.Marshal(f)
	fixture.Write(t, filepath.Join(root, "annotations", "instances_val2017.json"), data)
	fixture.JPEG(t, filepath.Join(root, "val2017", "000000000139.jpg"), w, h, 1)
	fixture.JPEG(t, filepath.Join(root, "val2017", "000000000042.jpg"), w, h, 2)
	return root
}

func TestOfficialLayout(t *testing.T) {
	root := cocoFixture(t, nil)
	ds, err := datasets.Open("coco", root, "val", datasets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Len() != 2 || !slices.Equal(ds.Classes(), []string{"person", "car", "toothbrush"}) {
		t.Fatalf("%d images, classes %v", ds.Len(), ds.Classes())
	}
	if got := ds.(*Dataset).CategoryIDs(); !slices.Equal(got, []int64{1, 3, 90}) {
		t.Errorf("category ids %v", got)
	}
	empty, err := ds.Get(0) // id 42 sorts first and has no annotation
	if err != nil || len(empty.Instances) != 0 || !strings.HasSuffix(empty.Path, "000000000042.jpg") {
		t.Fatalf("image 42: %v, %d instances, %s", err, len(empty.Instances), empty.Path)
	}
	s, err := ds.Get(1)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Instances) != 3 {
		t.Fatalf("%d instances", len(s.Instances))
	}
	poly, crowd, comp := s.Instances[0], s.Instances[1], s.Instances[2]
	// Two rectangles: pixels [2,6)x[1,4) and [10,12)x[5,7).
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			in := (x >= 2 && x < 6 && y >= 1 && y < 4) || (x >= 10 && x < 12 && y >= 5 && y < 7)
			if (poly.Mask[y*w+x] == 1) != in {
				t.Fatalf("polygon mask at (%d,%d) = %d", x, y, poly.Mask[y*w+x])
			}
		}
	}
	if poly.Class != 1 || poly.ID != 11 || poly.Box != [4]float32{2, 1, 6, 4} || poly.IsCrowd {
		t.Errorf("polygon instance %+v", poly)
	}
	if crowd.Class != 2 || !crowd.IsCrowd || !slices.Equal(crowd.Mask, blob()) {
		t.Errorf("uncompressed RLE instance: class %d crowd %v mask ok %v", crowd.Class, crowd.IsCrowd, slices.Equal(crowd.Mask, blob()))
	}
	if comp.Class != 0 || comp.IsCrowd || !slices.Equal(comp.Mask, blob()) {
		t.Errorf("compressed RLE instance: class %d mask ok %v", comp.Class, slices.Equal(comp.Mask, blob()))
	}
}

// A root given relative to the working directory (as the demo's out/demo/scenes/coco) reads
// the same layout: paths are joined to it once.
func TestRelativeRoot(t *testing.T) {
	root := cocoFixture(t, nil)
	t.Chdir(filepath.Dir(root))
	ds, err := datasets.Open("coco", filepath.Base(root), "val", datasets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := ds.Get(1); err != nil || len(s.Instances) != 3 {
		t.Fatalf("relative root: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name string
		edit func(f *File)
		want string // besides the image path and annotation id
	}{
		{"unknown category", func(f *File) { f.Annotations[0].CategoryID = 2 }, "category_id 2"},
		{"odd polygon", func(f *File) { f.Annotations[0].Segmentation = raw([][]float64{{1, 2, 3, 4, 5, 6, 7}}) }, "odd"},
		{"two-point polygon", func(f *File) { f.Annotations[0].Segmentation = raw([][]float64{{1, 2, 3, 4}}) }, "points"},
		{"polygon far outside", func(f *File) { f.Annotations[0].Segmentation = raw([][]float64{{0, 0, 1e6, 0, 0, 5}}) }, "far outside"},
		{"polygon not a list of lists", func(f *File) { f.Annotations[0].Segmentation = json.RawMessage(`[1, 2, 3]`) }, "polygon"},
		{"RLE counts too short", func(f *File) {
			f.Annotations[0].Segmentation = raw(map[string]any{"counts": []int{3, 4}, "size": []int{h, w}})
		}, "counts"},
		{"compressed RLE garbage", func(f *File) {
			f.Annotations[0].Segmentation = raw(map[string]any{"counts": "!!!", "size": []int{h, w}})
		}, "compressed RLE"},
		{"RLE of another size", func(f *File) {
			f.Annotations[0].Segmentation = raw(map[string]any{"counts": []int{w * h}, "size": []int{w, h}})
		}, "size"},
		{"bbox with 3 numbers", func(f *File) { f.Annotations[0].BBox = []float64{1, 2, 3} }, "bbox"},
		{"image of another size", func(f *File) { f.Images[0].Width = w + 1 }, "says"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := cocoFixture(t, tc.edit)
			ds, err := Open(root, "val", datasets.Options{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = ds.Get(1)
			img := filepath.Join(root, "val2017", "000000000139.jpg")
			if err == nil || !strings.Contains(err.Error(), img) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s and %q", err, img, tc.want)
			}
			if !strings.Contains(tc.name, "image") && !strings.Contains(err.Error(), "annotation 11") {
				t.Errorf("error %v does not give the annotation id", err)
			}
		})
	}
	// Errors of the file itself come from Open.
	for name, edit := range map[string]func(f *File){
		"annotation of a missing image": func(f *File) { f.Annotations[0].ImageID = 7 },
		"duplicate category":            func(f *File) { f.Categories[0].ID = 1 },
	} {
		root := cocoFixture(t, edit)
		if _, err := Open(root, "val", datasets.Options{}); err == nil || !strings.Contains(err.Error(), "instances_val2017.json") {
			t.Errorf("%s: %v", name, err)
		}
	}
	root := cocoFixture(t, nil)
	fixture.Write(t, filepath.Join(root, "annotations", "instances_val2017.json"), []byte(`{"images": [`))
	if _, err := Open(root, "val", datasets.Options{}); err == nil || !strings.Contains(err.Error(), "instances_val2017.json") {
		t.Errorf("truncated json: %v", err)
	}
	os.RemoveAll(filepath.Join(root, "val2017"))
	if _, err := Open(root, "val", datasets.Options{}); err == nil || !strings.Contains(err.Error(), "val2017") {
		t.Errorf("missing image folder: %v", err)
	}
	root = cocoFixture(t, nil)
	fixture.Truncate(t, filepath.Join(root, "val2017", "000000000042.jpg"))
	ds, _ := Open(root, "val", datasets.Options{})
	if _, err := ds.Get(0); err == nil || !strings.Contains(err.Error(), "000000000042.jpg") {
		t.Errorf("truncated image: %v", err)
	}
}

// labelme's COCO export of real VOC photos: polygons rasterized here agree with labelme's own
// masks (its area and bbox, computed from PIL-drawn masks) and with its VOC instance PNGs, up to
// the outline pixels PIL adds.
func TestLabelmeCOCO(t *testing.T) {
	dir := "/usr/share/doc/labelme-examples/examples/instance_segmentation"
	if _, err := os.Stat(dir); err != nil {
		t.Skip("labelme-examples is not installed")
	}
	ds, err := datasets.Open("coco", filepath.Join(dir, "data_dataset_coco"), "labelme", datasets.Options{Annotations: "annotations.json"})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Len() != 3 || len(ds.Classes()) != 21 || ds.Classes()[15] != "person" {
		t.Fatalf("%d images, classes %v", ds.Len(), ds.Classes())
	}
	total := 0
	for i := 0; i < ds.Len(); i++ {
		s, err := ds.Get(i)
		if err != nil {
			t.Fatal(err)
		}
		obj, ow, oh, err := datasets.ReadLabelPNG(filepath.Join(dir, "data_dataset_voc", "SegmentationObjectPNG", datasets.Stem(s.Path)+".png"))
		if err != nil {
			t.Fatal(err)
		}
		if ow != s.Image.W || oh != s.Image.H {
			t.Fatalf("%s: object PNG %dx%d, image %dx%d", s.Path, ow, oh, s.Image.W, s.Image.H)
		}
		for _, inst := range s.Instances {
			total++
			area := 0
			x0, y0, x1, y1 := s.Image.W, s.Image.H, 0, 0
			votes := map[uint8]int{}
			for p, v := range inst.Mask {
				if v == 0 {
					continue
				}
				area++
				x, y := p%s.Image.W, p/s.Image.W
				x0, y0, x1, y1 = min(x0, x), min(y0, y), max(x1, x+1), max(y1, y+1)
				votes[obj[p]]++
			}
			// labelme draws the outline too (PIL polygon with outline): its masks are fatter than
			// pycocotools' pixel-centre rule by up to half the perimeter.
			halfPerimeter := float64(inst.Box[2] - inst.Box[0] + inst.Box[3] - inst.Box[1])
			if d := inst.Area - float64(area); d < -2 || d > halfPerimeter {
				t.Errorf("%s annotation %d: area %d, labelme %v", s.Path, inst.ID, area, inst.Area)
			}
			for k, v := range []int{x0, y0, x1, y1} {
				if math.Abs(float64(v)-float64(inst.Box[k])) > 1.5 {
					t.Errorf("%s annotation %d: box %d,%d,%d,%d, labelme %v", s.Path, inst.ID, x0, y0, x1, y1, inst.Box)
					break
				}
			}
			// The visible part of the object in the VOC instance PNG lies inside our mask.
			best, n := uint8(0), 0
			for id, c := range votes {
				if id != 0 && id != 255 && c > n {
					best, n = id, c
				}
			}
			visible := 0
			for _, id := range obj {
				if id == best {
					visible++
				}
			}
			if n == 0 || float64(n) < 0.9*float64(visible) {
				t.Errorf("%s annotation %d: %d of the %d pixels of VOC object %d inside the mask", s.Path, inst.ID, n, visible, best)
			}
		}
	}
	if total != 12 {
		t.Errorf("%d instances, want 12", total)
	}
}

func ExampleDecodeSegmentation() {
	m, _ := DecodeSegmentation(json.RawMessage(`[[1, 1, 4, 1, 4, 3, 1, 3]]`), 4, 5)
	for y := 0; y < 4; y++ {
		fmt.Println(m[y*5 : (y+1)*5])
	}
	// Output:
	// [0 0 0 0 0]
	// [0 1 1 1 0]
	// [0 1 1 1 0]
	// [0 0 0 0 0]
}
