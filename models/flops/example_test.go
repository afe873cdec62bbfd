package flops_test

import (
	"fmt"

	"github.com/dreamteacher-go/dreamteacher/backend"
	"github.com/dreamteacher-go/dreamteacher/models/backbones"
	_ "github.com/dreamteacher-go/dreamteacher/models/backbones/all"
	"github.com/dreamteacher-go/dreamteacher/models/flops"
)

// The forward cost of ResNet-18 on one 224x224 image, as `dreamteacher inspect model` prints it.
func ExampleBackbone() {
	r, err := flops.Backbone(backend.Go(), "resnet18", backbones.Options{NumClasses: 1000}, 1, 224, 224)
	if err != nil {
		panic(err)
	}
	fmt.Println(r.Counts)
	fmt.Println(r.Params, "parameters")
	fmt.Println("C5:", r.Outputs["C5"])
	// Output:
	// 3.628 GFLOPs (1.814 GMACs)
	// 11689512 parameters
	// C5: (Float32)[1, 7, 7, 512]
}
