package viz

import (
	"image"
	"image/color"
	"math"
	"path/filepath"
	"testing"
)

func TestPCAFindsTheMainDirection(t *testing.T) {
	// Features vary along (1, 1, 0, 0)/sqrt2 with a large variance and along the 3rd axis a little.
	m := Image{H: 4, W: 8, C: 4, Pix: make([]float32, 4*8*4)}
	for i := range 32 {
		a := float32(i) - 16
		b := float32(i%3) - 1
		copy(m.Pix[i*4:], []float32{a, a, 0.1 * b, 0})
	}
	p, err := FitPCA([]Image{m}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Components[0]
	if math.Abs(math.Abs(c[0])-1/math.Sqrt2) > 1e-6 || math.Abs(math.Abs(c[1])-1/math.Sqrt2) > 1e-6 {
		t.Errorf("first component %v, want ±(0.707, 0.707, 0, 0)", c)
	}
	if math.Abs(math.Abs(p.Components[1][2])-1) > 1e-6 {
		t.Errorf("second component %v, want ±e3", p.Components[1])
	}
	rgb := p.Apply(m)
	if rgb.C != 3 || len(rgb.Pix) != 32*3 {
		t.Fatalf("projected image %dx%dx%d", rgb.H, rgb.W, rgb.C)
	}
}

func TestGridOverlayAndSave(t *testing.T) {
	red := image.NewRGBA(image.Rect(0, 0, 2, 2))
	for i := range 4 {
		red.SetRGBA(i%2, i/2, color.RGBA{255, 0, 0, 255})
	}
	g := Grid([]image.Image{red, red, red}, 2, 1)
	if g.Bounds().Dx() != 7 || g.Bounds().Dy() != 7 {
		t.Errorf("grid size %v", g.Bounds())
	}
	labels := []int32{0, 1, 255, 1}
	o := Overlay(red, labels, 2, 2, Palette(2), 1)
	if o.RGBAAt(0, 1) != (color.RGBA{255, 0, 0, 255}) {
		t.Errorf("ignored pixel recoloured: %v", o.RGBAAt(0, 1))
	}
	if o.RGBAAt(0, 0) != Palette(2)[0] {
		t.Errorf("overlay with alpha 1 is %v, want the palette colour", o.RGBAAt(0, 0))
	}
	if err := SavePNG(filepath.Join(t.TempDir(), "a", "g.png"), g); err != nil {
		t.Fatal(err)
	}
	im := Image{H: 1, W: 2, C: 1, Pix: []float32{-1, 1}}.ToRGBA(-1, 1)
	if im.RGBAAt(0, 0).R != 0 || im.RGBAAt(1, 0).R != 255 {
		t.Errorf("ToRGBA: %v %v", im.RGBAAt(0, 0), im.RGBAAt(1, 0))
	}
}
