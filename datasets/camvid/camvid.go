// Package camvid reads CamVid road scenes in the SegNet tutorial layout, at any resolution:
//
//	root/
//	  train/      *.png  RGB frames          trainannot/  *.png  labels
//	  val/        *.png                      valannot/    *.png
//	  test/       *.png                      testannot/   *.png
//	  train.txt   val.txt   test.txt         lines "image label"
//
// Labels are 8-bit grayscale PNGs with values 0..10 = Sky, Building, Pole, Road, Pavement,
// Tree, SignSymbol, Fence, Car, Pedestrian, Bicyclist and 11 = void, which the loader maps to
// 255 (ignore); any other value is an error naming the file.
//
// The list files of the SegNet release hold absolute paths of the authors' machine
// ("/SegNet/CamVid/train/0001TP_006690.png"): each path is resolved as datasets.FindListed
// does: as written (joined to root when relative), then by its last folder and base name under
// root (root/train/x.png), then by base name in the split's folders. Without a list file the split's folders are paired by
// file name. Registered as "camvid"; splits "train", "val", "test".
package camvid

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/datasets"
)

// Classes are the 11 CamVid classes of the SegNet release, by label value.
var Classes = []string{"Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol",
	"Fence", "Car", "Pedestrian", "Bicyclist"}

// Void is the label value of unlabeled pixels in the files.
const Void = 11

func init() { datasets.Register("camvid", Open) }

// Open reads split ("train", "val" or "test") of the SegNet-layout folder root.
func Open(root, split string, opts datasets.Options) (datasets.Dataset, error) {
	switch split {
	case "train", "val", "test":
	default:
		return nil, fmt.Errorf("camvid: unknown split %q (want train, val or test)", split)
	}
	if err := datasets.CheckDir(root, "CamVid (SegNet layout)"); err != nil {
		return nil, err
	}
	imgDir := filepath.Join(root, split)
	annDir := filepath.Join(root, split+"annot")
	var pairs [][2]string
	list := filepath.Join(root, split+".txt")
	if _, err := os.Stat(list); err == nil {
		pairs, err = readList(list, root, imgDir, annDir)
		if err != nil {
			return nil, err
		}
	} else {
		imgs, err := datasets.ListFiles(imgDir, datasets.ImageExts, "CamVid "+split+" images")
		if err != nil {
			return nil, err
		}
		anns, err := datasets.ListFiles(annDir, []string{".png"}, "CamVid "+split+" labels")
		if err != nil {
			return nil, err
		}
		if pairs, err = datasets.PairByStem(imgs, anns, annDir, ".png"); err != nil {
			return nil, err
		}
	}
	if len(pairs) == 0 {
		return nil, fmt.Errorf("%s: no CamVid %s images", imgDir, split)
	}
	labels := datasets.IdentityLabels(len(Classes), Void)
	return &datasets.SegPairs{
		DatasetName: "camvid/" + split,
		Pairs:       pairs[:opts.LimitLen(len(pairs))],
		Labels:      labels,
		ClassNames:  Classes,
	}, nil
}

func readList(list, root, imgDir, annDir string) ([][2]string, error) {
	f, err := os.Open(list)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var pairs [][2]string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s:%d: want \"image label\", got %q", list, n, line)
		}
		img, err := datasets.FindListed(fields[0], root, imgDir)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", list, n, err)
		}
		lab, err := datasets.FindListed(fields[1], root, annDir)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", list, n, err)
		}
		pairs = append(pairs, [2]string{img, lab})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", list, err)
	}
	return pairs, nil
}
