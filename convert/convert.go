package convert

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/internal/safetensors"
	"github.com/dreamteacher-go/dreamteacher/models/adm"
	"github.com/dreamteacher-go/dreamteacher/train"
)

// Options of a conversion.
type Options struct {
	// Family is "resnet", "convnext" or "adm" (see FamilyNames). Empty: the catalogue entry's,
	// or the family of Arch.
	Family string
	// Arch names the architecture ("resnet50", "convnext_tiny", "adm_256x256_uncond"). ResNets
	// and ConvNeXts are recognised from the checkpoint when it is empty (and checked against it
	// when given); ADM needs it, or Config.
	Arch string
	// Config, instead of Arch, is an unregistered architecture: a resnet.Config,
	// convnext.Config or adm.Config.
	Config any
	// Input is a checkpoint file (.pt, .pth, .bin, .ckpt: torch.save's zip or legacy format; or
	// .safetensors), or a catalogue name, fetched into CacheDir.
	Input string
	// Out is the checkpoint to write: a .safetensors file, or a folder in which it is
	// ckpt-00000000.safetensors (train.Latest finds it).
	Out string
	// Scope is where the weights go in our checkpoint, e.g. "/model/backbone" (default "/").
	Scope string
	// CacheDir holds downloaded catalogue files (default: DefaultCacheDir()); hub entries go to
	// the Hugging Face cache (HubCacheDir()).
	CacheDir string
	// Offline never downloads: a catalogue file missing from CacheDir is an error that says
	// where to download it from and where to put it.
	Offline bool
	// Progress, when set, shows downloads: a byte progress bar on a terminal, lines otherwise.
	Progress io.Writer
	// Nested selects the dict of the checkpoint holding the weights ("model_ema"); empty: the
	// catalogue entry's, else detected (see Load).
	Nested string
	// Prefix is stripped from the checkpoint's keys, and keys without it are not used (e.g.
	// "backbone." for an mmseg checkpoint). Empty: detected from the family's keys.
	Prefix string
	// Skip lists patterns (path.Match, or "dir/*" for everything under dir) of our variables,
	// relative to Scope, not to convert: e.g. "head/*" to leave the classifier out. Any other
	// variable without a tensor in the checkpoint is an error.
	Skip []string
}

// Report says what a conversion did.
type Report struct {
	Input  string // the file read
	SHA256 string // of the file read
	Out    string // the checkpoint written
	Family string
	Arch   string
	// Layout of the checkpoint's keys: "torchvision", "timm", "facebookresearch",
	// "guided-diffusion".
	Layout string
	Format string // "torch-zip", "torch-legacy", "safetensors"
	// Nested is the dict the weights came from ("" the top level); Alternatives are other dicts
	// of tensors in the file (e.g. "model_ema").
	Nested       string
	Alternatives []string
	Prefix       string // stripped from the checkpoint's keys
	Scope        string
	Variables    int   // written
	Params       int64 // values of the trainable variables written (PyTorch's parameters)
	Buffers      int64 // values of the others (BatchNorm running statistics)
	// DTypes counts the checkpoint tensors converted, by their dtype.
	DTypes map[string]int
	// Skipped are our variables (relative to Scope) left out by Options.Skip.
	Skipped []string
	// Unused are the checkpoint's keys that no variable took: num_batches_tracked, a skipped
	// classifier, other modules.
	Unused []string
}

// String summarises the report in a few lines.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "converted %s (%s, %s layout", r.Input, r.Format, r.Layout)
	if r.Nested != "" {
		fmt.Fprintf(&b, ", dict %q", r.Nested)
	}
	if r.Prefix != "" {
		fmt.Fprintf(&b, ", prefix %q", r.Prefix)
	}
	fmt.Fprintf(&b, ") as %s %s\n", r.Family, r.Arch)
	fmt.Fprintf(&b, "wrote %d variables (%d parameters, %d buffer values) under %s to %s\n", r.Variables, r.Params, r.Buffers, r.Scope, r.Out)
	if len(r.Alternatives) > 0 {
		fmt.Fprintf(&b, "other weights in the file: %s\n", strings.Join(r.Alternatives, ", "))
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintf(&b, "skipped %d variables: %s\n", len(r.Skipped), strings.Join(head(r.Skipped, 10), ", "))
	}
	if len(r.Unused) > 0 {
		fmt.Fprintf(&b, "unused checkpoint keys (%d): %s\n", len(r.Unused), strings.Join(head(r.Unused, 10), ", "))
	}
	return b.String()
}

// Run converts a foreign checkpoint into ours: it fetches a catalogue entry if Input names one,
// reads the checkpoint, maps every variable of the architecture onto its tensor (permuting
// axes: OIHW -> HWIO, [out, in] -> [in, out]; converting to float32), and writes our
// checkpoint under Scope, ready for train.LoadScope. A variable without its tensor or with
// another shape is an error naming them all, unless declared in Skip.
func Run(ctx context.Context, opts Options) (Report, error) {
	if opts.Input == "" {
		return Report{}, fmt.Errorf("convert: no input checkpoint")
	}
	if opts.Out == "" {
		return Report{}, fmt.Errorf("convert: no output path")
	}
	input := opts.Input
	if _, err := os.Stat(input); err != nil {
		entry, ok := Lookup(input)
		if !ok {
			return Report{}, fmt.Errorf("convert: %s is neither a file nor a catalogue name (%v; the catalogue has %s)",
				input, err, strings.Join(CatalogueNames(), ", "))
		}
		if opts.Family == "" {
			opts.Family = entry.Family
		} else if opts.Family != entry.Family {
			return Report{}, fmt.Errorf("convert: %s is a %s checkpoint, not %s", entry.Name, entry.Family, opts.Family)
		}
		if opts.Arch == "" && opts.Config == nil {
			opts.Arch = entry.Arch
		}
		if opts.Nested == "" {
			opts.Nested = entry.Nested
		}
		input, err = Fetcher{CacheDir: opts.CacheDir, Offline: opts.Offline, Progress: opts.Progress}.FetchEntry(ctx, entry)
		if err != nil {
			return Report{}, err
		}
	}
	if opts.Family == "" {
		opts.Family = familyOfArch(opts.Arch)
		if opts.Family == "" {
			return Report{}, fmt.Errorf("convert: say which family %s is (one of %s)", input, strings.Join(FamilyNames(), ", "))
		}
	}
	sd, err := Load(input, opts.Nested)
	if err != nil {
		return Report{}, err
	}
	defer sd.Close()
	weights, rep, err := Convert(sd, opts)
	if err != nil {
		return rep, err
	}
	if rep.SHA256, err = fileSHA256(input); err != nil {
		return rep, err
	}
	out := opts.Out
	if !strings.HasSuffix(out, ".safetensors") {
		out = filepath.Join(out, "ckpt-00000000.safetensors")
	}
	meta := map[string]string{
		"convert_source": input, "convert_sha256": rep.SHA256, "convert_family": rep.Family,
		"convert_arch": rep.Arch, "convert_layout": rep.Layout,
	}
	// Settings that make the checkpoint usable as it is: an ADM teacher is described by its
	// configuration and diffusion process (guided-diffusion's released models: 1000 linear
	// steps), as pre-training writes them.
	settings := map[string]any{"convert_arch": rep.Arch}
	if rep.Family == "adm" {
		if cfg, err := adm.GetConfig(rep.Arch); err == nil {
			h, w := cfg.InputSize()
			settings["adm"], settings["diffusion_steps"], settings["noise_schedule"], settings["size"] = rep.Arch, 1000, "linear", []int{h, w}
		}
	}
	if err := weights.WriteFile(out, settings, meta); err != nil {
		return rep, err
	}
	rep.Out = out
	return rep, nil
}

// Weights are converted variables, by full path ("/model/backbone/stem/conv1/weights"), in
// float32 and our layout.
type Weights struct {
	Tensors map[string]safetensors.Tensor
	// Frozen lists the full paths of non-trainable variables (running statistics).
	Frozen []string
}

// Convert maps an open state dict onto the variables of opts' family and architecture (see
// Run, which also reads and writes the files).
func Convert(sd *StateDict, opts Options) (*Weights, Report, error) {
	rep := Report{Input: sd.Path, Format: sd.Format, Nested: sd.Nested, Alternatives: sd.Alternatives,
		Family: opts.Family, DTypes: map[string]int{}}
	fam, err := getFamily(opts.Family)
	if err != nil {
		return nil, rep, fmt.Errorf("convert: %w", err)
	}
	ck, err := fam.canonicalize(sd, opts.Prefix)
	if err != nil {
		return nil, rep, fmt.Errorf("convert: %w", err)
	}
	rep.Layout, rep.Prefix = ck.layout, ck.prefix
	p, err := fam.plan(opts, ck)
	if err != nil {
		return nil, rep, fmt.Errorf("convert %s: %w", sd.Path, err)
	}
	rep.Arch = p.arch
	scope := "/" + strings.Trim(opts.Scope, "/")
	rep.Scope = scope

	w := &Weights{Tensors: map[string]safetensors.Tensor{}}
	used := map[string]bool{}
	var missing, problems []string
	for _, tg := range p.targets {
		if train.Skipped(tg.path, opts.Skip) {
			rep.Skipped = append(rep.Skipped, tg.path)
			continue
		}
		t := ck.tensors[tg.key]
		if t == nil {
			missing = append(missing, fmt.Sprintf("%s (key %s%s)", tg.path, ck.prefix, tg.key))
			continue
		}
		used[t.Key] = true
		data, err := t.Float32()
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		shape := t.Shape
		switch {
		case tg.convert != nil:
			if data, err = tg.convert(t, data); err != nil {
				problems = append(problems, fmt.Sprintf("%s (from %s): %v", tg.path, t.Key, err))
				continue
			}
			shape = tg.shape
		case tg.perm != nil:
			if len(tg.perm) != len(shape) {
				problems = append(problems, fmt.Sprintf("%s: %s has shape %v, want rank %d", tg.path, t.Key, shape, len(tg.perm)))
				continue
			}
			data, shape = permute(data, shape, tg.perm)
		}
		if !slices.Equal(shape, tg.shape) && !squeezeEqual(shape, tg.shape) {
			problems = append(problems, fmt.Sprintf("%s: the model has shape %v, %s gives %v", tg.path, tg.shape, t.Key, shape))
			continue
		}
		full := path.Join(scope, tg.path)
		w.Tensors[strings.TrimPrefix(full, "/")] = safetensors.Tensor{DType: "F32", Shape: slices.Clone(tg.shape), Data: float32Bytes(data)}
		if tg.trainable {
			rep.Params += int64(len(data))
		} else {
			w.Frozen = append(w.Frozen, full)
			rep.Buffers += int64(len(data))
		}
		rep.Variables++
		rep.DTypes[t.DType]++
	}
	for _, k := range sd.Keys {
		if !used[k] {
			rep.Unused = append(rep.Unused, k)
		}
	}
	sort.Strings(rep.Skipped)
	sort.Strings(w.Frozen)
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("%d variables of %s have no tensor in the checkpoint (declare them in Skip if intended, e.g. \"head/*\"): %s",
			len(missing), p.arch, strings.Join(head(missing, 20), ", ")))
	}
	if len(problems) > 0 {
		return nil, rep, fmt.Errorf("convert %s as %s %s:\n  %s", sd.Path, opts.Family, p.arch, strings.Join(problems, "\n  "))
	}
	return w, rep, nil
}

// WriteFile writes the weights as our checkpoint (train's format: what train.Restore and
// train.LoadScope read), atomically, creating the folder; meta is added to the metadata.
// WriteFile writes the weights as a checkpoint (train.WriteCheckpoint), with settings and
// metadata.
func (w *Weights) WriteFile(path string, settings map[string]any, meta map[string]string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return train.WriteCheckpoint(path, w.Tensors, w.Frozen, settings, 0, meta)
}

func float32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
