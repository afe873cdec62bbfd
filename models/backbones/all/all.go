// Package all registers every backbone family (ResNet, ConvNeXt) with models/backbones.
// Import it for its side effects:
//
//	import _ "github.com/dreamteacher-go/dreamteacher/models/backbones/all"
package all

import (
	_ "github.com/dreamteacher-go/dreamteacher/models/backbones/convnext"
	_ "github.com/dreamteacher-go/dreamteacher/models/backbones/resnet"
)
