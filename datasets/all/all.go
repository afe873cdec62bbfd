// Package all registers every dataset loader with the datasets registry: import it for its
// side effect, then call datasets.Open(name, root, split, opts).
package all

import (
	_ "github.com/dreamteacher-go/dreamteacher/datasets/ade20k"
	_ "github.com/dreamteacher-go/dreamteacher/datasets/bdd100k"
	_ "github.com/dreamteacher-go/dreamteacher/datasets/camvid"
	_ "github.com/dreamteacher-go/dreamteacher/datasets/coco"
	_ "github.com/dreamteacher-go/dreamteacher/datasets/imagefolder"
	_ "github.com/dreamteacher-go/dreamteacher/datasets/imagenet"
	_ "github.com/dreamteacher-go/dreamteacher/datasets/scenes"
)
