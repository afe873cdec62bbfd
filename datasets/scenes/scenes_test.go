package scenes

import (
	"crypto/sha256"
	"encoding/json"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/coco"
)

func TestGenerateReadsBack(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Train: 24, Val: 8, Size: 64, Seed: 7}
	start := time.Now()
	if err := Generate(dir, cfg); err != nil {
		t.Fatal(err)
	}
	t.Logf("generated %d scenes of %dpx in %v", cfg.Train+cfg.Val, cfg.Size, time.Since(start))

	for _, split := range []string{"train", "val"} {
		sem, err := Open(dir, split, datasets.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ins, err := Open(dir, split, datasets.Options{Task: "instance"})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int{"train": cfg.Train, "val": cfg.Val}[split]
		if sem.Len() != want || ins.Len() != want {
			t.Fatalf("%s: %d semantic and %d instance samples, want %d", split, sem.Len(), ins.Len(), want)
		}
		if len(sem.Classes()) != len(Classes) || len(ins.Classes()) != len(Classes) {
			t.Fatalf("classes %v / %v, want %v", sem.Classes(), ins.Classes(), Classes)
		}
		forms := map[string]int{}
		for i := 0; i < want; i++ {
			a, err := sem.Get(i)
			if err != nil {
				t.Fatal(err)
			}
			b, err := ins.Get(i)
			if err != nil {
				t.Fatal(err)
			}
			// Every labelled pixel belongs to exactly one instance of the same class; every
			// background pixel (255 after reduce_zero_label) to none.
			n := cfg.Size * cfg.Size
			cover := make([]int, n)
			for _, inst := range b.Instances {
				for p, v := range inst.Mask {
					if v == 0 {
						continue
					}
					cover[p]++
					if int(a.Semantic[p]) != inst.Class {
						t.Fatalf("%s: instance %d (class %d) covers pixel %d of class %d", b.Path, inst.ID, inst.Class, p, a.Semantic[p])
					}
				}
			}
			for p := 0; p < n; p++ {
				want := 1
				if a.Semantic[p] == datasets.IgnoreLabel {
					want = 0
				}
				if cover[p] != want {
					t.Fatalf("%s: pixel %d (label %d) is covered by %d instances", b.Path, p, a.Semantic[p], cover[p])
				}
			}
			if a.Image.W != cfg.Size || b.Image.H != cfg.Size {
				t.Fatalf("image size %dx%d", a.Image.W, a.Image.H)
			}
		}
		f := readCOCO(t, filepath.Join(COCODir(dir), "annotations", "instances_"+split+"2017.json"))
		for _, a := range f.Annotations {
			switch {
			case a.Segmentation[0] == '[':
				forms["polygon"]++
			case a.IsCrowd == 1:
				forms["uncompressed RLE"]++
			default:
				forms["compressed RLE"]++
			}
		}
		t.Logf("%s segmentation forms: %v", split, forms)
		if split == "train" && (forms["polygon"] == 0 || forms["compressed RLE"] == 0 || forms["uncompressed RLE"] == 0) {
			t.Errorf("train split should use all three segmentation forms, got %v", forms)
		}
	}
}

func readCOCO(t *testing.T, path string) coco.File {
	t.Helper()
	var f coco.File
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func hashTree(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = sha256.Sum256(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDeterministicAcrossWorkers(t *testing.T) {
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	cfg := Config{Train: 6, Val: 3, Size: 48, Seed: 3, Workers: 1}
	if err := Generate(a, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Workers = 3
	if err := Generate(b, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Seed = 4
	if err := Generate(c, cfg); err != nil {
		t.Fatal(err)
	}
	ha, hb, hc := hashTree(t, a), hashTree(t, b), hashTree(t, c)
	if len(ha) != len(hb) {
		t.Fatalf("%d files vs %d", len(ha), len(hb))
	}
	same := 0
	for k, v := range ha {
		if hb[k] != v {
			t.Errorf("%s differs between 1 and 3 workers", k)
		}
		if hc[k] == v {
			same++
		}
	}
	if same > 2 { // objectInfo150.txt and scenes.json may coincide
		t.Errorf("%d files identical with another seed", same)
	}
}

func TestEnsureAndOpenGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "scenes")
	cfg := Config{Train: 2, Val: 1, Size: 32, Seed: 1}
	if err := Ensure(dir, cfg); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, stampFile))
	if err := Ensure(dir, cfg); err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(filepath.Join(dir, stampFile))
	if !st.ModTime().Equal(st2.ModTime()) {
		t.Error("Ensure regenerated an up-to-date folder")
	}
	if _, err := Open(t.TempDir(), "val", datasets.Options{Task: "panoptic"}); err == nil {
		t.Error("unknown task accepted")
	}
	notEmpty := t.TempDir()
	os.WriteFile(filepath.Join(notEmpty, "x"), nil, 0o644)
	if _, err := Open(notEmpty, "val", datasets.Options{}); err == nil {
		t.Error("Open generated into a non-empty folder")
	}
}

func BenchmarkGenerate128(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if err := Generate(b.TempDir(), Config{Train: 200, Val: 56, Size: 128, Seed: int64(i)}); err != nil {
			b.Fatal(err)
		}
	}
}

// Plain scenes have the masks and annotations of the textured scenes of the same seed, and flat
// backgrounds: the background pixels of an image vary only by the pixel noise and JPEG.
func TestPlainScenes(t *testing.T) {
	textured, plain := t.TempDir(), t.TempDir()
	cfg := Config{Train: 4, Val: 2, Size: 48, Seed: 7}
	if err := Generate(textured, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Plain = true
	if err := Generate(plain, cfg); err != nil {
		t.Fatal(err)
	}
	ht, hp := hashTree(t, textured), hashTree(t, plain)
	imagesDiffer := 0
	for k, v := range ht {
		isImage := filepath.Ext(k) == ".jpg"
		switch {
		case isImage && hp[k] != v:
			imagesDiffer++
		case !isImage && k != "scenes.json" && hp[k] != v:
			t.Errorf("%s differs between the plain and the textured scenes", k)
		}
	}
	if imagesDiffer != 2*(4+2) { // each image is written to both layouts
		t.Errorf("%d images differ, want all %d", imagesDiffer, 2*(4+2))
	}
	ds, err := Open(plain, "train", datasets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range ds.Len() {
		s, err := ds.Get(i)
		if err != nil {
			t.Fatal(err)
		}
		var sum, sq [3]float64
		n := 0
		w := s.Image.W
		bg := func(x, y int) bool { // 0: background before reduce_zero_label, 255 after
			l := s.Semantic[y*w+x]
			return l == 0 || l == 255
		}
		for p := range s.Semantic {
			x, y := p%w, p/w
			far := true // 3 pixels away from any object (JPEG blurs colour across edges)
			for dy := -3; dy <= 3 && far; dy++ {
				for dx := -3; dx <= 3 && far; dx++ {
					xx, yy := x+dx, y+dy
					far = xx < 0 || yy < 0 || xx >= w || yy >= len(s.Semantic)/w || bg(xx, yy)
				}
			}
			if !far {
				continue
			}
			for ch := range 3 {
				v := float64(s.Image.Pix[3*p+ch])
				sum[ch] += v
				sq[ch] += v * v
			}
			n++
		}
		for ch := range 3 {
			mean := sum[ch] / float64(n)
			if sd := math.Sqrt(sq[ch]/float64(n) - mean*mean); sd > 8 {
				t.Errorf("image %d channel %d: background standard deviation %.1f, want a flat colour (<= 8)", i, ch, sd)
			}
		}
	}
}

// Objects scenes are the scenes of the same config with every object labelled "object": the
// same pictures, the same masks with one class, the same annotations with category id 1.
func TestObjectScenes(t *testing.T) {
	shapes, objects := t.TempDir(), t.TempDir()
	cfg := Config{Train: 4, Val: 2, Size: 48, Seed: 7}
	if err := Generate(shapes, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Objects = true
	if err := Generate(objects, cfg); err != nil {
		t.Fatal(err)
	}
	hs, ho := hashTree(t, shapes), hashTree(t, objects)
	for k, v := range hs {
		if filepath.Ext(k) == ".jpg" && ho[k] != v {
			t.Errorf("%s differs between the object and the shape scenes", k)
		}
	}
	for _, split := range []string{"train", "val"} {
		s, err := Open(shapes, split, datasets.Options{})
		if err != nil {
			t.Fatal(err)
		}
		o, err := Open(objects, split, datasets.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := o.Classes(); len(got) != 1 || got[0] != "object" {
			t.Fatalf("%s classes %q, want [object]", split, got)
		}
		objectPixels := 0
		for i := range s.Len() {
			a, err := s.Get(i)
			if err != nil {
				t.Fatal(err)
			}
			b, err := o.Get(i)
			if err != nil {
				t.Fatal(err)
			}
			for p, l := range a.Semantic { // reduce_zero_label: background 255, classes from 0
				want := uint8(255)
				if l != 255 {
					want, objectPixels = 0, objectPixels+1
				}
				if b.Semantic[p] != want {
					t.Fatalf("%s image %d pixel %d: label %d, want %d (shape label %d)", split, i, p, b.Semantic[p], want, l)
				}
			}
		}
		if objectPixels == 0 {
			t.Errorf("%s: no object pixels", split)
		}
		name := "instances_" + map[string]string{"train": "train2017", "val": "val2017"}[split] + ".json"
		fs := readCOCO(t, filepath.Join(COCODir(shapes), "annotations", name))
		fo := readCOCO(t, filepath.Join(COCODir(objects), "annotations", name))
		if len(fo.Categories) != 1 || fo.Categories[0].ID != 1 || fo.Categories[0].Name != "object" {
			t.Errorf("%s categories %+v, want one: 1 object", split, fo.Categories)
		}
		if len(fo.Annotations) != len(fs.Annotations) {
			t.Fatalf("%s: %d annotations, want %d", split, len(fo.Annotations), len(fs.Annotations))
		}
		for i, a := range fo.Annotations {
			want := fs.Annotations[i]
			if a.CategoryID != 1 || string(a.Segmentation) != string(want.Segmentation) || a.Area != want.Area || a.IsCrowd != want.IsCrowd {
				t.Errorf("%s annotation %d: category %d, area %g, crowd %d; want 1, %g, %d and the same segmentation",
					split, i, a.CategoryID, a.Area, a.IsCrowd, want.Area, want.IsCrowd)
			}
		}
	}
}
