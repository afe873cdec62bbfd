package convert

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/internal/safetensors"
)

func readSafetensors(path string) (map[string]safetensors.Tensor, map[string]string, error) {
	return safetensors.ReadFile(path)
}

func writeSafetensors(path string, st map[string]safetensors.Tensor) error {
	return safetensors.WriteFile(path, st, nil)
}

func TestCatalogue(t *testing.T) {
	names, files := map[string]bool{}, map[string]bool{}
	for _, e := range Catalogue() {
		if names[e.Name] || files[e.FileName()] {
			t.Errorf("%s: duplicate name or file name %s", e.Name, e.FileName())
		}
		names[e.Name], files[e.FileName()] = true, true
		fam, err := getFamily(e.Family)
		if err != nil {
			t.Errorf("%s: %v", e.Name, err)
			continue
		}
		if !slices.Contains(fam.archs(), e.Arch) {
			t.Errorf("%s: architecture %q is not one of the %s family's %v", e.Name, e.Arch, e.Family, fam.archs())
		}
		if !strings.HasPrefix(e.URL, "https://") || e.Source == "" {
			t.Errorf("%s: URL %q, source %q", e.Name, e.URL, e.Source)
		}
		if strings.HasPrefix(e.URL, "https://download.pytorch.org/") && !regexp.MustCompile(`^[0-9a-f]{8,}$`).MatchString(e.SHA256Prefix) {
			t.Errorf("%s: torchvision file without its hash prefix %q", e.Name, e.SHA256Prefix)
		}
	}
	for _, want := range []string{"resnet18.tv_in1k", "resnet50.tv_in1k", "resnet50.tv2_in1k", "resnet101.tv_in1k",
		"convnext_tiny.fb_in1k", "convnext_small.fb_in22k", "convnext_base.fb_in22k_ft_in1k", "timm/convnext_tiny.fb_in1k",
		"256x256_diffusion_uncond"} {
		if !names[want] {
			t.Errorf("the catalogue lacks %s", want)
		}
	}
}

func ExampleLookup() {
	e, _ := Lookup("resnet50.tv2_in1k")
	fmt.Println(e.Family, e.Arch, e.URL, e.SHA256Prefix)
	e, _ = Lookup("256x256_diffusion_uncond")
	fmt.Println(e.Family, e.Arch, e.URL)
	// Output:
	// resnet resnet50 https://download.pytorch.org/models/resnet50-11ad3fa6.pth 11ad3fa6
	// adm adm_256x256_uncond https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt
}

// serve serves body at /weights.pth and counts the requests.
func serve(t *testing.T, body []byte) (*httptest.Server, *int) {
	t.Helper()
	var hits int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		if r.URL.Path != "/weights.pth" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestFetch(t *testing.T) {
	body, err := os.ReadFile("testdata/resnet_basic.pth")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	srv, hits := serve(t, body)
	ctx := context.Background()

	t.Run("download", func(t *testing.T) {
		cache := t.TempDir()
		e := Entry{Name: "test.weights", Family: "resnet", URL: srv.URL + "/weights.pth", SHA256Prefix: digest[:8]}
		f := Fetcher{CacheDir: cache, Client: srv.Client()}
		path, err := f.FetchEntry(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != string(body) || path != filepath.Join(cache, "weights.pth") {
			t.Fatalf("downloaded %s (%d bytes, %v), want %d bytes in %s", path, len(got), err, len(body), cache)
		}
		// Cached: no second request, even offline.
		before := *hits
		f.Offline = true
		if p, err := f.FetchEntry(ctx, e); err != nil || p != path || *hits != before {
			t.Errorf("cached fetch: %s, %v, %d requests", p, err, *hits-before)
		}
		// No temporary file is left behind.
		entries, _ := os.ReadDir(cache)
		if len(entries) != 1 {
			t.Errorf("cache folder holds %d files", len(entries))
		}
	})

	t.Run("checksum mismatch", func(t *testing.T) {
		cache := t.TempDir()
		e := Entry{Name: "test.weights", URL: srv.URL + "/weights.pth", SHA256: strings.Repeat("0", 64)}
		_, err := Fetcher{CacheDir: cache, Client: srv.Client()}.FetchEntry(ctx, e)
		wantError(t, err, "test.weights", "corrupt or not the published file", digest)
		var ce *checksumError
		if !errors.As(err, &ce) {
			t.Errorf("not a checksum error: %v", err)
		}
		if entries, _ := os.ReadDir(cache); len(entries) != 0 {
			t.Errorf("a failed download left %d files in the cache", len(entries))
		}
		// A wrong file put in the cache by hand is refused too.
		os.WriteFile(filepath.Join(cache, "weights.pth"), []byte("not it"), 0o644)
		_, err = Fetcher{CacheDir: cache, Offline: true}.FetchEntry(ctx, e)
		wantError(t, err, "not the published file", filepath.Join(cache, "weights.pth"), e.URL)
	})

	t.Run("offline", func(t *testing.T) {
		cache := t.TempDir()
		e, _ := Lookup("resnet50.tv_in1k")
		_, err := Fetcher{CacheDir: cache, Offline: true}.FetchEntry(ctx, e)
		dest := filepath.Join(cache, "resnet50-0676ba61.pth")
		wantError(t, err, "resnet50.tv_in1k", "downloads are off", "https://download.pytorch.org/models/resnet50-0676ba61.pth",
			"put it at "+dest, "curl -L -o "+dest)
		// The same through Run.
		_, err = Run(ctx, Options{Input: "resnet50.tv_in1k", CacheDir: cache, Offline: true, Out: filepath.Join(cache, "out")})
		wantError(t, err, "https://download.pytorch.org/models/resnet50-0676ba61.pth", dest)
	})

	t.Run("unreachable", func(t *testing.T) {
		cache := t.TempDir()
		down := httptest.NewServer(http.NotFoundHandler())
		url := down.URL + "/weights.pth"
		down.Close() // nothing listens there any more: what a machine without network sees
		e := Entry{Name: "test.weights", URL: url}
		_, err := Fetcher{CacheDir: cache}.FetchEntry(ctx, e)
		wantError(t, err, "cannot download", "Download "+url, "put it at "+filepath.Join(cache, "weights.pth"))
		_, err = Fetcher{CacheDir: cache, Client: srv.Client()}.FetchEntry(ctx, Entry{Name: "missing", URL: srv.URL + "/other.pth"})
		wantError(t, err, "HTTP 404", srv.URL+"/other.pth")
	})
}

// TestLookupByArchitecture: the configuration name of a unique catalogue entry finds it (the
// Makefile's `convert --input adm_256x256_uncond`); an architecture with several entries does not.
func TestLookupByArchitecture(t *testing.T) {
	if e, ok := Lookup("adm_256x256_uncond"); !ok || e.Name != "256x256_diffusion_uncond" {
		t.Errorf("adm_256x256_uncond: %+v %v", e, ok)
	}
	if e, ok := Lookup("adm_256x256_lsun"); ok {
		t.Errorf("adm_256x256_lsun is three checkpoints, got %s", e.Name)
	}
	if e, ok := Lookup("resnet50"); ok {
		t.Errorf("resnet50 has two ImageNet checkpoints, got %s", e.Name)
	}
}
