package convert

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/dreamteacher-go/dreamteacher/internal/safetensors"
	"github.com/nlpodyssey/gopickle/types"
)

// StateDict is the tensors of a foreign checkpoint, by key. Tensor values stay in the file
// until read; Close releases it.
type StateDict struct {
	// Path of the file.
	Path string
	// Format is "torch-zip", "torch-legacy" or "safetensors".
	Format string
	// Nested is the key of the dict the tensors were taken from ("state_dict", "model",
	// "model_ema", ...; "a/b" for deeper ones), "" for the top level.
	Nested string
	// Alternatives are the other keys of the file's top-level dict that hold tensors (e.g.
	// "model_ema" beside "model"), which LoadOptions.Nested selects.
	Alternatives []string
	// Keys in file order.
	Keys []string
	// Tensors by key.
	Tensors map[string]*Tensor
	// Other lists the entries of the chosen dict that are not tensors (ignored).
	Other []string

	close func() error
}

// Close releases the file.
func (sd *StateDict) Close() error {
	if sd.close == nil {
		return nil
	}
	err := sd.close()
	sd.close = nil
	return err
}

// nestedKeys are the keys under which checkpoints found in practice nest their state dict, in
// order of preference: training scripts (torchvision's references, mmseg/mmdet, Lightning:
// "state_dict"), facebookresearch (ConvNeXt, DeiT: "model"), EMA weights.
var nestedKeys = []string{"state_dict", "model", "model_state", "model_state_dict", "net", "network",
	"params", "module", "ema", "model_ema", "state_dict_ema", "ema_model"}

// Load opens a PyTorch checkpoint (torch.save's zip or legacy format: .pt, .pth, .bin, .ckpt) or
// a .safetensors file and returns its state dict. The format is detected from the content.
//
// nested selects the dict holding the tensors ("model_ema"; "a/b" descends twice); empty, the
// top level when it holds tensors, else the first of "state_dict", "model", ..., "ema" that
// does (see StateDict.Nested and Alternatives). Errors name the file and the keys.
func Load(path, nested string) (*StateDict, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var head [9]byte
	n, _ := io.ReadFull(f, head[:])
	f.Close()
	if n == 9 && head[8] == '{' && binary.LittleEndian.Uint64(head[:8]) > 1 {
		return loadSafetensors(path, nested)
	}
	tf, err := openTorch(path)
	if err != nil {
		return nil, err
	}
	format := "torch-legacy"
	if bytes.Equal(head[:4], []byte("PK\x03\x04")) {
		format = "torch-zip"
	}
	sd := &StateDict{Path: path, Format: format, Tensors: map[string]*Tensor{}, close: tf.close}
	if err := sd.selectFrom(tf.root, nested); err != nil {
		sd.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sd, nil
}

func loadSafetensors(path, nested string) (*StateDict, error) {
	st, _, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if nested != "" {
		return nil, fmt.Errorf("%s: a safetensors file has no nested dicts (asked for %q)", path, nested)
	}
	sd := &StateDict{Path: path, Format: "safetensors", Tensors: map[string]*Tensor{}}
	for key, t := range st {
		sd.Keys = append(sd.Keys, key)
		sd.Tensors[key] = &Tensor{Key: key, DType: t.DType, Shape: t.Shape, file: path, src: rawSource(t.Data)}
	}
	sort.Strings(sd.Keys)
	return sd, nil
}

type rawSource []byte

func (r rawSource) bytes() ([]byte, error) { return r, nil }

// selectFrom finds the state dict in a torch file's object tree.
func (sd *StateDict) selectFrom(root any, nested string) error {
	entries, err := dictEntries(root)
	if err != nil {
		return fmt.Errorf("the file holds %s, not a state dict (save model.state_dict())", describe(root))
	}
	if nested != "" {
		cur, where := entries, ""
		for _, part := range strings.Split(nested, "/") {
			v, ok := lookup(cur, part)
			if !ok {
				return fmt.Errorf("no key %q in the dict at %q: its keys are %s", part, "/"+where, keyList(cur))
			}
			where = strings.TrimPrefix(where+"/"+part, "/")
			if cur, err = dictEntries(v); err != nil {
				return fmt.Errorf("%q holds %s, not a state dict", where, describe(v))
			}
		}
		sd.Nested = nested
		sd.Alternatives = tensorDicts(entries, nested)
		return sd.take(cur)
	}
	if hasTensors(entries) {
		sd.Alternatives = tensorDicts(entries, "")
		return sd.take(entries)
	}
	candidates := tensorDicts(entries, "")
	if len(candidates) == 0 {
		return fmt.Errorf("no tensors found: the top-level keys are %s", keyList(entries))
	}
	chosen := candidates[0]
	for _, k := range nestedKeys {
		if slices.Contains(candidates, k) {
			chosen = k
			break
		}
	}
	v, _ := lookup(entries, chosen)
	inner, _ := dictEntries(v)
	sd.Nested = chosen
	sd.Alternatives = tensorDicts(entries, chosen)
	return sd.take(inner)
}

func (sd *StateDict) take(entries []types.DictEntry) error {
	for _, e := range entries {
		key := fmt.Sprint(e.Key)
		t, ok := e.Value.(*torchTensor)
		if !ok {
			sd.Other = append(sd.Other, key)
			continue
		}
		if _, dup := sd.Tensors[key]; dup {
			return fmt.Errorf("key %q appears twice", key)
		}
		sd.Keys = append(sd.Keys, key)
		sd.Tensors[key] = &Tensor{Key: key, DType: t.dtype, Shape: t.shape, file: sd.Path, src: t}
	}
	if len(sd.Keys) == 0 {
		return fmt.Errorf("the dict %q holds no tensors: its keys are %s", sd.Nested, keyList(entries))
	}
	return nil
}

func lookup(entries []types.DictEntry, key string) (any, bool) {
	for _, e := range entries {
		if s, ok := e.Key.(string); ok && s == key {
			return e.Value, true
		}
	}
	return nil, false
}

func hasTensors(entries []types.DictEntry) bool {
	for _, e := range entries {
		if _, ok := e.Value.(*torchTensor); ok {
			return true
		}
	}
	return false
}

// tensorDicts lists the keys of entries whose values are dicts holding tensors, but except.
func tensorDicts(entries []types.DictEntry, except string) []string {
	var out []string
	for _, e := range entries {
		key, ok := e.Key.(string)
		if !ok || key == except {
			continue
		}
		if inner, err := dictEntries(e.Value); err == nil && hasTensors(inner) {
			out = append(out, key)
		}
	}
	return out
}

func keyList(entries []types.DictEntry) string {
	if len(entries) == 0 {
		return "(none: the dict is empty)"
	}
	keys := make([]string, 0, len(entries))
	for i, e := range entries {
		if i == 20 {
			keys = append(keys, fmt.Sprintf("... (%d in all)", len(entries)))
			break
		}
		keys = append(keys, fmt.Sprintf("%q", fmt.Sprint(e.Key)))
	}
	return strings.Join(keys, ", ")
}
