package upernet

import (
	"testing"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/internal/gradcheck"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	_ "github.com/dreamteacher-go/dreamteacher/models/backbones/all"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

func TestShapesOnResNet18(t *testing.T) {
	entry, err := backbones.Get("resnet18")
	if err != nil {
		t.Fatal(err)
	}
	store := model.NewStore()
	x := tensors.FromShape(shapes.Make(dtypes.Float32, 2, 64, 64, 3))
	out := model.MustExecOnceN(backend.Go(), store, func(scope *model.Scope, x *Node) []*Node {
		store.SetTraining(x.Graph(), true)
		feats := entry.Build(scope.In("backbone"), x, backbones.Options{}).Features
		o := Build(scope.In("head"), feats, 5, Config{Channels: 32, AuxChannels: 16})
		if o.Stride != 4 || o.AuxStride != 16 {
			t.Errorf("strides %d, %d; want 4, 16", o.Stride, o.AuxStride)
		}
		return []*Node{o.Logits, o.AuxLogits}
	}, x)
	if !out[0].Shape().Equal(shapes.Make(dtypes.Float32, 2, 16, 16, 5)) || !out[1].Shape().Equal(shapes.Make(dtypes.Float32, 2, 4, 4, 5)) {
		t.Errorf("shapes %s, %s", out[0].Shape(), out[1].Shape())
	}
	// mmseg's names.
	for _, path := range []string{"/head/psp/pool6/conv/weights", "/head/psp/bottleneck/bn/scale", "/head/lateral_convs/C2/conv/weights",
		"/head/fpn_convs/C4/conv/weights", "/head/fpn_bottleneck/conv/weights", "/head/conv_seg/biases", "/head/auxiliary/conv_seg/weights"} {
		if store.GetVariable(path) == nil {
			t.Errorf("missing variable %s", path)
		}
	}
}

func TestGradients(t *testing.T) {
	// Tiny fake pyramid in float64, batch 3 (BatchNorm trains; with batch 2 the 1x1 PPM bin
	// would normalise two values to ±1 and have no gradient at all).
	c2, c3 := gradcheck.RandomTensor(1, 3, 8, 8, 3), gradcheck.RandomTensor(2, 3, 4, 4, 4)
	c4, c5 := gradcheck.RandomTensor(3, 3, 2, 2, 4), gradcheck.RandomTensor(4, 3, 2, 2, 5)
	gradcheck.Check(t, gradcheck.Options{Training: true}, func(scope *model.Scope, in []*Node) *Node {
		var f backbones.Features
		for i, x := range in {
			f.Add(backbones.Info{Name: backbones.LevelNames[i], Channels: x.Shape().Dim(3), Stride: 4 << i}, x)
		}
		o := Build(scope.In("head"), f, 3, Config{Channels: 4, AuxChannels: 4, PoolScales: []int{1, 2}, Dropout: 1e-9})
		return Concatenate([]*Node{Reshape(o.Logits, 3, -1), Reshape(o.AuxLogits, 3, -1)}, 1)
	}, c2, c3, c4, c5)
}
