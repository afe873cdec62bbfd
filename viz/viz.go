// Package viz draws the pictures the experiments write: grids of samples, the first three PCA
// components of feature maps (teacher beside student), and coloured segmentation overlays.
package viz

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"sort"

	"gonum.org/v1/gonum/mat"
)

// Image is a float image [H, W, C] (C = 1 or 3) stored row-major.
type Image struct {
	H, W, C int
	Pix     []float32
}

// ToRGBA converts an image with values in [lo, hi] to 8-bit RGBA (grey if C = 1).
func (im Image) ToRGBA(lo, hi float32) *image.RGBA {
	out := image.NewRGBA(image.Rect(0, 0, im.W, im.H))
	scale := 255 / (hi - lo)
	for y := range im.H {
		for x := range im.W {
			var c [3]uint8
			for k := range 3 {
				v := im.Pix[(y*im.W+x)*im.C+min(k, im.C-1)]
				c[k] = uint8(math.Round(float64(clamp((v-lo)*scale, 0, 255))))
			}
			out.SetRGBA(x, y, color.RGBA{c[0], c[1], c[2], 255})
		}
	}
	return out
}

func clamp(v, lo, hi float32) float32 { return max(lo, min(hi, v)) }

// SplitBatch splits a batch [N, H, W, C] (flat) into images.
func SplitBatch(flat []float32, n, h, w, c int) []Image {
	out := make([]Image, n)
	for i := range n {
		out[i] = Image{H: h, W: w, C: c, Pix: flat[i*h*w*c : (i+1)*h*w*c]}
	}
	return out
}

// Grid tiles images (all the same size) in rows of cols, with a pad-pixel white border.
func Grid(images []image.Image, cols, pad int) *image.RGBA {
	if len(images) == 0 {
		return image.NewRGBA(image.Rect(0, 0, 1, 1))
	}
	b := images[0].Bounds()
	cw, ch := b.Dx()+pad, b.Dy()+pad
	rows := (len(images) + cols - 1) / cols
	out := image.NewRGBA(image.Rect(0, 0, cols*cw+pad, rows*ch+pad))
	draw.Draw(out, out.Bounds(), image.White, image.Point{}, draw.Src)
	for i, im := range images {
		x, y := pad+(i%cols)*cw, pad+(i/cols)*ch
		draw.Draw(out, image.Rect(x, y, x+b.Dx(), y+b.Dy()), im, im.Bounds().Min, draw.Src)
	}
	return out
}

// Upscale enlarges an image by an integer factor (nearest), so small feature maps stay visible.
func Upscale(im image.Image, factor int) *image.RGBA {
	b := im.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, b.Dx()*factor, b.Dy()*factor))
	for y := range b.Dy() * factor {
		for x := range b.Dx() * factor {
			out.Set(x, y, im.At(b.Min.X+x/factor, b.Min.Y+y/factor))
		}
	}
	return out
}

// Resize scales an image to w x h (nearest neighbour).
func Resize(im image.Image, w, h int) *image.RGBA {
	b := im.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			out.Set(x, y, im.At(b.Min.X+x*b.Dx()/w, b.Min.Y+y*b.Dy()/h))
		}
	}
	return out
}

// SavePNG writes img to path atomically, creating the folder.
func SavePNG(path string, img image.Image) (err error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a folder, not a PNG file", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = png.Encode(f, img); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// PCA is a projection of C-dimensional features onto their first three principal components,
// with per-component ranges (1st..99th percentile) mapped to [0, 1].
type PCA struct {
	Mean       []float64
	Components [3][]float64
	Lo, Hi     [3]float64
}

// FitPCA fits the projection on the pixels of feature maps (each [H, W, C] flat, same C),
// using at most maxPixels evenly spaced pixels.
func FitPCA(maps []Image, maxPixels int) (*PCA, error) {
	if len(maps) == 0 {
		return nil, fmt.Errorf("FitPCA: no feature maps")
	}
	c := maps[0].C
	var rows [][]float32
	total := 0
	for _, m := range maps {
		total += m.H * m.W
	}
	step := max(1, total/max(maxPixels, 1))
	i := 0
	for _, m := range maps {
		if m.C != c {
			return nil, fmt.Errorf("FitPCA: maps with %d and %d channels", c, m.C)
		}
		for p := range m.H * m.W {
			if i%step == 0 {
				rows = append(rows, m.Pix[p*c:(p+1)*c])
			}
			i++
		}
	}
	n := len(rows)
	mean := make([]float64, c)
	for _, r := range rows {
		for k, v := range r {
			mean[k] += float64(v)
		}
	}
	for k := range mean {
		mean[k] /= float64(n)
	}
	cov := mat.NewSymDense(c, nil)
	centred := make([]float64, c)
	for _, r := range rows {
		for k, v := range r {
			centred[k] = float64(v) - mean[k]
		}
		cov.SymRankOne(cov, 1/float64(n), mat.NewVecDense(c, centred))
	}
	var eig mat.EigenSym
	if !eig.Factorize(cov, true) {
		return nil, fmt.Errorf("FitPCA: eigen-decomposition failed")
	}
	values := eig.Values(nil)
	var vecs mat.Dense
	eig.VectorsTo(&vecs)
	order := make([]int, c)
	for k := range order {
		order[k] = k
	}
	sort.Slice(order, func(a, b int) bool { return values[order[a]] > values[order[b]] })
	p := &PCA{Mean: mean}
	for j := range 3 {
		p.Components[j] = make([]float64, c)
		if j < c {
			for k := range c {
				p.Components[j][k] = vecs.At(k, order[j])
			}
		}
	}
	// Value ranges from the fitting pixels.
	proj := make([][]float64, 3)
	for _, r := range rows {
		v := p.project(r)
		for j := range 3 {
			proj[j] = append(proj[j], v[j])
		}
	}
	for j := range 3 {
		sort.Float64s(proj[j])
		p.Lo[j] = proj[j][len(proj[j])/100]
		p.Hi[j] = proj[j][len(proj[j])-1-len(proj[j])/100]
	}
	return p, nil
}

func (p *PCA) project(x []float32) [3]float64 {
	var out [3]float64
	for j := range 3 {
		s := 0.0
		for k, v := range x {
			s += (float64(v) - p.Mean[k]) * p.Components[j][k]
		}
		out[j] = s
	}
	return out
}

// Apply maps a feature map [H, W, C] to an RGB image in [0, 1].
func (p *PCA) Apply(m Image) Image {
	out := Image{H: m.H, W: m.W, C: 3, Pix: make([]float32, m.H*m.W*3)}
	for i := range m.H * m.W {
		v := p.project(m.Pix[i*m.C : (i+1)*m.C])
		for j := range 3 {
			r := p.Hi[j] - p.Lo[j]
			if r <= 0 {
				r = 1
			}
			out.Pix[i*3+j] = float32((v[j] - p.Lo[j]) / r)
		}
	}
	return out
}

// Palette returns n distinct, deterministic colours (golden-ratio hues); index 255 (ignore) is
// black.
func Palette(n int) []color.RGBA {
	out := make([]color.RGBA, n)
	for i := range n {
		h := math.Mod(float64(i)*0.618033988749895, 1)
		s, v := 0.65+0.35*float64(i%2), 0.95-0.3*float64((i/2)%2)
		out[i] = hsv(h, s, v)
	}
	return out
}

func hsv(h, s, v float64) color.RGBA {
	i := math.Floor(h * 6)
	f := h*6 - i
	p, q, t := v*(1-s), v*(1-f*s), v*(1-(1-f)*s)
	var r, g, b float64
	switch int(i) % 6 {
	case 0:
		r, g, b = v, t, p
	case 1:
		r, g, b = q, v, p
	case 2:
		r, g, b = p, v, t
	case 3:
		r, g, b = p, q, v
	case 4:
		r, g, b = t, p, v
	default:
		r, g, b = v, p, q
	}
	return color.RGBA{uint8(r * 255), uint8(g * 255), uint8(b * 255), 255}
}

// Overlay blends the colours of a label map (H*W class indices, 255 = ignore, left uncoloured)
// over an image with the given opacity.
func Overlay(img image.Image, labels []int32, w, h int, palette []color.RGBA, alpha float64) *image.RGBA {
	base := Resize(img, w, h)
	for y := range h {
		for x := range w {
			l := labels[y*w+x]
			if l < 0 || int(l) >= len(palette) {
				continue
			}
			c := base.RGBAAt(x, y)
			p := palette[l]
			mix := func(a, b uint8) uint8 { return uint8(float64(a)*(1-alpha) + float64(b)*alpha) }
			base.SetRGBA(x, y, color.RGBA{mix(c.R, p.R), mix(c.G, p.G), mix(c.B, p.B), 255})
		}
	}
	return base
}

// Colorize paints a label map with the palette (ignore = black).
func Colorize(labels []int32, w, h int, palette []color.RGBA) *image.RGBA {
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			l := labels[y*w+x]
			c := color.RGBA{0, 0, 0, 255}
			if l >= 0 && int(l) < len(palette) {
				c = palette[l]
			}
			out.SetRGBA(x, y, c)
		}
	}
	return out
}
