// Package datasets defines what every dataset of the project returns — a Sample with its RGB
// image and, where the dataset has them, a semantic mask, instance masks and boxes, or a class
// label — and the registry that opens a dataset by name from the folder a user gives.
//
// Each dataset lives in a sub-package that reads its official layout as downloaded (imagenet,
// ade20k, coco, bdd100k, camvid, imagefolder) and registers itself in init; import
// datasets/all to get all of them. The scenes sub-package writes a small synthetic dataset in
// the COCO and ADE20K layouts, the default for demos and tests on a machine without data.
// transforms augments samples consistently (image, masks, boxes); loader turns a Dataset into
// fixed-shape GoMLX batches with parallel, prefetching, deterministic and resumable iteration.
//
// Conventions shared by all loaders:
//   - Images are 8-bit RGB, row-major, interleaved (HWC), whatever the file's format (JPEG,
//     PNG; grayscale and CMYK are converted).
//   - Semantic masks are HxW uint8 class indices 0..K-1 with 255 = ignore.
//   - Instance classes are contiguous 0..K-1; boxes are (x0, y0, x1, y1) in pixels; instance
//     masks are HxW uint8 0/1.
//   - Files are listed when a dataset is opened and decoded by Get; every I/O or format error
//     names the file (and the annotation id where there is one). Nothing is dropped silently.
package datasets
