package datasets_test

import (
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/internal/fixture"
)

func TestRegistry(t *testing.T) {
	datasets.Register("test-registry", func(root, split string, opts datasets.Options) (datasets.Dataset, error) {
		return nil, os.ErrNotExist
	})
	_, err := datasets.Open("no-such-dataset", "/x", "train", datasets.Options{})
	if err == nil || !strings.Contains(err.Error(), "test-registry") || !strings.Contains(err.Error(), "no-such-dataset") {
		t.Errorf("unknown name: %v, want the known names listed", err)
	}
	if _, err := datasets.Open("test-registry", "/x", "train", datasets.Options{}); err != os.ErrNotExist {
		t.Errorf("Open did not return the loader's error: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("registering a name twice did not panic")
		}
	}()
	datasets.Register("test-registry", nil)
}

// Every chroma subsampling converts exactly as the standard library's color conversion.
func TestYCbCrConversion(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, ratio := range []image.YCbCrSubsampleRatio{image.YCbCrSubsampleRatio444, image.YCbCrSubsampleRatio422,
		image.YCbCrSubsampleRatio420, image.YCbCrSubsampleRatio440, image.YCbCrSubsampleRatio411, image.YCbCrSubsampleRatio410} {
		m := image.NewYCbCr(image.Rect(0, 0, 37, 23), ratio)
		for _, p := range [][]uint8{m.Y, m.Cb, m.Cr} {
			for i := range p {
				p[i] = uint8(rng.IntN(256))
			}
		}
		got := datasets.FromImage(m)
		for y := 0; y < 23; y++ {
			for x := 0; x < 37; x++ {
				c := m.YCbCrAt(x, y)
				r, g, b := color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
				gr, gg, gb := got.At(x, y)
				if r != gr || g != gg || b != gb {
					t.Fatalf("%v: pixel (%d,%d) = %d,%d,%d, want %d,%d,%d", ratio, x, y, gr, gg, gb, r, g, b)
				}
			}
		}
	}
}

func TestReadImageFormats(t *testing.T) {
	dir := t.TempDir()
	want := fixture.Image(9, 7, 3)
	tests := []struct {
		name  string
		write func(path string) error
		exact bool
	}{
		{"rgb.png", func(p string) error { return datasets.WritePNG(p, want) }, true},
		{"gray.png", func(p string) error {
			g := image.NewGray(image.Rect(0, 0, 9, 7))
			for i := range g.Pix {
				g.Pix[i] = want.Pix[3*i]
			}
			return writePNG(p, g)
		}, false},
		{"paletted.png", func(p string) error {
			m := image.NewPaletted(image.Rect(0, 0, 9, 7), color.Palette{color.RGBA{1, 2, 3, 255}, color.RGBA{200, 100, 50, 255}})
			m.Pix[5] = 1
			return writePNG(p, m)
		}, false},
		{"rgba.png", func(p string) error { return writePNG(p, want.ToRGBA()) }, true},
		{"photo.jpg", func(p string) error { return datasets.WriteJPEG(p, want, 100) }, false},
		{"png-named.jpg", func(p string) error { return datasets.WritePNG(p, want) }, true},
	}
	for _, tc := range tests {
		p := filepath.Join(dir, tc.name)
		if err := tc.write(p); err != nil {
			t.Fatal(err)
		}
		got, err := datasets.ReadImage(p)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got.W != 9 || got.H != 7 || len(got.Pix) != 9*7*3 {
			t.Fatalf("%s: %dx%d with %d values", tc.name, got.W, got.H, len(got.Pix))
		}
		if tc.exact && string(got.Pix) != string(want.Pix) {
			t.Errorf("%s: pixels differ", tc.name)
		}
	}
	if r, g, b := mustRead(t, filepath.Join(dir, "paletted.png")).At(5, 0); r != 200 || g != 100 || b != 50 {
		t.Errorf("paletted pixel = %d,%d,%d, want 200,100,50", r, g, b)
	}
}

func mustRead(t *testing.T, p string) datasets.Image {
	m, err := datasets.ReadImage(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func writePNG(path string, m image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return png.Encode(f, m)
}

func TestBadFilesNameThePath(t *testing.T) {
	dir := t.TempDir()
	trunc := filepath.Join(dir, "truncated.jpg")
	fixture.JPEG(t, trunc, 64, 48, 1)
	fixture.Truncate(t, trunc)
	truncPNG := filepath.Join(dir, "truncated.png")
	fixture.Label(t, truncPNG, fixture.Fill(64, 48, 3), 64, 48)
	fixture.Truncate(t, truncPNG)
	text := filepath.Join(dir, "notes.jpg")
	fixture.Write(t, text, []byte("not an image"))
	rgbLabel := filepath.Join(dir, "rgb-label.png")
	fixture.PNG(t, rgbLabel, 4, 4, 1)
	tests := []struct {
		name string
		path string
		read func(string) error
	}{
		{"missing image", filepath.Join(dir, "missing.jpg"), func(p string) error { _, err := datasets.ReadImage(p); return err }},
		{"truncated JPEG", trunc, func(p string) error { _, err := datasets.ReadImage(p); return err }},
		{"not an image", text, func(p string) error { _, err := datasets.ReadImage(p); return err }},
		{"truncated label PNG", truncPNG, func(p string) error { _, _, _, err := datasets.ReadLabelPNG(p); return err }},
		{"RGB label PNG", rgbLabel, func(p string) error { _, _, _, err := datasets.ReadLabelPNG(p); return err }},
		{"missing folder", filepath.Join(dir, "nope"), func(p string) error { _, err := datasets.ListFiles(p, datasets.ImageExts, "images"); return err }},
	}
	for _, tc := range tests {
		err := tc.read(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.path)
		}
	}
}

func TestSegPairs(t *testing.T) {
	dir := t.TempDir()
	img, lab := filepath.Join(dir, "a.jpg"), filepath.Join(dir, "a.png")
	fixture.JPEG(t, img, 8, 6, 1)
	mask := fixture.Fill(8, 6, 2)
	mask[0], mask[1] = 255, 0
	fixture.Label(t, lab, mask, 8, 6)
	ds := &datasets.SegPairs{DatasetName: "t", Pairs: [][2]string{{img, lab}}, Labels: datasets.IdentityLabels(3, 255)}
	s, err := ds.Get(0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Semantic[0] != 255 || s.Semantic[1] != 0 || s.Semantic[2] != 2 || s.Label != -1 {
		t.Errorf("semantic %v, label %d", s.Semantic[:3], s.Label)
	}
	ds.Labels = datasets.IdentityLabels(2, 255) // value 2 is now invalid
	if _, err := ds.Get(0); err == nil || !strings.Contains(err.Error(), lab) {
		t.Errorf("invalid label value: %v, want an error naming %s", err, lab)
	}
	small := filepath.Join(dir, "small.png")
	fixture.Label(t, small, fixture.Fill(4, 6, 0), 4, 6)
	ds.Pairs = [][2]string{{img, small}}
	if _, err := ds.Get(0); err == nil || !strings.Contains(err.Error(), small) || !strings.Contains(err.Error(), "4x6") {
		t.Errorf("mask size mismatch: %v", err)
	}
}

func TestListing(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"b.JPG", "a.png", "sub/c.jpeg", ".hidden/d.jpg", "e.txt", ".f.jpg"} {
		fixture.Write(t, filepath.Join(dir, p), []byte{0})
	}
	flat, err := datasets.ListFiles(dir, datasets.ImageExts, "images")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := datasets.WalkFiles(dir, datasets.ImageExts, "images")
	if err != nil {
		t.Fatal(err)
	}
	rel := func(ps []string) string {
		var out []string
		for _, p := range ps {
			r, _ := filepath.Rel(dir, p)
			out = append(out, r)
		}
		return strings.Join(out, ",")
	}
	if got := rel(flat); got != "a.png,b.JPG" {
		t.Errorf("ListFiles: %s", got)
	}
	if got := rel(rec); got != "a.png,b.JPG,sub/c.jpeg" {
		t.Errorf("WalkFiles: %s", got)
	}
	_, err = datasets.PairByStem([]string{"/i/a.jpg", "/i/b.jpg"}, []string{"/m/a.png"}, "/m", ".png")
	if err == nil || !strings.Contains(err.Error(), "/m/b.png") {
		t.Errorf("unpaired image: %v, want the missing annotation named", err)
	}
}
