package semseg

import (
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
)

// LabelFile is one ground-truth label map: its prediction is the file Name + ".png" in the
// predictions folder (mmseg names saved predictions after the image's base name).
type LabelFile struct {
	Name string // base name shared by the prediction, without extension
	Path string // the label PNG
}

// LabelFilesInDir lists the label PNGs of dir whose names end with suffix (".png" when
// empty), sorted, each named by its file name without the suffix. For Cityscapes-style
// labels pass e.g. "_gtFine_labelTrainIds.png".
func LabelFilesInDir(dir, suffix string) ([]LabelFile, error) {
	if suffix == "" {
		suffix = ".png"
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []LabelFile
	for _, ent := range entries {
		name := ent.Name()
		if ent.IsDir() || !strings.HasSuffix(name, suffix) {
			continue
		}
		out = append(out, LabelFile{Name: strings.TrimSuffix(name, suffix), Path: filepath.Join(dir, name)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no label files ending in %q", dir, suffix)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Options configure EvaluateFolders. Start from DefaultOptions: the zero IgnoreIndex would
// ignore class 0.
type Options struct {
	NumClasses  int
	IgnoreIndex int // label of pixels left out: 255 for most datasets, 11 for CamVid
	// ReduceZeroLabel applies mmseg's reduce_zero_label to the labels (ADE20K): 0 -> 255,
	// others -1. Predictions are always class indices in [0, NumClasses).
	ReduceZeroLabel bool
}

// DefaultOptions evaluate numClasses classes ignoring label 255, without reduce_zero_label.
func DefaultOptions(numClasses int) Options {
	return Options{NumClasses: numClasses, IgnoreIndex: DefaultIgnoreIndex}
}

// EvaluateFolders compares, for every label file, the prediction PNG of the same name in
// predDir with the label PNG, and returns the metrics over all of them. Masks are
// single-channel PNGs (8- or 16-bit grey, or palette images, whose indices are the classes).
// Errors name the file: a missing or unreadable prediction, a size that differs from its
// label's (naming both), or a value out of range.
func EvaluateFolders(predDir string, labels []LabelFile, opts Options) (Result, error) {
	if len(labels) == 0 {
		return Result{}, fmt.Errorf("semseg: no label files to evaluate against %s", predDir)
	}
	workers := min(runtime.GOMAXPROCS(0), len(labels))
	evals := make([]*Evaluator, workers)
	errs := make([]error, len(labels))
	var wg sync.WaitGroup
	for w := range workers {
		evals[w] = New(opts.NumClasses, opts.IgnoreIndex)
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(labels); i += workers {
				errs[i] = evalPair(evals[w], filepath.Join(predDir, labels[i].Name+".png"), labels[i].Path, opts)
			}
		}(w)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return Result{}, err // the first failing file in label order
		}
	}
	for _, e := range evals[1:] {
		evals[0].Merge(e)
	}
	return evals[0].Evaluate(), nil
}

func evalPair(e *Evaluator, predPath, labelPath string, opts Options) error {
	pred, pw, ph, err := ReadMask(predPath)
	if err != nil {
		return fmt.Errorf("prediction for %s: %w", labelPath, err)
	}
	label, lw, lh, err := ReadMask(labelPath)
	if err != nil {
		return err
	}
	if pw != lw || ph != lh {
		return fmt.Errorf("prediction %s is %dx%d but label %s is %dx%d", predPath, pw, ph, labelPath, lw, lh)
	}
	if opts.ReduceZeroLabel {
		ReduceZeroLabel(label)
	}
	if err := e.Process(pred, label); err != nil {
		return fmt.Errorf("prediction %s, label %s: %w", predPath, labelPath, err)
	}
	return nil
}

// ReadMask reads a single-channel label PNG (8- or 16-bit grey, or palette indices) as
// row-major values with its width and height.
func ReadMask(path string) (values []int32, width, height int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, 0, err
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	b := img.Bounds()
	width, height = b.Dx(), b.Dy()
	values = make([]int32, 0, width*height)
	switch m := img.(type) {
	case *image.Gray:
		for y := range height {
			for _, v := range m.Pix[y*m.Stride : y*m.Stride+width] {
				values = append(values, int32(v))
			}
		}
	case *image.Paletted:
		for y := range height {
			for _, v := range m.Pix[y*m.Stride : y*m.Stride+width] {
				values = append(values, int32(v))
			}
		}
	case *image.Gray16:
		for y := range height {
			row := m.Pix[y*m.Stride : y*m.Stride+2*width]
			for x := range width {
				values = append(values, int32(row[2*x])<<8|int32(row[2*x+1]))
			}
		}
	default:
		return nil, 0, 0, fmt.Errorf("%s: a label map must be a single-channel (grey or palette) PNG, this one decodes as %T", path, img)
	}
	return values, width, height, nil
}

// WriteMask writes class indices (0..255) as an 8-bit grey PNG, the format EvaluateFolders
// reads predictions in.
func WriteMask(path string, values []int32, width, height int) error {
	if len(values) != width*height {
		return fmt.Errorf("%s: %d values for a %dx%d mask", path, len(values), width, height)
	}
	img := image.NewGray(image.Rect(0, 0, width, height))
	for i, v := range values {
		if v < 0 || v > 255 {
			return fmt.Errorf("%s: value %d at pixel %d does not fit in 8 bits", path, v, i)
		}
		img.Pix[i] = uint8(v)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}
