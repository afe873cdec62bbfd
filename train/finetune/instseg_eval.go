package finetune

import (
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"io"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sync"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/loader"
	"github.com/dreamteacher-go/dreamteacher/datasets/transforms"
	"github.com/dreamteacher-go/dreamteacher/eval/coco"
	"github.com/dreamteacher-go/dreamteacher/eval/coco/rle"
	"github.com/dreamteacher-go/dreamteacher/models/heads/maskrcnn"
	"github.com/dreamteacher-go/dreamteacher/viz"
	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// detectFn runs a detector on a batch (images padded to the canvas, sizes [N, 2] int32 their
// content's height and width) and returns the valid detections of each slot in input pixels,
// and whether each image overflowed (maskrcnn.Detections.Overflow).
type detectFn func(batch *loader.Batch, sizes *tensors.Tensor) ([]maskrcnn.ImageDetections, []bool, error)

// modelDetector runs Mask R-CNN's inference (DetectSized) with the store's weights.
func modelDetector(b compute.Backend, store *model.Store, setup *instsegSetup) (detectFn, error) {
	exec, err := model.NewExec(b, store, func(scope *model.Scope, images, sizes *Node) []*Node {
		store.SetTraining(images.Graph(), false)
		scope = scope.In("model")
		d := maskrcnn.DetectSized(scope, setup.features(scope, images, sizes), images, sizes, setup.cfg)
		return []*Node{d.Boxes, d.Scores, d.Classes, d.Masks, d.Valid, d.Overflow}
	})
	if err != nil {
		return nil, err
	}
	return func(batch *loader.Batch, sizes *tensors.Tensor) ([]maskrcnn.ImageDetections, []bool, error) {
		out, err := exec.Exec(batch.Images, sizes)
		if err != nil {
			return nil, nil, err
		}
		dets, err := maskrcnn.FetchDetections(out[0], out[1], out[2], out[3], out[4])
		if err != nil {
			return nil, nil, err
		}
		return dets, tensors.MustCopyFlatData[bool](out[5]), nil
	}, nil
}

// evaluateInstseg runs the Mask R-CNN of the store on every image of ds — resized as
// detectron2's test ResizeShortestEdge, padded to the canvas — and computes COCO box and mask
// AP as pycocotools against ds's annotations at their original size (detections are rescaled
// to it, masks pasted and RLE-encoded). It prints pycocotools' summaries to log, writes the
// detections as COCO results json and draws the first `overlays` images with their
// predictions and ground truth into outDir.
func evaluateInstseg(b compute.Backend, store *model.Store, setup *instsegSetup, ds datasets.Dataset,
	workers, overlays int, outDir string, log io.Writer) (InstsegResult, error) {
	detect, err := modelDetector(b, store, setup)
	if err != nil {
		return InstsegResult{}, err
	}
	return evaluateDetector(detect, setup, ds, workers, overlays, outDir, log)
}

// evaluateDetector is evaluateInstseg for any detector.
func evaluateDetector(detect detectFn, setup *instsegSetup, ds datasets.Dataset, workers, overlays int,
	outDir string, log io.Writer) (InstsegResult, error) {
	gt := &coco.Dataset{Source: ds.Name()}
	for k, name := range setup.classes {
		gt.Categories = append(gt.Categories, coco.Category{ID: setup.categoryIDs[k], Name: name})
	}
	var results []coco.Result
	var res InstsegResult
	var drawn []image.Image
	seen := map[int64]bool{}
	_, err := detectDataset(detect, setup, ds, workers, false, func(d imageDetections) error {
		if seen[d.image.ID] {
			return fmt.Errorf("%s: image id %d appears twice in %s", d.path, d.image.ID, ds.Name())
		}
		seen[d.image.ID] = true
		gt.Images = append(gt.Images, d.image)
		for _, a := range d.truth {
			a.ID, a.ImageID = int64(len(gt.Annotations)+1), d.image.ID // pycocotools never matches id 0
			gt.Annotations = append(gt.Annotations, a)
		}
		results = append(results, d.results...)
		if d.overflowed {
			res.Overflowed++
		}
		if len(drawn) < 3*overlays {
			drawn = append(drawn, d.draw()...)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	res.Images, res.Detections = len(gt.Images), len(results)
	if res.Overflowed > 0 {
		fmt.Fprintf(log, "%d of %d images had more candidates than test_candidates=%d: their detections may differ from detectron2's\n",
			res.Overflowed, res.Images, setup.cfg.TestCandidates)
	}

	res.Results = filepath.Join(outDir, "coco_instances_results.json")
	if err := writeJSON(res.Results, results); err != nil {
		return res, err
	}
	ev := coco.NewEvaluator(gt, coco.BBox, coco.Segm)
	ev.Process(results...)
	reports, err := ev.Evaluate()
	if err != nil {
		return res, err
	}
	res.Box, res.Mask = reports[0], reports[1]
	res.APbb, res.APmk = res.Box.Metrics(nil)["AP"], res.Mask.Metrics(nil)["AP"]
	fmt.Fprintf(log, "COCO evaluation of %d detections on %d images of %s:\n%s%s", res.Detections, res.Images, ds.Name(),
		res.Box.Format(), res.Mask.Format())
	if len(drawn) > 0 {
		res.Overlays = filepath.Join(outDir, "predictions.png")
		if err := viz.SavePNG(res.Overlays, viz.Grid(drawn, 3, 2)); err != nil {
			return res, err
		}
	}
	return res, nil
}

// imageDetections are the detections of one image, at its original size.
type imageDetections struct {
	index      int        // in the dataset
	path       string     // the image file
	image      coco.Image // its COCO entry: id (the dataset's, else index+1), file name, original size
	truth      []coco.Annotation
	results    []coco.Result // the detections as COCO results
	overflowed bool          // more candidates than test_candidates (maskrcnn.Detections.Overflow)
	// draw draws the image, its detections scoring at least vis_threshold, and its ground truth.
	draw func() []image.Image
}

// detectDataset runs detect on every image of ds as the run's evaluation feeds them — resized
// as detectron2's test ResizeShortestEdge, padded to the canvas, in batches of eval_batch — and
// calls each with the image's detections rescaled to its original size, in dataset order.
// evaluateDetector and InstsegModel.Predict share it. With skipBad, images that fail to load are
// left out and returned; otherwise the first one stops it with an error naming it.
func detectDataset(detect detectFn, setup *instsegSetup, ds datasets.Dataset, workers int, skipBad bool,
	each func(imageDetections) error) ([]loader.Skip, error) {
	rec := &gtRecorder{categoryIDs: setup.categoryIDs, images: map[string]gtImage{}}
	ld, err := loader.New(ds, loader.Config{BatchSize: setup.evalBatch, Workers: workers, SkipBad: skipBad, Transform: transforms.Compose(
		rec,
		resizeShortestEdge{Sizes: []int{setup.testSize[0]}, MaxSize: setup.testSize[1], Canvas: setup.canvas},
		recordInputSize,
		transforms.Pad{W: setup.canvas[1], H: setup.canvas[0]},
	)})
	if err != nil {
		return nil, err
	}
	palette := viz.Palette(len(setup.classes))
	for batch, err := range ld.Epoch(0) {
		if err != nil {
			return ld.Skipped(), err
		}
		sizes, err := batchSizes(batch)
		if err != nil {
			return ld.Skipped(), err
		}
		dets, overflow, err := detect(batch, sizes)
		if err != nil {
			return ld.Skipped(), err
		}
		if len(dets) != len(batch.Paths) {
			return ld.Skipped(), fmt.Errorf("the detector returned %d images for a batch of %d", len(dets), len(batch.Paths))
		}
		hw := tensors.MustCopyFlatData[int32](sizes)
		for i := range batch.NumValid {
			orig, ok := rec.take(batch.Paths[i])
			if !ok {
				return ld.Skipped(), fmt.Errorf("%s: no ground truth recorded", batch.Paths[i])
			}
			id := datasetImageID(ds, batch.Indices[i])
			info := maskrcnn.ImageInfo{ID: id, Height: orig.height, Width: orig.width, InputHeight: int(hw[2*i]), InputWidth: int(hw[2*i+1])}
			r, err := maskrcnn.COCOResults(dets[i:i+1], []maskrcnn.ImageInfo{info}, setup.categoryIDs, setup.cfg.MaskThreshold)
			if err != nil {
				return ld.Skipped(), fmt.Errorf("%s: %w", batch.Paths[i], err)
			}
			d := imageDetections{index: batch.Indices[i], path: batch.Paths[i], truth: orig.anns, results: r,
				image:      coco.Image{ID: id, FileName: filepath.Base(batch.Paths[i]), Height: orig.height, Width: orig.width},
				overflowed: overflow != nil && overflow[i],
				draw:       func() []image.Image { return drawTriplet(batch, i, info, dets[i], orig, setup, palette) },
			}
			if err := each(d); err != nil {
				return ld.Skipped(), err
			}
		}
	}
	return ld.Skipped(), nil
}

// writeJSON writes v as json to path atomically.
func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := datasets.WriteFile(path, data); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// gtImage is the ground truth of one image at its original size, as COCO annotations
// (ids and image id set when the image is evaluated).
type gtImage struct {
	height, width int
	anns          []coco.Annotation
}

// gtRecorder is the first transform of evaluation: it keeps each image's size and annotations
// before the test-time resize changes them, by image path. Masks are kept as RLE; an instance
// without a mask gets its box as one, its area is the annotated one (or the mask's, or the
// box's, when the dataset gives none), and crowd regions keep iscrowd.
type gtRecorder struct {
	categoryIDs []int64
	mu          sync.Mutex
	images      map[string]gtImage
}

// Apply implements transforms.Transform.
func (r *gtRecorder) Apply(s *datasets.Sample, _ *rand.Rand) error {
	h, w := s.Image.H, s.Image.W
	g := gtImage{height: h, width: w, anns: make([]coco.Annotation, 0, len(s.Instances))}
	for _, inst := range s.Instances {
		if inst.Class < 0 || inst.Class >= len(r.categoryIDs) {
			return fmt.Errorf("%s: annotation %d has class %d, the dataset has %d", s.Path, inst.ID, inst.Class, len(r.categoryIDs))
		}
		b := inst.Box
		bbox := []float64{float64(b[0]), float64(b[1]), float64(b[2] - b[0]), float64(b[3] - b[1])}
		var m rle.RLE
		if inst.Mask != nil {
			m = rle.Encode(inst.Mask, h, w)
		} else {
			m = rle.FrBbox([4]float64(bbox), h, w)
		}
		area := inst.Area
		if area <= 0 {
			area = float64(m.Area())
		}
		crowd := 0
		if inst.IsCrowd {
			crowd = 1
		}
		g.anns = append(g.anns, coco.Annotation{CategoryID: r.categoryIDs[inst.Class], BBox: bbox, Area: area,
			IsCrowd: crowd, Segmentation: coco.SegmentationFromRLE(m)})
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.images[s.Path]; dup {
		return fmt.Errorf("%s: the file appears twice in the split", s.Path)
	}
	r.images[s.Path] = g
	return nil
}

// take returns and forgets the ground truth of an image.
func (r *gtRecorder) take(path string) (gtImage, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g, ok := r.images[path]
	delete(r.images, path)
	return g, ok
}

// drawTriplet draws image i of the batch (the whole canvas), its detections scoring at least
// the setup's vis threshold, and its ground truth (crowd regions left out).
func drawTriplet(batch *loader.Batch, i int, info maskrcnn.ImageInfo, det maskrcnn.ImageDetections, orig gtImage,
	setup *instsegSetup, palette []color.RGBA) []image.Image {
	h, w := batch.Images.Shape().Dim(1), batch.Images.Shape().Dim(2)
	pix := tensors.MustCopyFlatData[float32](batch.Images)[i*h*w*3 : (i+1)*h*w*3]
	img := viz.Image{H: h, W: w, C: 3, Pix: pix}.ToRGBA(0, 1)
	ih, iw := info.InputHeight, info.InputWidth

	var pred []drawnInstance
	for k := len(det.Boxes) - 1; k >= 0; k-- { // best drawn last, on top
		if float64(det.Scores[k]) < setup.visThresh {
			continue
		}
		var mask []uint8
		if k < len(det.Masks) && det.Masks[k] != nil {
			mask = maskrcnn.PasteMask(det.Masks[k], det.MaskSize, det.Boxes[k], ih, iw, float32(setup.cfg.MaskThreshold))
		}
		pred = append(pred, drawnInstance{box: det.Boxes[k], mask: mask, class: det.Classes[k]})
	}
	// Ground truth from the original size to the input's (nearest, as the resize).
	sy, sx := float64(info.Height)/float64(ih), float64(info.Width)/float64(iw)
	classOf := map[int64]int{}
	for k, id := range setup.categoryIDs {
		classOf[id] = k
	}
	var truth []drawnInstance
	for _, a := range orig.anns {
		if a.IsCrowd != 0 {
			continue
		}
		m, err := a.Segmentation.ToRLE(info.Height, info.Width)
		if err != nil {
			continue
		}
		full, err := m.Decode()
		if err != nil {
			continue
		}
		mask := make([]uint8, ih*iw)
		for y := range ih {
			oy := min(int((float64(y)+0.5)*sy), info.Height-1)
			for x := range iw {
				mask[y*iw+x] = full[oy*info.Width+min(int((float64(x)+0.5)*sx), info.Width-1)]
			}
		}
		b := a.BBox
		box := [4]float32{float32(b[0] / sx), float32(b[1] / sy), float32((b[0] + b[2]) / sx), float32((b[1] + b[3]) / sy)}
		truth = append(truth, drawnInstance{box: box, mask: mask, class: classOf[a.CategoryID]})
	}
	return []image.Image{
		panel(img, nil, ih, iw, palette),
		panel(img, pred, ih, iw, palette),
		panel(img, truth, ih, iw, palette),
	}
}

// drawnInstance is an instance to draw: its box and mask (ih x iw, may be nil) in input pixels.
type drawnInstance struct {
	box   [4]float32
	mask  []uint8
	class int
}

// panel draws instances over the canvas-sized image: masks blended with their class colour,
// box outlines. Small canvases are enlarged and large ones reduced to about 256..512 pixels.
func panel(img *image.RGBA, insts []drawnInstance, ih, iw int, palette []color.RGBA) image.Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	labels := make([]int32, w*h)
	for k := range labels {
		labels[k] = -1
	}
	for _, in := range insts {
		for y := range ih {
			for x := range iw {
				if in.mask != nil && in.mask[y*iw+x] != 0 {
					labels[y*w+x] = int32(in.class)
				}
			}
		}
	}
	out := viz.Overlay(img, labels, w, h, palette, 0.5)
	scale := 1.0
	switch long := max(w, h); {
	case long < 256:
		f := (256 + long - 1) / long
		out, scale = viz.Upscale(out, f), float64(f)
	case long > 512:
		scale = 512 / float64(long)
		out = viz.Resize(out, max(1, int(float64(w)*scale)), max(1, int(float64(h)*scale)))
	}
	for _, in := range insts {
		c := color.RGBA{255, 255, 255, 255}
		if in.class >= 0 && in.class < len(palette) {
			c = palette[in.class]
		}
		drawBox(out, in.box, scale, c)
	}
	return out
}

// drawBox outlines box (x0, y0, x1, y1), scaled, with a 1-pixel line.
func drawBox(img *image.RGBA, box [4]float32, scale float64, c color.RGBA) {
	b := img.Bounds()
	px := func(v float32, hi int) int { return min(max(int(math.Round(float64(v)*scale)), 0), hi-1) }
	x0, y0, x1, y1 := px(box[0], b.Dx()), px(box[1], b.Dy()), px(box[2], b.Dx()), px(box[3], b.Dy())
	if x1 < x0 || y1 < y0 {
		return
	}
	for x := x0; x <= x1; x++ {
		img.SetRGBA(x, y0, c)
		img.SetRGBA(x, y1, c)
	}
	for y := y0; y <= y1; y++ {
		img.SetRGBA(x0, y, c)
		img.SetRGBA(x1, y, c)
	}
}
