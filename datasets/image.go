package datasets

import (
	"bufio"
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"os"
)

// Image is an 8-bit RGB image, row-major and interleaved: pixel (x, y) channel c is
// Pix[(y*W+x)*3+c].
type Image struct {
	W, H int
	Pix  []uint8
}

// NewImage allocates a black w x h image.
func NewImage(w, h int) Image { return Image{W: w, H: h, Pix: make([]uint8, 3*w*h)} }

// At returns the RGB values of pixel (x, y).
func (m Image) At(x, y int) (r, g, b uint8) {
	i := (y*m.W + x) * 3
	return m.Pix[i], m.Pix[i+1], m.Pix[i+2]
}

// ToRGBA converts to a standard library image, for encoding or drawing.
func (m Image) ToRGBA() *image.RGBA {
	out := image.NewRGBA(image.Rect(0, 0, m.W, m.H))
	for i, j := 0, 0; i < len(m.Pix); i, j = i+3, j+4 {
		out.Pix[j], out.Pix[j+1], out.Pix[j+2], out.Pix[j+3] = m.Pix[i], m.Pix[i+1], m.Pix[i+2], 255
	}
	return out
}

// ReadImage decodes the image file at path (JPEG or PNG, whatever its extension says) to RGB.
// Errors name the file.
func ReadImage(path string) (Image, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Image{}, err // *PathError names the file
	}
	m, err := DecodeImage(data)
	if err != nil {
		return Image{}, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// DecodeImage decodes JPEG or PNG bytes to RGB.
func DecodeImage(data []byte) (Image, error) {
	var (
		img image.Image
		err error
	)
	switch {
	case len(data) >= 2 && data[0] == 0xff && data[1] == 0xd8:
		img, err = jpeg.Decode(bytes.NewReader(data))
	case len(data) >= 8 && string(data[:8]) == "\x89PNG\r\n\x1a\n":
		img, err = png.Decode(bytes.NewReader(data))
	default:
		return Image{}, fmt.Errorf("not a JPEG or PNG image (%d bytes)", len(data))
	}
	if err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return Image{}, fmt.Errorf("truncated image: %w", err)
		}
		return Image{}, err
	}
	return FromImage(img), nil
}

// FromImage converts any standard library image to RGB, with fast paths for the types the
// JPEG and PNG decoders return.
func FromImage(img image.Image) Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := NewImage(w, h)
	switch m := img.(type) {
	case *image.YCbCr:
		ycbcrToRGB(m, out)
	case *image.RGBA:
		for y := 0; y < h; y++ {
			src := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			dst := out.Pix[y*w*3 : (y+1)*w*3]
			for x, j := 0, 0; j < len(dst); x, j = x+4, j+3 {
				dst[j], dst[j+1], dst[j+2] = src[x], src[x+1], src[x+2]
			}
		}
	case *image.NRGBA: // alpha is dropped, as PIL's convert("RGB") does
		for y := 0; y < h; y++ {
			src := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			dst := out.Pix[y*w*3 : (y+1)*w*3]
			for x, j := 0, 0; j < len(dst); x, j = x+4, j+3 {
				dst[j], dst[j+1], dst[j+2] = src[x], src[x+1], src[x+2]
			}
		}
	case *image.Gray:
		for y := 0; y < h; y++ {
			src := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			dst := out.Pix[y*w*3 : (y+1)*w*3]
			for x, j := 0, 0; j < len(dst); x, j = x+1, j+3 {
				v := src[x]
				dst[j], dst[j+1], dst[j+2] = v, v, v
			}
		}
	case *image.Paletted:
		pal := make([][3]uint8, len(m.Palette))
		for i, c := range m.Palette {
			r, g, bb, _ := c.RGBA()
			pal[i] = [3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(bb >> 8)}
		}
		for y := 0; y < h; y++ {
			src := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			dst := out.Pix[y*w*3 : (y+1)*w*3]
			for x, j := 0, 0; j < len(dst); x, j = x+1, j+3 {
				var c [3]uint8
				if int(src[x]) < len(pal) {
					c = pal[src[x]]
				}
				dst[j], dst[j+1], dst[j+2] = c[0], c[1], c[2]
			}
		}
	default:
		j := 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
				out.Pix[j], out.Pix[j+1], out.Pix[j+2] = c.R, c.G, c.B
				j += 3
			}
		}
	}
	return out
}

// ycbcrToRGB converts with the standard library's integer arithmetic (color.YCbCrToRGB),
// row by row, for every chroma subsampling the JPEG decoder produces.
func ycbcrToRGB(m *image.YCbCr, out Image) {
	b := m.Rect
	var hs, vs int // chroma shifts
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio444:
	case image.YCbCrSubsampleRatio422:
		hs = 1
	case image.YCbCrSubsampleRatio420:
		hs, vs = 1, 1
	case image.YCbCrSubsampleRatio440:
		vs = 1
	case image.YCbCrSubsampleRatio411:
		hs = 2
	case image.YCbCrSubsampleRatio410:
		hs, vs = 2, 1
	default:
		hs = -1
	}
	if hs < 0 || b.Min.X != 0 || b.Min.Y != 0 {
		j := 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := m.YCbCrAt(x, y)
				out.Pix[j], out.Pix[j+1], out.Pix[j+2] = color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
				j += 3
			}
		}
		return
	}
	w := out.W
	for y := 0; y < out.H; y++ {
		yrow := m.Y[y*m.YStride : y*m.YStride+w]
		crow := (y >> vs) * m.CStride
		cb := m.Cb[crow:]
		cr := m.Cr[crow:]
		dst := out.Pix[y*w*3 : (y+1)*w*3]
		for x := range yrow {
			yy1 := int32(yrow[x]) * 0x10101
			cb1 := int32(cb[x>>hs]) - 128
			cr1 := int32(cr[x>>hs]) - 128
			r := yy1 + 91881*cr1
			if uint32(r)&0xff000000 == 0 {
				r >>= 16
			} else {
				r = ^(r >> 31)
			}
			g := yy1 - 22554*cb1 - 46802*cr1
			if uint32(g)&0xff000000 == 0 {
				g >>= 16
			} else {
				g = ^(g >> 31)
			}
			bb := yy1 + 116130*cb1
			if uint32(bb)&0xff000000 == 0 {
				bb >>= 16
			} else {
				bb = ^(bb >> 31)
			}
			dst[3*x], dst[3*x+1], dst[3*x+2] = uint8(r), uint8(g), uint8(bb)
		}
	}
}

// ReadLabelPNG decodes a label PNG at path: 8-bit grayscale values, or the palette indices of
// a paletted PNG (VOC style), row-major HxW. Other PNG types are an error naming the file.
func ReadLabelPNG(path string) (pix []uint8, w, h int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, 0, err
	}
	defer f.Close()
	img, err := png.Decode(bufio.NewReader(f))
	if err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = fmt.Errorf("truncated PNG: %w", err)
		}
		return nil, 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	var src []uint8
	var stride int
	b := img.Bounds()
	switch m := img.(type) {
	case *image.Gray:
		src, stride = m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride
	case *image.Paletted:
		src, stride = m.Pix[m.PixOffset(b.Min.X, b.Min.Y):], m.Stride
	default:
		return nil, 0, 0, fmt.Errorf("%s: label PNG must be 8-bit grayscale or paletted, got %T", path, img)
	}
	w, h = b.Dx(), b.Dy()
	pix = make([]uint8, w*h)
	for y := 0; y < h; y++ {
		copy(pix[y*w:(y+1)*w], src[y*stride:y*stride+w])
	}
	return pix, w, h, nil
}

// ReadRGBAPNG decodes a PNG at path to 8-bit RGBA bytes, row-major (BDD100K bitmasks).
func ReadRGBAPNG(path string) (pix []uint8, w, h int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, 0, err
	}
	defer f.Close()
	img, err := png.Decode(bufio.NewReader(f))
	if err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = fmt.Errorf("truncated PNG: %w", err)
		}
		return nil, 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	b := img.Bounds()
	w, h = b.Dx(), b.Dy()
	pix = make([]uint8, 4*w*h)
	switch m := img.(type) {
	case *image.NRGBA: // stored values, not premultiplied: what the bitmask format means
		for y := 0; y < h; y++ {
			copy(pix[4*y*w:4*(y+1)*w], m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):])
		}
	case *image.RGBA: // fully opaque images decode to RGBA
		for y := 0; y < h; y++ {
			copy(pix[4*y*w:4*(y+1)*w], m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):])
		}
	default:
		return nil, 0, 0, fmt.Errorf("%s: expected an 8-bit RGBA PNG, got %T", path, img)
	}
	return pix, w, h, nil
}

// CheckSize returns an error naming both files when a mask's size differs from its image's.
func CheckSize(imagePath string, img Image, maskPath string, w, h int) error {
	if img.W != w || img.H != h {
		return fmt.Errorf("%s: mask is %dx%d but its image %s is %dx%d", maskPath, w, h, imagePath, img.W, img.H)
	}
	return nil
}
