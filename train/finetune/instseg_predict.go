package finetune

import (
	"fmt"
	"image"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/loader"
	"github.com/dreamteacher-go/dreamteacher/eval/coco"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/ml/model"
)

// CategoryIDsParam records in an instance segmentation run's checkpoints the COCO category id
// of each class (the dataset's own for COCO-format datasets), so that its detections can be
// written as COCO results without the dataset (predict).
const CategoryIDsParam = "/run/category_ids"

// categoryIDsParam is categoryIDs as a checkpoint stores it ([]int).
func categoryIDsParam(ids []int64) []int {
	out := make([]int, len(ids))
	for i, id := range ids {
		out[i] = int(id)
	}
	return out
}

// instsegClassifier is the variable whose length is the number of classes + 1 (background).
const instsegClassifier = "/model/roi_heads/box_predictor/cls_score/biases"

// InstsegModel is the Mask R-CNN of an instance segmentation fine-tuning run, restored from
// one of its checkpoints with the settings the run recorded, and fed images as the run's
// evaluation fed them.
type InstsegModel struct {
	Checkpoint  string
	NumClasses  int      // from the box classifier's weights
	Classes     []string // the class names the run recorded (nil for checkpoints written before it did)
	CategoryIDs []int64  // the COCO category id of each class the run recorded (1..K before it did)
	setup       *instsegSetup
	detect      detectFn
}

// LoadInstseg restores the model of a `finetune --task instseg` checkpoint. The caller checks
// that the checkpoint is one (its recorded command); a checkpoint without Mask R-CNN's box
// classifier is an error naming it.
func LoadInstseg(b compute.Backend, path string) (*InstsegModel, error) {
	store := model.NewStore()
	configs.SetDefaults(store, InstsegDefaults()) // settings added since the checkpoint was written
	if _, err := train.Restore(store, path); err != nil {
		return nil, err
	}
	v := store.GetVariable(instsegClassifier)
	if v == nil || v.Shape().Rank() != 1 || v.Shape().Dim(0) < 2 {
		return nil, fmt.Errorf("%s: no Mask R-CNN box classifier (%s): not an instance segmentation checkpoint", path, instsegClassifier)
	}
	k := v.Shape().Dim(0) - 1
	names, _ := store.GetParam(ClassesParam)
	recordedNames, _ := names.([]string)
	if len(recordedNames) != k {
		recordedNames = nil
	}
	classes := recordedNames
	if classes == nil {
		classes = make([]string, k)
		for i := range classes {
			classes[i] = fmt.Sprintf("class %d", i)
		}
	}
	ids := make([]int64, k)
	recordedIDs, _ := store.GetParam(CategoryIDsParam)
	recorded, _ := recordedIDs.([]int)
	for i := range ids {
		ids[i] = int64(i + 1)
		if len(recorded) == k {
			ids[i] = int64(recorded[i])
		}
	}
	setup, err := newInstsegSetup(store, classes, ids)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	detect, err := modelDetector(b, store, setup)
	if err != nil {
		return nil, err
	}
	return &InstsegModel{Checkpoint: path, NumClasses: k, Classes: recordedNames, CategoryIDs: ids, setup: setup, detect: detect}, nil
}

// InstsegPrediction is the detections of one image, at its original size.
type InstsegPrediction struct {
	Index   int        // the image's index in the dataset
	Path    string     // its file
	Image   coco.Image // its COCO entry: id (the dataset's for COCO-format datasets, else index+1), file name, size
	Results []coco.Result
	// Draw draws the image as the model saw it with its detections scoring at least the run's
	// vis_threshold (masks and boxes).
	Draw func() image.Image
}

// Predict detects the instances of every image of ds, resized as the run's evaluation does,
// calling each in dataset order. With skipBad, images that fail to load are left out and
// returned.
func (m *InstsegModel) Predict(ds datasets.Dataset, workers int, skipBad bool, each func(InstsegPrediction) error) ([]loader.Skip, error) {
	return detectDataset(m.detect, m.setup, ds, workers, skipBad, func(d imageDetections) error {
		return each(InstsegPrediction{Index: d.index, Path: d.path, Image: d.image, Results: d.results,
			Draw: func() image.Image { return d.draw()[1] }})
	})
}
