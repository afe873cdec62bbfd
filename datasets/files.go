package datasets

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ImageExts are the file extensions read as images (compared case-insensitively).
var ImageExts = []string{".jpg", ".jpeg", ".png"}

// HasExt reports whether name ends with one of exts, ignoring case.
func HasExt(name string, exts []string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return slices.Contains(exts, ext)
}

// CheckDir returns a descriptive error if dir is not an existing folder. what says what the
// folder should hold, for the message ("ADE20K training images").
func CheckDir(dir, what string) error {
	st, err := os.Stat(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return fmt.Errorf("%s: folder of %s not found", dir, what)
		}
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s: expected the folder of %s, found a file", dir, what)
	}
	return nil
}

// ListFiles lists the files of dir (not recursive) whose extension is one of exts, sorted by
// name, as full paths; hidden files (such as macOS "._x.jpg" resource forks) are skipped. A
// missing folder is an error that says what it should hold.
func ListFiles(dir string, exts []string, what string) ([]string, error) {
	if err := CheckDir(dir, what); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") || !HasExt(e.Name(), exts) {
			continue
		}
		out = append(out, filepath.Join(dir, e.Name()))
	}
	slices.Sort(out)
	return out, nil
}

// WalkFiles lists the files under dir, recursively, whose extension is one of exts, sorted by
// path. Hidden files and folders (name starting with '.') are skipped; symbolic links to
// folders are not followed.
func WalkFiles(dir string, exts []string, what string) ([]string, error) {
	if err := CheckDir(dir, what); err != nil {
		return nil, err
	}
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() && HasExt(d.Name(), exts) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}

// Stem is the file name without folder and extension.
func Stem(path string) string {
	base := filepath.Base(path)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// PairByStem pairs images with masks of the same stem. An image without a mask is an error
// naming the expected mask file; masks without an image are ignored.
func PairByStem(images, masks []string, maskDir, maskExt string) ([][2]string, error) {
	byStem := make(map[string]string, len(masks))
	for _, m := range masks {
		byStem[Stem(m)] = m
	}
	pairs := make([][2]string, 0, len(images))
	for _, img := range images {
		m, ok := byStem[Stem(img)]
		if !ok {
			return nil, fmt.Errorf("%s: annotation of image %s not found", filepath.Join(maskDir, Stem(img)+maskExt), img)
		}
		pairs = append(pairs, [2]string{img, m})
	}
	return pairs, nil
}

// Resolve returns p if it is absolute, else p joined to root.
func Resolve(root, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(root, p)
}

// FindListed finds the file that an entry p of a list file names, for lists written on another
// machine (the SegNet release's "/SegNet/CamVid/train/x.png"): p as written (joined to root
// when relative), then root/<p's last folder>/<p's base name>, then dir/<p's base name>. The
// error lists the places tried.
func FindListed(p, root, dir string) (string, error) {
	p = filepath.FromSlash(p)
	base := filepath.Base(p)
	tries := []string{Resolve(root, p), filepath.Join(root, filepath.Base(filepath.Dir(p)), base), filepath.Join(dir, base)}
	for _, t := range tries {
		if st, err := os.Stat(t); err == nil && !st.IsDir() {
			return t, nil
		}
	}
	return "", fmt.Errorf("%s not found under %s (tried %s)", p, root, strings.Join(tries, ", "))
}
