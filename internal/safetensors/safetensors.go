// Package safetensors reads and writes the safetensors format (Hugging Face): an 8-byte
// little-endian header length, a JSON header mapping each tensor name to its dtype, shape and
// byte range, optional string metadata under "__metadata__", then the raw little-endian data.
//
// Our checkpoints use it, so that PyTorch (safetensors.torch.load_file) reads them as they are,
// and converted PyTorch weights are read with the same code.
//
// Integrity: Write stores a CRC-32C (Castagnoli) of every tensor's bytes in the metadata under
// ChecksumsKey (a JSON object, tensor name -> 8 hex digits); Parse verifies each one it finds and
// names the tensor whose bytes changed. The format has no checksum of its own, so files written
// elsewhere (Hugging Face, PyTorch) carry none and are read unverified; other readers ignore the
// key. A per-tensor sum, rather than one for the file, says which variable a flipped bit hit.
package safetensors

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// IsFloat reports whether a safetensors dtype name is a floating-point type (F16, BF16, F32, F64).
func IsFloat(dtype string) bool {
	switch dtype {
	case "F16", "BF16", "F32", "F64":
		return true
	}
	return false
}

// ChecksumsKey is the metadata key of the per-tensor CRC-32C checksums.
const ChecksumsKey = "dreamteacher.crc32c"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum is the CRC-32C of a tensor's bytes as stored under ChecksumsKey.
func checksum(data []byte) string { return fmt.Sprintf("%08x", crc32.Checksum(data, castagnoli)) }

// Tensor is one named array: dtype ("F32", "F64", "I64", ...), shape and raw little-endian bytes.
type Tensor struct {
	DType string
	Shape []int
	Data  []byte
}

// ElementSize returns the bytes per element of a safetensors dtype, or 0 if unknown.
func ElementSize(dtype string) int {
	switch dtype {
	case "F64", "I64", "U64":
		return 8
	case "F32", "I32", "U32":
		return 4
	case "F16", "BF16", "I16", "U16":
		return 2
	case "I8", "U8", "BOOL":
		return 1
	}
	return 0
}

type headerEntry struct {
	DType       string `json:"dtype"`
	Shape       []int  `json:"shape"`
	DataOffsets [2]int `json:"data_offsets"`
}

// Write writes tensors (in sorted name order) and metadata to w, with the tensors' checksums
// added to the metadata under ChecksumsKey.
func Write(w io.Writer, tensors map[string]Tensor, metadata map[string]string) error {
	names := make([]string, 0, len(tensors))
	for name := range tensors {
		names = append(names, name)
	}
	sort.Strings(names)
	sums := make(map[string]string, len(tensors))
	for _, name := range names {
		sums[name] = checksum(tensors[name].Data)
	}
	sumsJSON, err := json.Marshal(sums)
	if err != nil {
		return err
	}
	meta := map[string]string{ChecksumsKey: string(sumsJSON)}
	for k, v := range metadata {
		if k != ChecksumsKey {
			meta[k] = v
		}
	}
	header := map[string]any{"__metadata__": meta}
	offset := 0
	for _, name := range names {
		t := tensors[name]
		size := ElementSize(t.DType)
		if size == 0 {
			return fmt.Errorf("tensor %q: unsupported dtype %q", name, t.DType)
		}
		n := 1
		for _, d := range t.Shape {
			n *= d
		}
		if n*size != len(t.Data) {
			return fmt.Errorf("tensor %q: shape %v of %s needs %d bytes, has %d", name, t.Shape, t.DType, n*size, len(t.Data))
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[name] = headerEntry{DType: t.DType, Shape: shape, DataOffsets: [2]int{offset, offset + len(t.Data)}}
		offset += len(t.Data)
	}
	h, err := json.Marshal(header)
	if err != nil {
		return err
	}
	for len(h)%8 != 0 { // align the data to 8 bytes, as the reference implementation does
		h = append(h, ' ')
	}
	if err := binary.Write(w, binary.LittleEndian, uint64(len(h))); err != nil {
		return err
	}
	if _, err := w.Write(h); err != nil {
		return err
	}
	for _, name := range names {
		if _, err := w.Write(tensors[name].Data); err != nil {
			return err
		}
	}
	return nil
}

// WriteFile writes the file atomically: to a temporary file in the same folder, synced, then
// renamed over path. A failure leaves any previous file at path untouched.
func WriteFile(path string, tensors map[string]Tensor, metadata map[string]string) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err = Write(bw, tensors, metadata); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// ReadFile reads all tensors and the metadata of a safetensors file. Errors name the file.
func ReadFile(path string) (map[string]Tensor, map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	tensors, meta, err := Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return tensors, meta, nil
}

// Parse decodes a whole safetensors file held in memory. The tensors' Data alias data.
func Parse(data []byte) (map[string]Tensor, map[string]string, error) {
	if len(data) < 8 {
		return nil, nil, fmt.Errorf("not a safetensors file: %d bytes", len(data))
	}
	n := binary.LittleEndian.Uint64(data[:8])
	if n > uint64(len(data)-8) {
		return nil, nil, fmt.Errorf("not a safetensors file (or truncated): header of %d bytes in a file of %d", n, len(data))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+n], &raw); err != nil {
		return nil, nil, fmt.Errorf("corrupt safetensors header: %v", err)
	}
	body := data[8+n:]
	tensors := map[string]Tensor{}
	var meta map[string]string
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &meta); err != nil {
				return nil, nil, fmt.Errorf("corrupt __metadata__: %v", err)
			}
			continue
		}
		var e headerEntry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, nil, fmt.Errorf("tensor %q: corrupt header entry: %v", name, err)
		}
		size := ElementSize(e.DType)
		if size == 0 {
			return nil, nil, fmt.Errorf("tensor %q: unsupported dtype %q", name, e.DType)
		}
		count := 1
		for _, d := range e.Shape {
			count *= d
		}
		start, end := e.DataOffsets[0], e.DataOffsets[1]
		if start < 0 || end < start || end > len(body) || end-start != count*size {
			return nil, nil, fmt.Errorf("tensor %q: data offsets %v do not fit shape %v of %s in %d data bytes (truncated file?)",
				name, e.DataOffsets, e.Shape, e.DType, len(body))
		}
		tensors[name] = Tensor{DType: e.DType, Shape: e.Shape, Data: body[start:end]}
	}
	if err := verify(tensors, meta); err != nil {
		return nil, nil, err
	}
	return tensors, meta, nil
}

// verify checks the tensors against the checksums in meta, if it has them.
func verify(tensors map[string]Tensor, meta map[string]string) error {
	raw, ok := meta[ChecksumsKey]
	if !ok {
		return nil
	}
	var sums map[string]string
	if err := json.Unmarshal([]byte(raw), &sums); err != nil {
		return fmt.Errorf("corrupt %s metadata: %v", ChecksumsKey, err)
	}
	names := make([]string, 0, len(tensors))
	for name := range tensors {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		want, ok := sums[name]
		if !ok {
			return fmt.Errorf("tensor %q has no checksum in the file's %s metadata (file altered?)", name, ChecksumsKey)
		}
		if got := checksum(tensors[name].Data); got != want {
			return fmt.Errorf("tensor %q is corrupt: its bytes have CRC-32C %s, the file recorded %s when it was written", name, got, want)
		}
	}
	if len(sums) != len(tensors) {
		return fmt.Errorf("the file's %s metadata lists %d tensors, the file holds %d (file altered?)", ChecksumsKey, len(sums), len(tensors))
	}
	return nil
}

// ReadMetadata reads only the header's string metadata of a safetensors file (not its data).
func ReadMetadata(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var n uint64
	if err := binary.Read(f, binary.LittleEndian, &n); err != nil {
		return nil, fmt.Errorf("%s: not a safetensors file: %v", path, err)
	}
	if st, err := f.Stat(); err == nil && n > uint64(st.Size()) {
		return nil, fmt.Errorf("%s: not a safetensors file (or truncated): header of %d bytes in a file of %d", path, n, st.Size())
	}
	header := make([]byte, n)
	if _, err := io.ReadFull(f, header); err != nil {
		return nil, fmt.Errorf("%s: truncated header: %v", path, err)
	}
	var raw struct {
		Meta map[string]string `json:"__metadata__"`
	}
	if err := json.Unmarshal(header, &raw); err != nil {
		return nil, fmt.Errorf("%s: corrupt safetensors header: %v", path, err)
	}
	return raw.Meta, nil
}
