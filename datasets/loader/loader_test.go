package loader

import (
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/transforms"
)

// fake is an in-memory dataset: sample i is a w x h image whose pixels depend on i, a semantic
// mask, i%4 rectangle instances and label i%10; the indices in bad fail to load.
type fake struct {
	n, w, h int
	bad     map[int]bool
	sizeOf  func(i int) (int, int) // optional per-sample size
}

func (f *fake) Name() string      { return "fake" }
func (f *fake) Len() int          { return f.n }
func (f *fake) Classes() []string { return []string{"a", "b", "c", "d"} }
func (f *fake) Path(i int) string { return fmt.Sprintf("/fake/%03d.png", i) }
func (f *fake) Get(i int) (datasets.Sample, error) {
	s := datasets.Sample{Path: f.Path(i), Label: i % 10}
	if f.bad[i] {
		return s, fmt.Errorf("%s: truncated image", s.Path)
	}
	w, h := f.w, f.h
	if f.sizeOf != nil {
		w, h = f.sizeOf(i)
	}
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	s.Image = datasets.NewImage(w, h)
	for p := range s.Image.Pix {
		s.Image.Pix[p] = uint8(rng.IntN(256))
	}
	s.Semantic = make([]uint8, w*h)
	for k := 0; k < i%4; k++ {
		x0, y0 := rng.IntN(w/2), rng.IntN(h/2)
		x1, y1 := x0+1+rng.IntN(w/2), y0+1+rng.IntN(h/2)
		m := make([]uint8, w*h)
		for y := y0; y < y1; y++ {
			for x := x0; x < x1; x++ {
				m[y*w+x] = 1
				s.Semantic[y*w+x] = uint8(k + 1)
			}
		}
		s.Instances = append(s.Instances, datasets.Instance{ID: k, Class: k, Mask: m, IsCrowd: k == 2,
			Box: [4]float32{float32(x0), float32(y0), float32(x1), float32(y1)}, Area: float64((x1 - x0) * (y1 - y0))})
	}
	return s, nil
}

func collect(t *testing.T, l *Loader, start Position, epochs int) []*Batch {
	t.Helper()
	it := l.Iterate(start, epochs)
	defer it.Close()
	var out []*Batch
	for {
		b, err := it.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
}

func flat(t *testing.T, x *tensors.Tensor) any {
	t.Helper()
	if x == nil {
		return nil
	}
	var v any
	x.ConstFlatData(func(f any) { v = reflect.ValueOf(f).Interface() })
	rv := reflect.ValueOf(v)
	cp := reflect.MakeSlice(rv.Type(), rv.Len(), rv.Len())
	reflect.Copy(cp, rv)
	return cp.Interface()
}

func sameBatch(t *testing.T, a, b *Batch) bool {
	t.Helper()
	if a.Position != b.Position || a.NumValid != b.NumValid || !slices.Equal(a.Indices, b.Indices) || !slices.Equal(a.Paths, b.Paths) {
		return false
	}
	for _, p := range [][2]*tensors.Tensor{{a.Images, b.Images}, {a.Semantic, b.Semantic}, {a.Labels, b.Labels},
		{a.Valid, b.Valid}, {a.Boxes, b.Boxes}, {a.Classes, b.Classes}, {a.Crowd, b.Crowd}, {a.Masks, b.Masks}} {
		if !reflect.DeepEqual(flat(t, p[0]), flat(t, p[1])) {
			return false
		}
	}
	return true
}

var augment = transforms.Compose(transforms.RandomResizedCrop{W: 16, H: 12}, transforms.HFlip{P: 0.5})

func TestFixedShapesPaddingAndValid(t *testing.T) {
	ds := &fake{n: 10, w: 20, h: 14}
	l, err := New(ds, Config{BatchSize: 4, Transform: augment, MaxInstances: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	batches := collect(t, l, Position{}, 1)
	if len(batches) != 3 || l.BatchesPerEpoch() != 3 {
		t.Fatalf("%d batches, want 3", len(batches))
	}
	for _, b := range batches {
		for name, x := range map[string]*tensors.Tensor{"images": b.Images, "semantic": b.Semantic, "labels": b.Labels,
			"valid": b.Valid, "boxes": b.Boxes, "classes": b.Classes, "crowd": b.Crowd, "masks": b.Masks} {
			want := map[string][]int{"images": {4, 12, 16, 3}, "semantic": {4, 12, 16}, "labels": {4}, "valid": {4},
				"boxes": {4, 2, 4}, "classes": {4, 2}, "crowd": {4, 2}, "masks": {4, 2, 12, 16}}[name]
			if !slices.Equal(x.Shape().Dimensions, want) {
				t.Errorf("batch %d %s shape %v, want %v", b.Position.Batch, name, x.Shape().Dimensions, want)
			}
		}
	}
	last := batches[2]
	if last.NumValid != 2 || !reflect.DeepEqual(flat(t, last.Valid), []float32{1, 1, 0, 0}) {
		t.Errorf("last batch: NumValid %d, Valid %v", last.NumValid, flat(t, last.Valid))
	}
	if !slices.Equal(last.Indices, []int{8, 9, 8, 9}) {
		t.Errorf("last batch indices %v, want the real samples repeated [8 9 8 9]", last.Indices)
	}
	imgs := flat(t, last.Images).([]float32)
	per := 12 * 16 * 3
	if !slices.Equal(imgs[:2*per], imgs[2*per:]) {
		t.Error("padding slots do not repeat the real samples")
	}
	// Instances: sample 9 has 1 instance (9%4), sample 8 none; sample 3 has 3 > MaxInstances.
	cls := flat(t, last.Classes).([]int32)
	if !slices.Equal(cls[:4], []int32{-1, -1, 0, -1}) {
		t.Errorf("classes of the last batch %v", cls)
	}
	for _, b := range batches {
		if b.Images.Shape().Dimensions[0] != 4 {
			t.Fatal("batch size changed")
		}
	}
	st := l.Stats()
	if st.Samples != 10 || st.TruncatedInstances == 0 {
		t.Errorf("stats %+v: want 10 samples and some truncated instances", st)
	}
	// Images are in [0,1].
	for _, v := range flat(t, batches[0].Images).([]float32) {
		if v < 0 || v > 1 {
			t.Fatalf("image value %v outside [0,1]", v)
		}
	}
}

func TestDeterministicAcrossWorkers(t *testing.T) {
	ds := &fake{n: 23, w: 24, h: 18}
	var runs [][]*Batch
	for _, workers := range []int{1, 2, 5} {
		l, err := New(ds, Config{BatchSize: 5, Transform: augment, Shuffle: true, Seed: 42, Workers: workers, Prefetch: 3, MaxInstances: 3})
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, collect(t, l, Position{}, 2))
	}
	for r := 1; r < len(runs); r++ {
		if len(runs[r]) != len(runs[0]) {
			t.Fatalf("run %d: %d batches vs %d", r, len(runs[r]), len(runs[0]))
		}
		for i := range runs[0] {
			if !sameBatch(t, runs[0][i], runs[r][i]) {
				t.Fatalf("batch %d differs between worker counts", i)
			}
		}
	}
	// Epochs differ in order and augmentation.
	if slices.Equal(runs[0][0].Indices, runs[0][5].Indices) {
		t.Error("epochs 0 and 1 visit samples in the same order")
	}
	// Another seed gives another order.
	l, _ := New(ds, Config{BatchSize: 5, Transform: augment, Shuffle: true, Seed: 43})
	if other := collect(t, l, Position{}, 1); slices.Equal(other[0].Indices, runs[0][0].Indices) {
		t.Error("seeds 42 and 43 give the same order")
	}
}

func TestResumeExactly(t *testing.T) {
	ds := &fake{n: 17, w: 20, h: 16}
	cfg := Config{BatchSize: 4, Transform: augment, Shuffle: true, Seed: 9, Workers: 3, MaxInstances: 2}
	l, _ := New(ds, cfg)
	full := collect(t, l, Position{}, 3) // 5 batches an epoch
	tests := []Position{{0, 0}, {0, 3}, {1, 0}, {1, 4}, {2, 2}}
	for _, start := range tests {
		l2, _ := New(ds, cfg) // a fresh process
		it := l2.Iterate(start, 0)
		k := start.Epoch*5 + start.Batch
		for ; k < len(full); k++ {
			b, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			if !sameBatch(t, b, full[k]) {
				t.Fatalf("resumed at %+v: batch %+v differs", start, full[k].Position)
			}
		}
		it.Close()
	}
	if _, err := l.Iterate(Position{0, 5}, 1).Next(); err == nil {
		t.Error("a position past the epoch was accepted")
	}
}

func TestSkipBad(t *testing.T) {
	ds := &fake{n: 12, w: 16, h: 12, bad: map[int]bool{2: true, 3: true, 7: true}}
	// Without SkipBad, the first bad sample stops the iteration with its path.
	l, _ := New(ds, Config{BatchSize: 4})
	it := l.Iterate(Position{}, 1)
	var err error
	for err == nil {
		_, err = it.Next()
	}
	it.Close()
	if err == io.EOF || !strings.Contains(err.Error(), "/fake/002.png") {
		t.Fatalf("error %v, want one naming /fake/002.png", err)
	}

	l, _ = New(ds, Config{BatchSize: 4, SkipBad: true, Workers: 3})
	batches := collect(t, l, Position{}, 2)
	if len(batches) != 6 {
		t.Fatalf("%d batches in 2 epochs, want 6", len(batches))
	}
	if batches[0].NumValid != 2 || !slices.Equal(batches[0].Indices, []int{0, 1, 0, 1}) {
		t.Errorf("batch 0: %d valid, indices %v", batches[0].NumValid, batches[0].Indices)
	}
	skips := l.Skipped()
	var got []string
	for _, s := range skips {
		got = append(got, s.Path)
		if s.Err == nil {
			t.Error("skip without its error")
		}
	}
	if !slices.Equal(got, []string{"/fake/002.png", "/fake/003.png", "/fake/007.png"}) {
		t.Errorf("skipped %v", got)
	}
	if st := l.Stats(); st.Skipped != 6 || st.Samples != 18 {
		t.Errorf("stats %+v, want 6 skips (3 a epoch) and 18 samples", st)
	}

	// A batch whose samples are all bad is left out.
	ds = &fake{n: 6, w: 8, h: 8, bad: map[int]bool{2: true, 3: true}}
	l, _ = New(ds, Config{BatchSize: 2, SkipBad: true})
	if b := collect(t, l, Position{}, 1); len(b) != 2 || b[1].Position.Batch != 2 {
		t.Errorf("got %d batches, want 2 (batch 1 all bad)", len(b))
	}
}

func TestMixedSizesIsAnError(t *testing.T) {
	ds := &fake{n: 4, w: 8, h: 8, sizeOf: func(i int) (int, int) { return 8 + i, 8 }}
	l, _ := New(ds, Config{BatchSize: 4})
	var err error
	for _, e := range l.Epoch(0) {
		err = e
	}
	if err == nil || !strings.Contains(err.Error(), "Transform") {
		t.Errorf("error %v, want one asking for a Transform", err)
	}
	if _, err := New(ds, Config{}); err == nil {
		t.Error("BatchSize 0 accepted")
	}
	var empty fake
	if _, err := New(&empty, Config{BatchSize: 1}); err == nil {
		t.Error("empty dataset accepted")
	}
}

func TestNormalize(t *testing.T) {
	ds := &fake{n: 2, w: 4, h: 4}
	l, _ := New(ds, Config{BatchSize: 2, Normalize: &transforms.ImageNetNorm})
	b := collect(t, l, Position{}, 1)[0]
	v := flat(t, b.Images).([]float32)
	s, _ := ds.Get(0)
	want := (float32(s.Image.Pix[0])/255 - 0.485) / 0.229
	if d := v[0] - want; d > 1e-5 || d < -1e-5 {
		t.Errorf("normalized %v, want %v", v[0], want)
	}
}

// Feed hands the training loop the picked tensors of the batches Next gives, in order.
func TestFeed(t *testing.T) {
	ds := &fake{n: 10, w: 20, h: 14}
	l, err := New(ds, Config{BatchSize: 4, Transform: augment, Shuffle: true, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	direct, fed := l.IterateFrom(2), l.IterateFrom(2)
	defer direct.Close()
	defer fed.Close()
	next := fed.Feed(ImagesAndMasks)
	for i := range 3 {
		want, err := direct.Next()
		if err != nil {
			t.Fatal(err)
		}
		got, err := next()
		if err != nil || len(got) != 3 {
			t.Fatalf("batch %d: %d tensors, %v", i, len(got), err)
		}
		for j, w := range []*tensors.Tensor{want.Images, want.Semantic, want.Valid} {
			if !got[j].Equal(w) {
				t.Errorf("batch %d, input %d differs from Next's", i, j)
			}
		}
	}
	if got := ImagesOnly(&Batch{Images: tensors.FromValue([]float32{1})}); len(got) != 1 {
		t.Errorf("ImagesOnly gave %d tensors", len(got))
	}
}
