// Package probe evaluates a pre-trained backbone's frozen features on image classification, as
// the paper's linear-probe table (ImageNet-1k, ResNet-50: DreamTeacher 63.9 top-1): the
// backbone, loaded from a distillation (or any) checkpoint, encodes every train and val image
// once; a linear classifier is trained on the train features (eval/classify.LinearProbe) and the
// weighted k-NN of DINO classifies the val features by their nearest train features
// (eval/classify.KNN). Nothing of the backbone is trained.
//
// Choices the paper leaves open, and ours:
//   - The feature is the global average of the last level (C5: 2048 channels for ResNet-50,
//     1024 for ConvNeXt-B), the input of the classification head that the linear probe replaces,
//     as in MoCo's and DINO's linear evaluation. BatchNorm uses its running statistics.
//   - Images are resized to cover size x size and centre-cropped (no 256/224 resize margin: the
//     same transform as distillation, so the features are those the student was taught on).
//   - The linear probe is eval/classify's deterministic full-batch SGD on standardised features
//     (100 epochs, lr 0.5 with cosine decay, momentum 0.9, weight decay 1e-4) rather than MoCo's
//     100 epochs of minibatch SGD with augmentation: the same objective, without the image-level
//     augmentation that would need the backbone in every epoch, which a CPU cannot afford.
//   - k-NN: DINO's k = 20, T = 0.07 on L2-normalised features.
package probe

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/datasets"
	"github.com/dreamteacher-go/dreamteacher/datasets/loader"
	"github.com/dreamteacher-go/dreamteacher/eval/classify"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	"github.com/dreamteacher-go/dreamteacher/train"
	"github.com/dreamteacher-go/dreamteacher/train/pretrain"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// Defaults are the settings of a probe.
func Defaults() map[string]any {
	return map[string]any{
		"dataset":     "imagenet", // a dataset with class labels (ImageNet layout)
		"data":        "",
		"train_split": "train",
		"val_split":   "val",
		// init is the checkpoint (or run folder) whose init_scope holds the backbone, or
		// "random" for the random-init baseline (then backbone must be set).
		"init":       "",
		"init_scope": "/student/backbone",
		// backbone and small_stem: empty/false read them from the init checkpoint's settings.
		"backbone":     "",
		"small_stem":   false,
		"size":         []int{224, 224},
		"batch":        32,
		"workers":      2,
		"method":       "both", // "linear", "knn" or "both"
		"epochs":       100,    // linear probe
		"lr":           0.5,
		"weight_decay": 1e-4,
		"k":            20, // k-NN
		"temperature":  0.07,
		"seed":         0,
	}
}

// Result of a probe: accuracies in percent (NaN where the method was not run).
type Result struct {
	Backbone                 string
	LinearTop1, LinearTrain  float64
	KNNTop1, KNNTop5         float64
	TrainImages, ValImages   int
	Classes                  int
	FeatureDim               int
	EncodeTime, ClassifyTime time.Duration
}

// Run encodes the train and val splits with the frozen backbone and classifies the val features.
func Run(b compute.Backend, store *model.Store, log io.Writer) (Result, error) {
	str := func(k string) string { return configs.Get[string](store, k) }
	num := func(k string) int { return configs.Get[int](store, k) }
	flt := func(k string) float64 { return configs.Get[float64](store, k) }
	res := Result{LinearTop1: math.NaN(), LinearTrain: math.NaN(), KNNTop1: math.NaN(), KNNTop5: math.NaN()}
	method := str("method")
	if method != "linear" && method != "knn" && method != "both" {
		return res, fmt.Errorf("method %q: want linear, knn or both", method)
	}
	name, small := str("backbone"), configs.Get[bool](store, "small_stem")
	if str("init") != "random" {
		saved, err := train.ReadSettings(str("init"))
		if err != nil {
			return res, fmt.Errorf("init: %w", err)
		}
		if name == "" {
			name, _ = saved["backbone"].(string)
			small, _ = saved["small_stem"].(bool)
		}
	}
	if name == "" {
		return res, fmt.Errorf("backbone: not set, and init %q names none", str("init"))
	}
	entry, err := backbones.Get(name)
	if err != nil {
		return res, err
	}
	res.Backbone = name
	trainDS, err := datasets.Open(str("dataset"), str("data"), str("train_split"), datasets.Options{})
	if err != nil {
		return res, err
	}
	valDS, err := datasets.Open(str("dataset"), str("data"), str("val_split"), datasets.Options{})
	if err != nil {
		return res, err
	}
	res.Classes = len(trainDS.Classes())
	if res.Classes == 0 {
		return res, fmt.Errorf("dataset %s has no classes: a probe needs labelled images", trainDS.Name())
	}

	size := configs.Get[[]int](store, "size")
	encode := func(scope *model.Scope, images *Node) *Node {
		feats := entry.Build(scope.In("backbone"), backbones.Normalize(images), backbones.Options{SmallInputStem: small}).Features
		return ReduceMean(feats.Last(), 1, 2) // global average pool: [N, C]
	}
	bs := num("batch")
	if err := train.Seed(store, int64(num("seed"))); err != nil {
		return res, err
	}
	if err := train.Declare(b, store, []shapes.Shape{shapes.Make(dtypes.Float32, bs, size[0], size[1], 3)},
		func(scope *model.Scope, in []*Node) { encode(scope, in[0]) }); err != nil {
		return res, err
	}
	if str("init") != "random" {
		n, err := train.LoadScope(store, str("init"), train.LoadSpec{From: str("init_scope"), To: "/backbone", Skip: []string{"head/*"}, Strict: true})
		if err != nil {
			return res, fmt.Errorf("init: %w", err)
		}
		fmt.Fprintf(log, "backbone %s from %s (%d variables of %s)\n", name, str("init"), n, str("init_scope"))
	}
	exec, err := model.NewExec(b, store, encode)
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	features := func(ds datasets.Dataset) (classify.Features, []int32, error) {
		ld, err := loader.New(ds, loader.Config{BatchSize: bs, Transform: pretrain.Cover(size[0], size[1]), Workers: num("workers")})
		if err != nil {
			return classify.Features{}, nil, err
		}
		var f classify.Features
		var labels []int32
		for batch, err := range ld.Epoch(0) {
			if err != nil {
				return f, nil, err
			}
			out, err := exec.Exec(batch.Images)
			if err != nil {
				return f, nil, err
			}
			dim := out[0].Shape().Dim(1)
			f.Dim = dim
			flat := tensors.MustCopyFlatData[float32](out[0])
			f.Data = append(f.Data, flat[:batch.NumValid*dim]...)
			labels = append(labels, tensors.MustCopyFlatData[int32](batch.Labels)[:batch.NumValid]...)
		}
		for i, l := range labels {
			if l < 0 {
				return f, nil, fmt.Errorf("%s: image %d has no class label", ds.Name(), i)
			}
		}
		return f, labels, nil
	}
	trainF, trainL, err := features(trainDS)
	if err != nil {
		return res, err
	}
	valF, valL, err := features(valDS)
	if err != nil {
		return res, err
	}
	res.TrainImages, res.ValImages, res.FeatureDim = len(trainL), len(valL), trainF.Dim
	res.EncodeTime = time.Since(t0)
	fmt.Fprintf(log, "encoded %d train and %d val images into %d-d features in %s\n", len(trainL), len(valL), trainF.Dim, res.EncodeTime.Round(time.Second))

	t0 = time.Now()
	if method != "knn" {
		opts := classify.DefaultLinearProbeOptions(res.Classes)
		opts.Epochs, opts.LearningRate, opts.WeightDecay, opts.Seed = num("epochs"), flt("lr"), flt("weight_decay"), uint64(num("seed"))
		lp, err := classify.LinearProbe(trainF, trainL, valF, valL, opts)
		if err != nil {
			return res, err
		}
		res.LinearTop1, res.LinearTrain = 100*lp.ValAcc, 100*lp.TrainAcc
	}
	if method != "linear" {
		opts := classify.DefaultKNNOptions(res.Classes)
		opts.K, opts.Temperature = num("k"), flt("temperature")
		r, err := classify.KNN(trainF, trainL, valF, valL, opts)
		if err != nil {
			return res, err
		}
		res.KNNTop1, res.KNNTop5 = 100*r.Top1, 100*r.Top5
	}
	res.ClassifyTime = time.Since(t0)
	return res, nil
}
