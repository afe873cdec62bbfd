package regressor_test

import (
	"fmt"
	"maps"
	"slices"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	_ "github.com/dreamteacher-go/dreamteacher/models/backbones/all"
	"github.com/dreamteacher-go/dreamteacher/models/flops"
	"github.com/dreamteacher-go/dreamteacher/models/regressor"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// A ResNet-50 student regressing four taps of an ADM teacher at 256x256 (decoder levels of
// strides 32..4; the channel counts are illustrative).
func ExampleNew() {
	entry, _ := backbones.Get("resnet50")
	targets := []regressor.Target{
		{Name: "dec3", Channels: 1024, Height: 8, Width: 8},
		{Name: "dec6", Channels: 1024, Height: 16, Width: 16},
		{Name: "dec9", Channels: 512, Height: 32, Width: 32},
		{Name: "dec12", Channels: 512, Height: 64, Width: 64},
	}
	r, err := flops.Inspect(backend.Go(), shapes.Make(dtypes.Float32, 2, 256, 256, 3),
		func(scope *model.Scope, x *Node) map[string]*Node {
			feats := entry.Build(scope.In("backbone"), x, backbones.Options{}).Features
			return regressor.New(scope.In("regressor"), feats, targets).Done()
		})
	if err != nil {
		panic(err)
	}
	for _, name := range slices.Sorted(maps.Keys(r.Outputs)) {
		fmt.Println(name, r.Outputs[name])
	}
	// Output:
	// dec12 (Float32)[2, 64, 64, 512]
	// dec3 (Float32)[2, 8, 8, 1024]
	// dec6 (Float32)[2, 16, 16, 1024]
	// dec9 (Float32)[2, 32, 32, 512]
}
