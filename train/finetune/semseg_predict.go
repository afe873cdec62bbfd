package finetune

import (
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"os"
	"sync"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/loader"
	"github.com/dreamteacher-go/dreamteacher/datasets/transforms"
	"github.com/dreamteacher-go/dreamteacher/models/nn"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// semsegEvalBatch is the batch of semantic segmentation evaluation and prediction.
const semsegEvalBatch = 4

// ClassesParam records in a fine-tuning run's checkpoints the class names of its dataset, in
// class-index order, so that its model can be used without the dataset (predict).
const ClassesParam = "/run/classes"

// SemsegPrediction is the prediction for one image, at the image's own size.
type SemsegPrediction struct {
	Index int            // the image's index in the dataset
	Path  string         // its file
	Image datasets.Image // the image as read, before the evaluation's resizing
	Label []uint8        // its semantic mask as read (IgnoreLabel = ignored); nil if the dataset has none
	// Classes is the predicted class of every pixel, Image.H*Image.W, row-major.
	Classes []int32
}

// predict runs the model on every image of ds as the run's evaluation feeds it, and calls each
// with the image's prediction at the image's own size, in dataset order within each batch
// shape. The model sees batches of 4 images, either
//   - at their native size (evalSize empty): images of different sizes go into different
//     batches (grouped by the size their files declare, in order of first appearance), and the
//     logits, resized bilinearly from the head's stride to the input, give the classes; or
//   - fitted into evalSize (height, width) keeping their aspect ratio, and padded at the bottom
//     and right: the classes of the fitted region are mapped back to the image's size (nearest,
//     the pixel whose centre contains each output pixel's centre).
//
// Training's evaluation (evaluateSemseg) and predict (SemsegModel.Predict) share this, so that
// predicted masks score exactly as the run's own evaluation. With skipBad, images that fail to
// load are left out and returned; otherwise the first one stops it with an error naming it.
func (s *semsegSetup) predict(b compute.Backend, ds datasets.Dataset, evalSize []int, workers int, skipBad bool,
	each func(SemsegPrediction) error) ([]loader.Skip, error) {
	if len(evalSize) != 0 && (len(evalSize) != 2 || evalSize[0] <= 0 || evalSize[1] <= 0) {
		return nil, fmt.Errorf("eval_size must be empty or (height, width), got %v", evalSize)
	}
	exec, err := model.NewExec(b, s.store, func(scope *model.Scope, images *Node) *Node {
		out := s.forward(scope.In("model"), images)
		logits := nn.ResizeBilinear(out.Logits, images.Shape().Dim(1), images.Shape().Dim(2))
		return ConvertDType(ArgMax(logits, -1), dtypes.Int32)
	})
	if err != nil {
		return nil, err
	}
	groups := [][]int{nil} // nil: the whole dataset, in its order
	if len(evalSize) == 0 {
		groups = sizeGroups(ds)
	}
	var skipped []loader.Skip
	for _, indices := range groups {
		part := datasets.Dataset(ds)
		if indices != nil {
			if part, err = datasets.NewSubset(ds, indices, ds.Name()); err != nil {
				return skipped, err
			}
		}
		originals := &originalRecorder{byPath: map[string][]datasets.Sample{}}
		tf := transforms.Transform(originals)
		if len(evalSize) == 2 {
			tf = transforms.Compose(originals, fitInto(evalSize[0], evalSize[1]), transforms.Pad{W: evalSize[1], H: evalSize[0]})
		}
		ld, err := loader.New(part, loader.Config{BatchSize: semsegEvalBatch, Transform: tf, Workers: workers, SkipBad: skipBad})
		if err != nil {
			return skipped, err
		}
		for batch, err := range ld.Epoch(0) {
			if err != nil {
				return skipped, err
			}
			out, err := exec.Exec(batch.Images)
			if err != nil {
				return skipped, err
			}
			pred := tensors.MustCopyFlatData[int32](out[0])
			h, w := batch.Images.Shape().Dim(1), batch.Images.Shape().Dim(2)
			for i := range batch.NumValid {
				orig, ok := originals.take(batch.Paths[i])
				if !ok {
					return skipped, fmt.Errorf("%s: the image as read was not recorded", batch.Paths[i])
				}
				p := pred[i*h*w : (i+1)*h*w]
				if len(evalSize) == 2 {
					fw, fh := fitSize(orig.Image.W, orig.Image.H, evalSize[0], evalSize[1])
					p = toImageSize(p, w, fw, fh, orig.Image.W, orig.Image.H)
				} else if orig.Image.W != w || orig.Image.H != h {
					return skipped, fmt.Errorf("%s: read as %dx%d, evaluated at %dx%d", batch.Paths[i], orig.Image.W, orig.Image.H, w, h)
				}
				index := batch.Indices[i]
				if indices != nil {
					index = indices[index]
				}
				if err := each(SemsegPrediction{Index: index, Path: orig.Path, Image: orig.Image, Label: orig.Semantic, Classes: p}); err != nil {
					return skipped, err
				}
			}
		}
		for _, sk := range ld.Skipped() {
			if indices != nil {
				sk.Index = indices[sk.Index]
			}
			skipped = append(skipped, sk)
		}
	}
	return skipped, nil
}

// sizeGroups splits the indices of ds by the image size its files declare (their headers), in
// order of first appearance; a dataset whose images are all one size is one group, nil (the
// dataset as it is). Images whose header cannot be read form a last group, where loading them
// fails (or skips them) as usual; so do all images of a dataset that cannot name its files.
func sizeGroups(ds datasets.Dataset) [][]int {
	pather, ok := ds.(datasets.Pather)
	if !ok {
		return [][]int{nil}
	}
	var order []image.Point
	bySize := map[image.Point][]int{}
	var unreadable []int
	for i := range ds.Len() {
		size, err := imageSize(pather.Path(i))
		if err != nil {
			unreadable = append(unreadable, i)
			continue
		}
		if _, seen := bySize[size]; !seen {
			order = append(order, size)
		}
		bySize[size] = append(bySize[size], i)
	}
	if len(order) <= 1 && len(unreadable) == 0 {
		return [][]int{nil}
	}
	groups := make([][]int, 0, len(order)+1)
	for _, size := range order {
		groups = append(groups, bySize[size])
	}
	if len(unreadable) > 0 {
		groups = append(groups, unreadable)
	}
	return groups
}

// imageSize reads the width and height an image file declares.
func imageSize(path string) (image.Point, error) {
	f, err := os.Open(path)
	if err != nil {
		return image.Point{}, err
	}
	defer f.Close()
	cfg, _, err := image.DecodeConfig(f)
	return image.Point{X: cfg.Width, Y: cfg.Height}, err
}

// originalRecorder is the first transform of evaluation and prediction: it keeps each sample
// as read (image and semantic mask), by path, until its prediction is made.
type originalRecorder struct {
	mu     sync.Mutex
	byPath map[string][]datasets.Sample // a path listed twice is read twice, alike
}

// Apply implements transforms.Transform.
func (r *originalRecorder) Apply(s *datasets.Sample, _ *rand.Rand) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byPath[s.Path] = append(r.byPath[s.Path], datasets.Sample{Path: s.Path, Image: s.Image, Semantic: s.Semantic})
	return nil
}

// take returns and forgets a sample recorded for path.
func (r *originalRecorder) take(path string) (datasets.Sample, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.byPath[path]
	if len(list) == 0 {
		return datasets.Sample{}, false
	}
	if len(list) == 1 {
		delete(r.byPath, path)
	} else {
		r.byPath[path] = list[1:]
	}
	return list[0], true
}

// fitInto resizes keeping the aspect ratio so that the image fits in h x w (fitSize).
func fitInto(h, w int) transforms.Transform {
	return transforms.Func(func(s *datasets.Sample, _ *rand.Rand) error {
		fw, fh := fitSize(s.Image.W, s.Image.H, h, w)
		return transforms.Resize(s, fw, fh)
	})
}

// fitSize is the size (width, height) of a w x h image fitted into boxH x boxW keeping its
// aspect ratio.
func fitSize(w, h, boxH, boxW int) (int, int) {
	f := min(float64(boxW)/float64(w), float64(boxH)/float64(h))
	return max(1, int(float64(w)*f+0.5)), max(1, int(float64(h)*f+0.5))
}

// toImageSize maps classes predicted on a padded input of width inW, whose top-left fw x fh
// region holds the fitted image, back to the image's size w x h: each output pixel takes the
// class of the fitted pixel that contains its centre (as the resizes of datasets/transforms
// map labels).
func toImageSize(pred []int32, inW, fw, fh, w, h int) []int32 {
	xs := make([]int, w)
	for x := range xs {
		xs[x] = min(int(math.Floor((float64(x)+0.5)*float64(fw)/float64(w))), fw-1)
	}
	out := make([]int32, w*h)
	for y := range h {
		sy := min(int(math.Floor((float64(y)+0.5)*float64(fh)/float64(h))), fh-1)
		row := pred[sy*inW:]
		for x, sx := range xs {
			out[y*w+x] = row[sx]
		}
	}
	return out
}

// SemsegModel is the UperNet of a semantic segmentation fine-tuning run, restored from one of
// its checkpoints with the settings the run recorded, and fed images as the run's evaluation
// fed them.
type SemsegModel struct {
	Checkpoint string
	NumClasses int      // from the classifier's weights
	Classes    []string // the class names the run recorded (nil for checkpoints written before it did)
	EvalSize   []int    // the run's eval_size: empty, native size; else (height, width)
	b          compute.Backend
	setup      *semsegSetup
}

// LoadSemseg restores the model of a `finetune --task semseg` checkpoint. The caller checks
// that the checkpoint is one (its recorded command); a checkpoint without UperNet's classifier
// is an error naming it.
func LoadSemseg(b compute.Backend, path string) (*SemsegModel, error) {
	store := model.NewStore()
	defaults := SemsegDefaults()
	configs.SetDefaults(store, defaults) // settings added since the checkpoint was written
	if _, err := train.Restore(store, path); err != nil {
		return nil, err
	}
	v := store.GetVariable(semsegClassifier)
	if v == nil || v.Shape().Rank() != 1 {
		return nil, fmt.Errorf("%s: no UperNet classifier (%s): not a semantic segmentation checkpoint", path, semsegClassifier)
	}
	setup, err := newSemsegSetup(store, v.Shape().Dim(0))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m := &SemsegModel{Checkpoint: path, NumClasses: setup.numClasses, EvalSize: configs.Get[[]int](store, "eval_size"), b: b, setup: setup}
	names, _ := store.GetParam(ClassesParam)
	m.Classes, _ = names.([]string)
	return m, nil
}

// semsegClassifier is the variable whose length is the number of classes.
const semsegClassifier = "/model/head/conv_seg/biases"

// Predict runs the model on every image of ds (see SemsegPrediction), preprocessed and resized
// as the run's evaluation does, calling each in dataset order within each batch shape. With
// skipBad, images that fail to load are left out and returned.
func (m *SemsegModel) Predict(ds datasets.Dataset, workers int, skipBad bool, each func(SemsegPrediction) error) ([]loader.Skip, error) {
	return m.setup.predict(m.b, ds, m.EvalSize, workers, skipBad, each)
}
