package datasets

import (
	"bufio"
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
)

// EncodeJPEG encodes m as a JPEG of the given quality (1..100).
func EncodeJPEG(m Image, quality int) ([]byte, error) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, m.ToRGBA(), &jpeg.Options{Quality: quality}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// EncodeLabelPNG encodes an HxW label mask as an 8-bit grayscale PNG.
func EncodeLabelPNG(pix []uint8, w, h int) ([]byte, error) {
	if len(pix) != w*h {
		return nil, fmt.Errorf("label mask has %d values for %dx%d", len(pix), w, h)
	}
	g := &image.Gray{Pix: pix, Stride: w, Rect: image.Rect(0, 0, w, h)}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, g); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteFile writes data to path, creating its folder.
func WriteFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// WriteJPEG writes m to path as a JPEG.
func WriteJPEG(path string, m Image, quality int) error {
	data, err := EncodeJPEG(m, quality)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return WriteFile(path, data)
}

// WritePNG writes m to path as an RGB PNG.
func WritePNG(path string, m Image) error {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	if err := png.Encode(w, m.ToRGBA()); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	w.Flush()
	return WriteFile(path, buf.Bytes())
}

// WriteLabelPNG writes an HxW label mask to path as an 8-bit grayscale PNG.
func WriteLabelPNG(path string, pix []uint8, w, h int) error {
	data, err := EncodeLabelPNG(pix, w, h)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return WriteFile(path, data)
}
