package loader

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/coco"
	"github.com/dreamteacher-go/dreamteacher/datasets/scenes"
	"github.com/dreamteacher-go/dreamteacher/datasets/transforms"
)

// The whole path a training run takes: generated scenes, the real loaders, the mmseg and
// torchvision recipes, fixed-shape batches.
func TestScenesPipeline(t *testing.T) {
	dir := t.TempDir()
	if err := scenes.Generate(dir, scenes.Config{Train: 10, Val: 5, Size: 64, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	sem, err := scenes.Open(dir, "train", datasets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(sem, Config{BatchSize: 4, Transform: transforms.ADE20KTrain(48), Shuffle: true, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for b, err := range l.Epoch(0) {
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(b.Semantic.Shape().Dimensions, []int{4, 48, 48}) || !slices.Equal(b.Images.Shape().Dimensions, []int{4, 48, 48, 3}) {
			t.Fatalf("shapes %v %v", b.Images.Shape(), b.Semantic.Shape())
		}
		var labels []int32
		b.Semantic.ConstFlatData(func(f any) { labels = slices.Clone(f.([]int32)) })
		for _, v := range labels {
			if v != 255 && (v < 0 || v >= int32(len(scenes.Classes))) {
				t.Fatalf("label %d", v)
			}
		}
	}

	ins, err := scenes.Open(dir, "val", datasets.Options{Task: "instance"})
	if err != nil {
		t.Fatal(err)
	}
	l, err = New(ins, Config{BatchSize: 2, Transform: transforms.Compose(transforms.RandomResizedCrop{W: 32, H: 32, Scale: [2]float64{0.5, 1}}, transforms.HFlip{P: 0.5}), MaxInstances: 8, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for b, err := range l.Epoch(0) {
		if err != nil {
			t.Fatal(err)
		}
		var classes []int32
		var masks []uint8
		var boxes []float32
		b.Classes.ConstFlatData(func(f any) { classes = slices.Clone(f.([]int32)) })
		b.Masks.ConstFlatData(func(f any) { masks = slices.Clone(f.([]uint8)) })
		b.Boxes.ConstFlatData(func(f any) { boxes = slices.Clone(f.([]float32)) })
		for q, c := range classes {
			area := 0
			for _, v := range masks[q*32*32 : (q+1)*32*32] {
				area += int(v)
			}
			if c < 0 {
				if area != 0 {
					t.Fatal("padding slot with a mask")
				}
				continue
			}
			n++
			bx := boxes[4*q : 4*q+4]
			if area == 0 || bx[2] <= bx[0] || bx[3] <= bx[1] || bx[2] > 32 || bx[3] > 32 {
				t.Fatalf("instance slot %d: class %d area %d box %v", q, c, area, bx)
			}
		}
	}
	st := l.Stats()
	t.Logf("%d instances in batches, stats %+v", n, st)
	if n == 0 {
		t.Error("no instances")
	}
}

// SkipBad with real loader errors: a COCO annotation with an unknown category and a truncated
// image are skipped and listed with their paths; the annotation error gives its id.
func TestSkipBadRealFiles(t *testing.T) {
	dir := t.TempDir()
	if err := scenes.Generate(dir, scenes.Config{Train: 1, Val: 6, Size: 32, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	annPath := filepath.Join(scenes.COCODir(dir), "annotations", "instances_val2017.json")
	data, _ := os.ReadFile(annPath)
	var f coco.File
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	f.Annotations[0].CategoryID = 999
	badAnn, badImg := f.Annotations[0], f.Images[len(f.Images)-1]
	data, _ = json.Marshal(f)
	os.WriteFile(annPath, data, 0o644)
	imgPath := filepath.Join(scenes.COCODir(dir), "val2017", badImg.FileName)
	st, _ := os.Stat(imgPath)
	os.Truncate(imgPath, st.Size()/2)

	ds, err := scenes.Open(dir, "val", datasets.Options{Task: "instance"})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := New(ds, Config{BatchSize: 4, SkipBad: true, MaxInstances: 4})
	valid := 0
	for b, err := range l.Epoch(0) {
		if err != nil {
			t.Fatal(err)
		}
		valid += b.NumValid
	}
	skips := l.Skipped()
	if valid != 4 || len(skips) != 2 {
		t.Fatalf("%d valid samples, skipped %v", valid, skips)
	}
	var annSkip Skip
	for _, s := range skips {
		if strings.HasSuffix(s.Path, badImg.FileName) {
			if !strings.Contains(s.Err.Error(), imgPath) {
				t.Errorf("truncated image error %v", s.Err)
			}
		} else {
			annSkip = s
		}
	}
	if !strings.Contains(annSkip.Err.Error(), "category_id 999") || !strings.Contains(annSkip.Err.Error(), "annotation "+itoa64(badAnn.ID)) {
		t.Errorf("bad annotation skip %+v", annSkip)
	}
}

func itoa64(v int64) string { b, _ := json.Marshal(v); return string(b) }
