package convert

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Entry is a known pretrained checkpoint.
type Entry struct {
	// Name is how Run and Fetch refer to it: timm's "<arch>.<tag>" names ("resnet50.tv_in1k"),
	// "timm/<name>" for timm's Hugging Face copies, guided-diffusion's file names.
	Name   string
	Family string // "resnet", "convnext", "adm"
	Arch   string // our architecture name
	// URL is where the file is published. For a hub entry it is the hub's address of the file
	// at Revision, for people who fetch it by hand; downloads go through the hub client.
	URL string
	// File is the name of the file in the cache folder (default: the URL's last element). Hub
	// entries are not in that folder but in the Hugging Face cache (see Fetcher).
	File string
	// Hub is the Hugging Face hub repository holding the file ("timm/convnext_tiny.fb_in1k"),
	// empty for a file at a plain URL. HubFile is the file's path in the repository.
	Hub, HubFile string
	// Revision of the hub repository: a commit hash pins the file; a branch ("main", the
	// default) takes whatever it points to when first downloaded.
	Revision string
	// SHA256 of the file when known; SHA256Prefix when only a prefix is (torchvision's file
	// names end with the first 8 hex digits of their SHA-256, which torch.hub checks).
	SHA256, SHA256Prefix string
	// Nested is the dict of the checkpoint holding the weights, when not the top level.
	Nested string
	// Classes of the checkpoint's classifier (0: none).
	Classes int
	// Source says where the URL is published.
	Source string
}

// FileName is the file's name in the cache folder; for a hub entry, its repository and path
// in it ("timm/convnext_tiny.fb_in1k/model.safetensors").
func (e Entry) FileName() string {
	if e.Hub != "" {
		return e.Hub + "/" + e.HubFile
	}
	if e.File != "" {
		return e.File
	}
	return path.Base(e.URL)
}

var catalogue = buildCatalogue()

func buildCatalogue() []Entry {
	var out []Entry
	tv := "torchvision 0.14 torchvision/models/resnet.py"
	for _, r := range []struct{ name, v1, v2 string }{
		{"resnet18", "resnet18-f37072fd.pth", ""},
		{"resnet34", "resnet34-b627a593.pth", ""},
		{"resnet50", "resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"},
		{"resnet101", "resnet101-63fe2227.pth", "resnet101-cd907fc2.pth"},
		{"resnet152", "resnet152-394f9c45.pth", "resnet152-f82ba261.pth"},
	} {
		add := func(tag, file, weights string) {
			out = append(out, Entry{Name: r.name + "." + tag, Family: "resnet", Arch: r.name,
				URL: "https://download.pytorch.org/models/" + file, SHA256Prefix: hashPrefix(file), Classes: 1000,
				Source: tv + ", " + weights})
		}
		add("tv_in1k", r.v1, "IMAGENET1K_V1")
		if r.v2 != "" {
			add("tv2_in1k", r.v2, "IMAGENET1K_V2")
		}
	}
	fb := "facebookresearch/ConvNeXt README (timm's convnext.py cites the same URLs)"
	for _, size := range []string{"tiny", "small", "base"} {
		arch := "convnext_" + size
		base := "https://dl.fbaipublicfiles.com/convnext/" + arch
		out = append(out,
			Entry{Name: arch + ".fb_in1k", Family: "convnext", Arch: arch, URL: base + "_1k_224_ema.pth", Nested: "model",
				Classes: 1000, Source: fb + ", ImageNet-1k, EMA weights"},
			Entry{Name: arch + ".fb_in22k", Family: "convnext", Arch: arch, URL: base + "_22k_224.pth", Nested: "model",
				Classes: 21841, Source: fb + ", ImageNet-22k"},
			Entry{Name: arch + ".fb_in22k_ft_in1k", Family: "convnext", Arch: arch, URL: base + "_22k_1k_224.pth", Nested: "model",
				Classes: 1000, Source: fb + ", ImageNet-22k fine-tuned on ImageNet-1k"},
		)
		for _, tag := range []string{"fb_in1k", "fb_in22k", "fb_in22k_ft_in1k"} {
			classes := 1000
			if tag == "fb_in22k" {
				classes = 21841
			}
			out = append(out, hubEntry("timm/"+arch+"."+tag, "model.safetensors", hubMain, Entry{
				Family: "convnext", Arch: arch, Classes: classes,
				Source: "timm's pretrained config (hf_hub_id 'timm/'), Hugging Face hub, timm layout"}))
		}
	}
	for _, c := range []struct{ arch, file string }{
		{"convnext_tiny", "convnext_tiny-983f1562.pth"},
		{"convnext_small", "convnext_small-0c510722.pth"},
		{"convnext_base", "convnext_base-6075fbad.pth"},
	} {
		out = append(out, Entry{Name: c.arch + ".tv_in1k", Family: "convnext", Arch: c.arch,
			URL: "https://download.pytorch.org/models/" + c.file, SHA256Prefix: hashPrefix(c.file), Classes: 1000,
			Source: "torchvision 0.14 torchvision/models/convnext.py, IMAGENET1K_V1"})
	}
	gd := "openai/guided-diffusion README"
	for _, a := range []struct{ name, arch string }{
		{"256x256_diffusion_uncond", "adm_256x256_uncond"},
		{"256x256_diffusion", "adm_256x256_cond"},
		{"lsun_bedroom", "adm_256x256_lsun"},
		{"lsun_cat", "adm_256x256_lsun"},
		{"lsun_horse", "adm_256x256_lsun"},
	} {
		out = append(out, Entry{Name: a.name, Family: "adm", Arch: a.arch,
			URL: "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/" + a.name + ".pt", Source: gd})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// hubMain is the revision of the hub entries whose reference names none: timm's pretrained
// configs give only the repository (hf_hub_id), and timm downloads the head of its main branch.
// The file is still checked on download against the SHA-256 that the hub publishes for it
// (its LFS object id), and once in the Hugging Face cache it is used as it is.
const hubMain = "main"

// hubEntry completes e as the file of a Hugging Face hub repository (also named repo).
func hubEntry(repo, file, revision string, e Entry) Entry {
	e.Name, e.Hub, e.HubFile, e.Revision = repo, repo, file, revision
	e.URL = defaultHubEndpoint + "/" + repo + "/resolve/" + revision + "/" + file
	return e
}

// hashPrefix is the SHA-256 prefix in a torch.hub file name ("resnet50-0676ba61.pth"), as
// torch.hub's HASH_REGEX "-([a-f0-9]*)\.".
func hashPrefix(file string) string {
	base := strings.TrimSuffix(file, path.Ext(file))
	i := strings.LastIndex(base, "-")
	if i < 0 {
		return ""
	}
	h := base[i+1:]
	for _, c := range h {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return ""
		}
	}
	return h
}

// Catalogue lists the known pretrained checkpoints, sorted by name.
func Catalogue() []Entry { return append([]Entry(nil), catalogue...) }

// CatalogueNames lists the names of the catalogue's entries.
func CatalogueNames() []string {
	names := make([]string, len(catalogue))
	for i, e := range catalogue {
		names[i] = e.Name
	}
	return names
}

// Lookup returns the catalogue entry of that name, or of that architecture when exactly one
// entry has it: `adm_256x256_uncond` (our configuration's name, the one configs and the
// Makefile speak of) is guided-diffusion's `256x256_diffusion_uncond`. An architecture with
// several checkpoints (resnet50: tv_in1k and tv2_in1k) must be named by its entry.
func Lookup(name string) (Entry, bool) {
	var byArch []Entry
	for _, e := range catalogue {
		if e.Name == name {
			return e, true
		}
		if e.Arch == name {
			byArch = append(byArch, e)
		}
	}
	if len(byArch) == 1 {
		return byArch[0], true
	}
	return Entry{}, false
}

// DefaultCacheDir is where downloaded checkpoints go: $DREAMTEACHER_WEIGHTS, else
// <user cache dir>/dreamteacher/weights (~/.cache/dreamteacher/weights on Linux).
func DefaultCacheDir() string {
	if d := os.Getenv("DREAMTEACHER_WEIGHTS"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "dreamteacher", "weights")
	}
	return filepath.Join(os.TempDir(), "dreamteacher-weights")
}

// Fetcher finds catalogue files in a cache folder, downloading the missing ones. Files at a
// plain URL go to CacheDir; hub entries (Entry.Hub) go to the Hugging Face cache through
// go-huggingface's hub client, shared with Python's huggingface_hub and other programs.
type Fetcher struct {
	// CacheDir holds the files under their Entry.FileName (default: DefaultCacheDir()).
	CacheDir string
	// Offline never downloads: a missing file is an error saying where to get it and where to
	// put it. HF_HUB_OFFLINE=1 does the same for hub entries.
	Offline bool
	// Client does the downloads from plain URLs (default: one with 30 s connection and 60 s
	// response-header timeouts). The hub client makes its own.
	Client *http.Client
	// Timeout bounds a whole download (0: only the context bounds it).
	Timeout time.Duration
	// Progress, when set, shows each download: a byte progress bar when it is a terminal, a
	// line per 10% otherwise.
	Progress io.Writer

	// HubCacheDir is the Hugging Face cache (default: HubCacheDir()).
	HubCacheDir string
	// HubEndpoint is the hub's address (default: $HF_ENDPOINT, else https://huggingface.co).
	HubEndpoint string
	// HubToken is sent to the hub as a bearer token (default: HubToken()).
	HubToken string
}

// Fetch returns the local path of the named catalogue checkpoint, downloading it into cacheDir
// (or, for a hub entry, into the Hugging Face cache) if it is not there.
func Fetch(ctx context.Context, name, cacheDir string) (string, error) {
	return Fetcher{CacheDir: cacheDir}.Fetch(ctx, name)
}

// Fetch returns the local path of the named catalogue checkpoint.
func (f Fetcher) Fetch(ctx context.Context, name string) (string, error) {
	e, ok := Lookup(name)
	if !ok {
		return "", fmt.Errorf("convert: no pretrained checkpoint %q in the catalogue: known ones are %s", name, strings.Join(CatalogueNames(), ", "))
	}
	return f.FetchEntry(ctx, e)
}

// FetchEntry returns the local path of e's file: the cached one if present (checked against
// the known SHA-256), else downloaded to a temporary file, verified, and renamed into place.
// When offline or failing, the error says which URL to download and where to put the file.
// A hub entry is looked for and downloaded in the Hugging Face cache (see fetchHub).
func (f Fetcher) FetchEntry(ctx context.Context, e Entry) (string, error) {
	if f.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.Timeout)
		defer cancel()
	}
	if e.Hub != "" {
		return f.fetchHub(ctx, e)
	}
	dir := f.CacheDir
	if dir == "" {
		dir = DefaultCacheDir()
	}
	dest := filepath.Join(dir, e.FileName())
	manual := func(why string) error {
		return fmt.Errorf("convert: %s: %s.\nDownload %s yourself and put it at %s, e.g.:\n  mkdir -p %s && curl -L -o %s %s",
			e.Name, why, e.URL, dest, dir, dest, e.URL)
	}
	if _, err := os.Stat(dest); err == nil {
		if err := e.verify(dest); err != nil {
			return "", fmt.Errorf("convert: the cached %s is not the published file (%v): delete it, or replace it with a download of %s", dest, err, e.URL)
		}
		return dest, nil
	}
	if f.Offline {
		return "", manual("not in the cache folder and downloads are off")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", manual(fmt.Sprintf("cannot create the cache folder: %v", err))
	}
	if err := f.download(ctx, e, dest); err != nil {
		var bad *checksumError
		if errors.As(err, &bad) {
			return "", fmt.Errorf("convert: %s: the download of %s is corrupt or not the published file: %w", e.Name, e.URL, err)
		}
		return "", manual(fmt.Sprintf("cannot download it (%v)", err))
	}
	return dest, nil
}

type checksumError struct{ got, want string }

func (c *checksumError) Error() string {
	return fmt.Sprintf("SHA-256 %s, want %s", c.got, c.want)
}

// verify checks a file against the entry's known SHA-256 or prefix.
func (e Entry) verify(file string) error {
	if e.SHA256 == "" && e.SHA256Prefix == "" {
		return nil
	}
	sum, err := fileSHA256(file)
	if err != nil {
		return err
	}
	return e.checkSum(sum)
}

func (e Entry) checkSum(sum string) error {
	switch {
	case e.SHA256 != "" && sum != strings.ToLower(e.SHA256):
		return &checksumError{sum, e.SHA256}
	case e.SHA256 == "" && e.SHA256Prefix != "" && !strings.HasPrefix(sum, strings.ToLower(e.SHA256Prefix)):
		return &checksumError{sum, e.SHA256Prefix + "..."}
	}
	return nil
}

func (f Fetcher) download(ctx context.Context, e Entry, dest string) (err error) {
	client := f.Client
	if client == nil {
		client = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   30 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
		}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.URL, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".part-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	var w io.Writer = io.MultiWriter(tmp, h)
	m := newMeter(f.Progress, e.Name, resp.ContentLength)
	if m != nil {
		w = io.MultiWriter(w, m)
	}
	n, err := io.Copy(w, resp.Body)
	m.finish(err == nil)
	if err != nil {
		return err
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("got %d bytes of %d", n, resp.ContentLength)
	}
	if err = e.checkSum(hex.EncodeToString(h.Sum(nil))); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dest)
}
