package biggan_test

import (
	"fmt"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/models/biggan"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
)

// The ImageNet 128x128 generator as a DreamTeacher teacher: the image and the default feature
// taps, at the strides of a backbone's C5..C2 (the graph is built, not run).
func ExampleGenerate() {
	cfg, err := biggan.Get("biggan_128")
	if err != nil {
		panic(err)
	}
	store := model.NewStore()
	g := NewGraph(backend.Go(), "teacher")
	defer g.Finalize()
	z := Parameter(g, "z", shapes.Make(dtypes.Float32, 8, cfg.DimZ))
	y := Parameter(g, "y", shapes.Make(dtypes.Int32, 8))
	out := biggan.Generate(store.RootScope().In(biggan.GeneratorScope), z, y, cfg)
	fmt.Println("image", out.Image.Shape())
	for _, info := range out.TapInfo {
		fmt.Printf("%s stride %d: %s\n", info.Name, info.Stride, out.Taps[info.Name].Shape())
	}
	gParams, dParams := biggan.NumParams(cfg)
	fmt.Printf("parameters: G %d, D %d\n", gParams, dParams)
	// Output:
	// image (Float32)[8, 128, 128, 3]
	// g_s32 stride 32: (Float32)[8, 4, 4, 1536]
	// g_s16 stride 16: (Float32)[8, 8, 8, 1536]
	// g_s8 stride 8: (Float32)[8, 16, 16, 768]
	// g_s4 stride 4: (Float32)[8, 32, 32, 384]
	// parameters: G 70433988, D 87982370
}
