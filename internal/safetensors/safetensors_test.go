package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	f32 := make([]byte, 8)
	binary.LittleEndian.PutUint32(f32, 0x3f800000) // 1.0
	binary.LittleEndian.PutUint32(f32[4:], 0x40000000)
	in := map[string]Tensor{
		"a/weights": {DType: "F32", Shape: []int{2}, Data: f32},
		"step":      {DType: "I64", Shape: []int{}, Data: make([]byte, 8)},
	}
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := WriteFile(path, in, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	out, meta, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if meta["format"] != "pt" || len(out) != 2 || !bytes.Equal(out["a/weights"].Data, f32) || len(out["step"].Shape) != 0 {
		t.Errorf("round trip gave %v %v", out, meta)
	}
	// The header is 8-byte aligned, as the reference implementation writes it.
	raw, _ := os.ReadFile(path)
	if n := binary.LittleEndian.Uint64(raw); n%8 != 0 {
		t.Errorf("header length %d not aligned", n)
	}
}

func TestCorruptFiles(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, map[string]Tensor{"w": {DType: "F64", Shape: []int{3}, Data: make([]byte, 24)}}, nil); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	for name, data := range map[string][]byte{
		"tiny":      full[:4],
		"truncated": full[:len(full)-5],
		"header":    append(append([]byte{}, full[:8]...), []byte("{not json")...),
	} {
		path := filepath.Join(t.TempDir(), name+".safetensors")
		os.WriteFile(path, data, 0o644)
		if _, _, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %v, want one naming %s", name, err, path)
		}
	}
	if err := Write(&buf, map[string]Tensor{"w": {DType: "F32", Shape: []int{3}, Data: make([]byte, 4)}}, nil); err == nil {
		t.Error("writing a tensor whose data does not match its shape must fail")
	}
}

func TestWriteFileFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ckpt.safetensors")
	if err := WriteFile(path, map[string]Tensor{"w": {DType: "U8", Shape: []int{1}, Data: []byte{7}}}, nil); err != nil {
		t.Fatal(err)
	}
	bad := map[string]Tensor{"w": {DType: "U8", Shape: []int{2}, Data: []byte{1}}} // inconsistent
	if err := WriteFile(path, bad, nil); err == nil {
		t.Fatal("want an error")
	}
	out, _, err := ReadFile(path)
	if err != nil || out["w"].Data[0] != 7 {
		t.Errorf("old file damaged: %v %v", out, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

// TestChecksums: a flipped byte in a tensor's data is an error naming the file and the tensor;
// a file written without checksums (by another library) still reads.
func TestChecksums(t *testing.T) {
	in := map[string]Tensor{
		"a": {DType: "F32", Shape: []int{2}, Data: []byte{0, 0, 128, 63, 0, 0, 0, 64}},
		"b": {DType: "U8", Shape: []int{3}, Data: []byte{1, 2, 3}},
	}
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := WriteFile(path, in, nil); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	flipped := append([]byte{}, raw...)
	flipped[len(flipped)-1] ^= 0x10 // the last byte of "b" (tensors are stored in name order)
	os.WriteFile(path, flipped, 0o644)
	_, _, err := ReadFile(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `tensor "b" is corrupt`) {
		t.Errorf("flipped byte: error %v, want one naming %s and tensor b", err, path)
	}

	// The same file as a foreign writer would write it: no checksum metadata.
	n := binary.LittleEndian.Uint64(raw)
	var header map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+n], &header); err != nil {
		t.Fatal(err)
	}
	delete(header, "__metadata__")
	h, _ := json.Marshal(header)
	foreign := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	foreign = append(append(foreign, h...), raw[8+n:]...)
	out, _, err := Parse(foreign)
	if err != nil || !bytes.Equal(out["b"].Data, []byte{1, 2, 3}) {
		t.Errorf("file without checksums: %v %v", out, err)
	}
}
