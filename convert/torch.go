package convert

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path"
	"strings"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"
)

// This file reads torch.save files: the zip format (PyTorch >= 1.6: <archive>/data.pkl, a
// pickle whose persistent ids name storages stored as <archive>/data/<key>) and the legacy
// format (magic number, protocol version and system info pickles, the object pickle, the list
// of storage keys, then each storage as an int64 element count and its raw bytes). Storages
// are read lazily, only the range a tensor's view covers.

// storage is a torch storage: count elements of dtype, read by readRange.
type storage struct {
	dtype string
	count int
	// readRange reads elements [lo, hi).
	readRange func(lo, hi int) ([]byte, error)
}

// torchTensor is a tensor rebuilt by torch._utils._rebuild_tensor_v2/v3: a view of a storage.
type torchTensor struct {
	storage *storage
	dtype   string // the element type (the storage's, or v3's explicit dtype)
	offset  int    // in elements
	shape   []int
	stride  []int
}

func (t *torchTensor) bytes() ([]byte, error) {
	s := t.storage
	elem := elementSize(t.dtype)
	if elem == 0 {
		return nil, fmt.Errorf("unsupported dtype %s", t.dtype)
	}
	lo, hi, contiguous, err := viewSpan(t.offset, t.shape, t.stride)
	if err != nil {
		return nil, fmt.Errorf("view of shape %v, stride %v at offset %d: %w", t.shape, t.stride, t.offset, err)
	}
	count := s.count
	if t.dtype != s.dtype { // v3: an untyped (byte) storage read as dtype
		count = s.count * elementSize(s.dtype) / elem
	}
	if lo < 0 || hi > count {
		return nil, fmt.Errorf("view of shape %v, stride %v at offset %d needs storage elements [%d, %d), the storage has %d",
			t.shape, t.stride, t.offset, lo, hi, count)
	}
	byteScale := elem / elementSize(s.dtype) // 1, or elem for byte storages
	raw, err := s.readRange(lo*byteScale, hi*byteScale)
	if err != nil {
		return nil, err
	}
	if contiguous {
		return raw, nil
	}
	return gatherStrided(raw, elem, lo, t.offset, t.shape, t.stride), nil
}

// storageType is a torch.<X>Storage class (the second field of a storage's persistent id).
type storageType struct{ dtype string }

var storageTypes = map[string]string{
	"FloatStorage": "F32", "DoubleStorage": "F64", "HalfStorage": "F16", "BFloat16Storage": "BF16",
	"LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8",
	"ByteStorage": "U8", "BoolStorage": "BOOL", "UntypedStorage": "U8",
	"ComplexFloatStorage": "C64", "ComplexDoubleStorage": "C128",
}

// torchDType is a torch.dtype global (torch.float32), an argument of _rebuild_tensor_v3.
type torchDType struct{ dtype string }

var torchDTypes = map[string]string{
	"float32": "F32", "float": "F32", "float64": "F64", "double": "F64", "float16": "F16", "half": "F16",
	"bfloat16": "BF16", "int64": "I64", "long": "I64", "int32": "I32", "int": "I32", "int16": "I16",
	"short": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL", "complex64": "C64", "complex128": "C128",
}

// pyClass stands for any other Python class or function: calling or instantiating it yields a
// pyObject that remembers its arguments and state, so that checkpoints holding training
// metadata (argparse.Namespace, numpy scalars, ...) unpickle.
type pyClass struct{ module, name string }

type pyObject struct {
	class *pyClass
	args  []any
	state any
}

func (c *pyClass) Call(args ...any) (any, error)  { return &pyObject{class: c, args: args}, nil }
func (c *pyClass) PyNew(args ...any) (any, error) { return &pyObject{class: c, args: args}, nil }
func (o *pyObject) PySetState(state any) error    { o.state = state; return nil }

// callFunc adapts a Go function to a pickled Python callable.
type callFunc func(args ...any) (any, error)

func (f callFunc) Call(args ...any) (any, error) { return f(args...) }

func findClass(module, name string) (any, error) {
	full := module + "." + name
	switch full {
	case "torch._utils._rebuild_tensor_v2":
		return callFunc(rebuildTensor), nil
	case "torch._utils._rebuild_tensor_v3":
		return callFunc(func(args ...any) (any, error) {
			if len(args) < 7 {
				return nil, fmt.Errorf("_rebuild_tensor_v3: %d arguments, want 7 or 8", len(args))
			}
			dt, ok := args[6].(*torchDType)
			if !ok {
				return nil, fmt.Errorf("_rebuild_tensor_v3: argument 7 is %T, want a torch dtype", args[6])
			}
			t, err := rebuildTensor(args[:6]...)
			if err != nil {
				return nil, err
			}
			t.(*torchTensor).dtype = dt.dtype
			return t, nil
		}), nil
	case "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state":
		return callFunc(func(args ...any) (any, error) {
			if len(args) == 0 {
				return nil, fmt.Errorf("%s without arguments", full)
			}
			return args[0], nil
		}), nil
	case "torch._tensor._rebuild_from_type_v2", "torch._tensor._rebuild_from_type":
		// (func, new_type, args, state): a tensor subclass; rebuild the plain tensor.
		return callFunc(func(args ...any) (any, error) {
			if len(args) < 3 {
				return nil, fmt.Errorf("%s: %d arguments", full, len(args))
			}
			fn, ok := args[0].(types.Callable)
			fargs, ok2 := args[2].(*types.Tuple)
			if !ok || !ok2 {
				return nil, fmt.Errorf("%s: unexpected arguments %T, %T", full, args[0], args[2])
			}
			return fn.Call(*fargs...)
		}), nil
	case "torch._utils._rebuild_qtensor", "torch._utils._rebuild_sparse_tensor", "torch._utils._rebuild_sparse_csr_tensor",
		"torch._utils._rebuild_meta_tensor_no_storage", "torch._utils._rebuild_wrapper_subclass",
		"torch._utils._rebuild_device_tensor_from_numpy", "torch._utils._rebuild_xla_tensor", "torch._utils._rebuild_mlc_tensor":
		return callFunc(func(args ...any) (any, error) {
			return nil, fmt.Errorf("%s: quantized, sparse, meta and device tensors are not supported (save dense CPU tensors)", full)
		}), nil
	}
	if module == "torch" || module == "torch.storage" {
		if dt, ok := storageTypes[name]; ok {
			return &storageType{dtype: dt}, nil
		}
		if name == "TypedStorage" {
			return nil, fmt.Errorf("torch.storage.TypedStorage pickled directly is not supported")
		}
	}
	if module == "torch" {
		if dt, ok := torchDTypes[name]; ok {
			return &torchDType{dtype: dt}, nil
		}
	}
	return &pyClass{module: module, name: name}, nil
}

// rebuildTensor is torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
// requires_grad, backward_hooks[, metadata]).
func rebuildTensor(args ...any) (any, error) {
	if len(args) < 4 {
		return nil, fmt.Errorf("_rebuild_tensor_v2: %d arguments, want 6 or 7", len(args))
	}
	s, ok := args[0].(*storage)
	if !ok {
		return nil, fmt.Errorf("_rebuild_tensor_v2: argument 1 is %T, want a storage", args[0])
	}
	offset, ok := args[1].(int)
	if !ok {
		return nil, fmt.Errorf("_rebuild_tensor_v2: storage offset is %T, want an int", args[1])
	}
	shape, err := intTuple(args[2])
	if err != nil {
		return nil, fmt.Errorf("_rebuild_tensor_v2: size: %w", err)
	}
	stride, err := intTuple(args[3])
	if err != nil {
		return nil, fmt.Errorf("_rebuild_tensor_v2: stride: %w", err)
	}
	return &torchTensor{storage: s, dtype: s.dtype, offset: offset, shape: shape, stride: stride}, nil
}

func intTuple(v any) ([]int, error) {
	t, ok := v.(*types.Tuple)
	if !ok {
		return nil, fmt.Errorf("%T, want a tuple of ints", v)
	}
	out := make([]int, t.Len())
	for i := range out {
		n, ok := t.Get(i).(int)
		if !ok {
			return nil, fmt.Errorf("element %d is %T, want an int", i, t.Get(i))
		}
		out[i] = n
	}
	return out, nil
}

// storageID parses a persistent id ('storage', storage_type, key, location, numel[, view_metadata]).
func storageID(pid any) (st *storageType, key string, count int, view any, err error) {
	tuple, ok := pid.(*types.Tuple)
	if !ok || tuple.Len() < 5 {
		return nil, "", 0, nil, fmt.Errorf("unexpected persistent id %#v", pid)
	}
	if kind, _ := tuple.Get(0).(string); kind != "storage" {
		return nil, "", 0, nil, fmt.Errorf("persistent id of kind %v is not supported (a pickled module? save model.state_dict())", tuple.Get(0))
	}
	st, ok = tuple.Get(1).(*storageType)
	if !ok {
		return nil, "", 0, nil, fmt.Errorf("storage of type %v is not supported", tuple.Get(1))
	}
	switch k := tuple.Get(2).(type) {
	case string:
		key = k
	case int:
		key = fmt.Sprint(k)
	default:
		return nil, "", 0, nil, fmt.Errorf("storage key %#v is not a string", tuple.Get(2))
	}
	count, ok = tuple.Get(4).(int)
	if !ok {
		return nil, "", 0, nil, fmt.Errorf("storage %s: element count %#v is not an int", key, tuple.Get(4))
	}
	if tuple.Len() > 5 {
		view = tuple.Get(5)
	}
	return st, key, count, view, nil
}

// torchFile is an open torch.save file: its unpickled root object, and the file kept open for
// reading storages.
type torchFile struct {
	root  any
	close func() error
}

// openTorch reads a torch.save file's object tree; storages stay on disk until read.
func openTorch(filename string) (*torchFile, error) {
	f, err := os.Open(filename)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: not a PyTorch checkpoint (%d bytes)", filename, info.Size())
	}
	if string(magic[:]) == "PK\x03\x04" {
		tf, err := openTorchZip(f, info.Size())
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", filename, err)
		}
		return tf, nil
	}
	defer f.Close()
	data, err := os.ReadFile(filename)
	if err != nil {
		return nil, err
	}
	tf, err := openTorchLegacy(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filename, err)
	}
	return tf, nil
}

func openTorchZip(f *os.File, size int64) (*torchFile, error) {
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return nil, fmt.Errorf("corrupt zip archive: %w", err)
	}
	var pkl *zip.File
	for _, zf := range zr.File {
		if path.Base(zf.Name) == "data.pkl" && strings.Count(zf.Name, "/") == 1 {
			pkl = zf
			break
		}
	}
	if pkl == nil {
		for _, zf := range zr.File {
			if path.Base(zf.Name) == "constants.pkl" {
				return nil, fmt.Errorf("a TorchScript archive (torch.jit.save), not a torch.save checkpoint: save model.state_dict() with torch.save")
			}
		}
		return nil, fmt.Errorf("a zip archive without data.pkl: not a torch.save checkpoint")
	}
	prefix := path.Dir(pkl.Name) + "/"
	records := map[string]*zip.File{}
	for _, zf := range zr.File {
		records[zf.Name] = zf
	}
	if bo := records[prefix+"byteorder"]; bo != nil {
		if b, err := readZipFile(bo); err == nil && strings.TrimSpace(string(b)) == "big" {
			return nil, fmt.Errorf("saved on a big-endian machine: not supported")
		}
	}
	storages := map[string]*storage{}
	rc, err := pkl.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	u := pickle.NewUnpickler(bytesReader(rc))
	u.FindClass = findClass
	u.PersistentLoad = func(pid any) (any, error) {
		st, key, count, _, err := storageID(pid)
		if err != nil {
			return nil, err
		}
		if s, ok := storages[key]; ok {
			return s, nil
		}
		rec := records[prefix+"data/"+key]
		if rec == nil {
			return nil, fmt.Errorf("storage %s: no record %sdata/%s in the archive (truncated file?)", key, prefix, key)
		}
		elem := elementSize(st.dtype)
		if int64(count)*int64(elem) > int64(rec.UncompressedSize64) {
			return nil, fmt.Errorf("storage %s: %d elements of %s need %d bytes, the record has %d (truncated file?)",
				key, count, st.dtype, count*elem, rec.UncompressedSize64)
		}
		s := &storage{dtype: st.dtype, count: count, readRange: func(lo, hi int) ([]byte, error) {
			return readZipRange(f, rec, int64(lo*elem), int64(hi*elem))
		}}
		storages[key] = s
		return s, nil
	}
	root, err := u.Load()
	if err != nil {
		return nil, fmt.Errorf("unpickling %s: %w", pkl.Name, err)
	}
	return &torchFile{root: root, close: f.Close}, nil
}

// bytesReader gives gopickle a reader with ReadByte without reading past what it consumes.
func bytesReader(r io.Reader) io.Reader {
	if _, ok := r.(io.ByteReader); ok {
		return r
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return errReader{err}
	}
	return bytes.NewReader(b)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
func (e errReader) ReadByte() (byte, error)  { return 0, e.err }

func readZipFile(zf *zip.File) ([]byte, error) {
	rc, err := zf.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// readZipRange reads bytes [lo, hi) of a zip record: directly from the file when it is stored
// (torch.save never compresses), else by decompressing up to hi.
func readZipRange(f *os.File, rec *zip.File, lo, hi int64) ([]byte, error) {
	out := make([]byte, hi-lo)
	if rec.Method == zip.Store {
		off, err := rec.DataOffset()
		if err != nil {
			return nil, err
		}
		if _, err := f.ReadAt(out, off+lo); err != nil {
			return nil, fmt.Errorf("reading record %s: %w", rec.Name, err)
		}
		return out, nil
	}
	rc, err := rec.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, lo); err != nil {
		return nil, fmt.Errorf("reading record %s: %w", rec.Name, err)
	}
	if _, err := io.ReadFull(rc, out); err != nil {
		return nil, fmt.Errorf("reading record %s: %w", rec.Name, err)
	}
	return out, nil
}

const legacyMagic = "1950a86a20f9469cfc6c"

func openTorchLegacy(data []byte) (*torchFile, error) {
	if len(data) > 262 && string(data[257:262]) == "ustar" {
		return nil, fmt.Errorf("the tar format of torch.save (PyTorch < 0.4) is not supported: load it in PyTorch and save it again")
	}
	r := bytes.NewReader(data)
	load := func() (any, error) {
		u := pickle.NewUnpickler(r)
		u.FindClass = findClass
		return u.Load()
	}
	magic, err := load()
	if m, ok := magic.(*big.Int); err != nil || !ok || m.Text(16) != legacyMagic {
		return nil, fmt.Errorf("not a PyTorch checkpoint (neither torch.save's zip format nor its legacy format) nor a safetensors file")
	}
	if proto, err := load(); err != nil || proto != 1001 {
		return nil, fmt.Errorf("legacy torch.save format: unsupported protocol version %v", proto)
	}
	sysInfo, err := load()
	if err != nil {
		return nil, fmt.Errorf("legacy torch.save format: system info: %w", err)
	}
	if d, ok := sysInfo.(*types.Dict); ok {
		if le, ok := d.Get("little_endian"); ok && le == false {
			return nil, fmt.Errorf("saved on a big-endian machine: not supported")
		}
	}
	storages := map[string]*storage{}
	u := pickle.NewUnpickler(r)
	u.FindClass = findClass
	u.PersistentLoad = func(pid any) (any, error) {
		st, key, count, view, err := storageID(pid)
		if err != nil {
			return nil, err
		}
		if view != nil {
			return nil, fmt.Errorf("storage %s: legacy storage views are not supported: load it in PyTorch and save it again", key)
		}
		if s, ok := storages[key]; ok {
			return s, nil
		}
		s := &storage{dtype: st.dtype, count: count}
		storages[key] = s
		return s, nil
	}
	root, err := u.Load()
	if err != nil {
		return nil, fmt.Errorf("unpickling: %w", err)
	}
	keysObj, err := load()
	if err != nil {
		return nil, fmt.Errorf("legacy torch.save format: storage keys: %w", err)
	}
	keys, ok := keysObj.(*types.List)
	if !ok {
		return nil, fmt.Errorf("legacy torch.save format: storage keys are %T, want a list", keysObj)
	}
	pos := len(data) - r.Len()
	for _, k := range *keys {
		key := fmt.Sprint(k)
		s := storages[key]
		if s == nil {
			return nil, fmt.Errorf("legacy torch.save format: storage %s is listed but never used", key)
		}
		if pos+8 > len(data) {
			return nil, fmt.Errorf("storage %s: truncated file", key)
		}
		n := int(binary.LittleEndian.Uint64(data[pos:]))
		elem := elementSize(s.dtype)
		pos += 8
		if n != s.count {
			return nil, fmt.Errorf("storage %s: %d elements on disk, the pickle says %d", key, n, s.count)
		}
		start, end := pos, pos+n*elem
		if end > len(data) {
			return nil, fmt.Errorf("storage %s: truncated file (%d bytes missing)", key, end-len(data))
		}
		s.readRange = func(lo, hi int) ([]byte, error) {
			return data[start+lo*elem : start+hi*elem], nil
		}
		pos = end
	}
	for key, s := range storages {
		if s.readRange == nil {
			return nil, fmt.Errorf("legacy torch.save format: storage %s has no data", key)
		}
	}
	return &torchFile{root: root, close: func() error { return nil }}, nil
}

var errNotDict = errors.New("not a dict")

// dictEntries returns the entries of a pickled dict or OrderedDict, in order.
func dictEntries(v any) ([]types.DictEntry, error) {
	switch d := v.(type) {
	case *types.Dict:
		return *d, nil
	case *types.OrderedDict:
		out := make([]types.DictEntry, 0, d.Len())
		for e := d.List.Front(); e != nil; e = e.Next() {
			entry := e.Value.(*types.OrderedDictEntry)
			out = append(out, types.DictEntry{Key: entry.Key, Value: entry.Value})
		}
		return out, nil
	}
	return nil, errNotDict
}

// describe names a pickled value's type for error messages.
func describe(v any) string {
	switch o := v.(type) {
	case *pyObject:
		return "a " + o.class.module + "." + o.class.name + " object"
	case *torchTensor:
		return "a tensor"
	case *types.Dict, *types.OrderedDict:
		return "a dict"
	case *types.List:
		return "a list"
	case *types.Tuple:
		return "a tuple"
	}
	return fmt.Sprintf("a %T", v)
}
