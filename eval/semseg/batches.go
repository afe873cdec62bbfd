package semseg

import (
	"fmt"
	"image"
	"image/color"
	"iter"

	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/loader"
	"github.com/dreamteacher-go/dreamteacher/viz"
	"github.com/gomlx/gomlx/core/tensors"
)

// Predictor returns the predicted class of every pixel of a batch of images [N, H, W, 3],
// flat [N*H*W].
type Predictor func(images *tensors.Tensor) ([]int32, error)

// EvaluateBatches runs predict on every batch and accumulates the confusion matrix over the
// real (not padding) samples, against the batches' semantic labels (255 ignored). The first
// `overlays` images are drawn — image, prediction, ground truth — into pngPath (none if 0).
func EvaluateBatches(batches iter.Seq2[*loader.Batch, error], numClasses int, predict Predictor, overlays int, pngPath string) (Result, error) {
	ev := New(numClasses, datasets.IgnoreLabel)
	palette := viz.Palette(numClasses)
	var drawn []image.Image
	for batch, err := range batches {
		if err != nil {
			return Result{}, err
		}
		if batch.Semantic == nil {
			return Result{}, fmt.Errorf("semseg: the batch of %s has no semantic labels", batch.Paths[0])
		}
		pred, err := predict(batch.Images)
		if err != nil {
			return Result{}, err
		}
		label := tensors.MustCopyFlatData[int32](batch.Semantic)
		hw := batch.Semantic.Shape().Dim(1) * batch.Semantic.Shape().Dim(2)
		for i := range batch.NumValid {
			p, l := pred[i*hw:(i+1)*hw], label[i*hw:(i+1)*hw]
			if err := ev.Process(p, l); err != nil {
				return Result{}, fmt.Errorf("%s: %w", batch.Paths[i], err)
			}
			if len(drawn) < 3*overlays {
				drawn = append(drawn, overlayTriplet(batch, i, p, l, palette)...)
			}
		}
	}
	if len(drawn) > 0 && pngPath != "" {
		if err := viz.SavePNG(pngPath, viz.Grid(drawn, 3, 2)); err != nil {
			return Result{}, err
		}
	}
	return ev.Evaluate(), nil
}

// overlayTriplet draws image i of the batch, its prediction and its ground truth.
func overlayTriplet(batch *loader.Batch, i int, pred, label []int32, palette []color.RGBA) []image.Image {
	h, w := batch.Images.Shape().Dim(1), batch.Images.Shape().Dim(2)
	pix := tensors.MustCopyFlatData[float32](batch.Images)[i*h*w*3 : (i+1)*h*w*3]
	img := viz.Image{H: h, W: w, C: 3, Pix: pix}.ToRGBA(0, 1)
	return []image.Image{img, viz.Overlay(img, pred, w, h, palette, 0.6), viz.Overlay(img, label, w, h, palette, 0.6)}
}
