package convert

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeHub serves what go-huggingface's hub client asks the Hugging Face hub for: a revision's
// file list (GET /api/models/<repo>/revision/<rev>), a file's metadata (HEAD
// /<repo>/resolve/<commit>/<file>, with the X-Linked-Etag and X-Repo-Commit headers) and the
// file itself (GET of the same).
type fakeHub struct {
	*httptest.Server
	repo string
	// commits: the file's content at each commit; refs: branch -> commit.
	commits map[string][]byte
	refs    map[string]string
	// publish, when set, is the SHA-256 the hub announces instead of the true one.
	publish string
	// slow sends files in ten parts, each after a pause.
	slow bool

	mu       sync.Mutex
	requests []string // "METHOD path"
	auth     []string // the Authorization header of each request
}

const hubTestRepo = "timm/test_net.fb_in1k"

func newFakeHub(t *testing.T) *fakeHub {
	t.Helper()
	h := &fakeHub{repo: hubTestRepo,
		commits: map[string][]byte{
			strings.Repeat("a", 40): []byte("weights of the first commit"),
			strings.Repeat("b", 40): bytes.Repeat([]byte("weights of main, "), 5000),
		},
		refs: map[string]string{"main": strings.Repeat("b", 40)},
	}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.Close)
	return h
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func (h *fakeHub) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.requests = append(h.requests, r.Method+" "+r.URL.Path)
	h.auth = append(h.auth, r.Header.Get("Authorization"))
	h.mu.Unlock()
	commitOf := func(rev string) (string, []byte, bool) {
		if c, ok := h.refs[rev]; ok {
			rev = c
		}
		body, ok := h.commits[rev]
		return rev, body, ok
	}
	if rev, ok := strings.CutPrefix(r.URL.Path, "/api/models/"+h.repo+"/revision/"); ok {
		commit, body, ok := commitOf(rev)
		if !ok {
			http.Error(w, `{"error":"Invalid rev id: `+rev+`"}`, http.StatusNotFound)
			return
		}
		sum := h.publish
		if sum == "" {
			sum = sha256Hex(body)
		}
		json.NewEncoder(w).Encode(map[string]any{"id": h.repo, "sha": commit, "siblings": []map[string]any{
			{"rfilename": "README.md"},
			{"rfilename": "model.safetensors", "size": len(body), "lfs": map[string]any{"sha256": sum, "size": len(body)}},
		}})
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/"+h.repo+"/resolve/")
	commit, file, _ := strings.Cut(rest, "/")
	body, known := h.commits[commit]
	if !ok || !known || file != "model.safetensors" {
		http.NotFound(w, r)
		return
	}
	sum := h.publish
	if sum == "" {
		sum = sha256Hex(body)
	}
	w.Header().Set("X-Repo-Commit", commit)
	w.Header().Set("X-Linked-Etag", `"`+sum+`"`)
	w.Header().Set("X-Linked-Size", fmt.Sprint(len(body)))
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	if r.Method != http.MethodGet {
		return
	}
	if !h.slow {
		w.Write(body)
		return
	}
	for i := range 10 {
		w.Write(body[i*len(body)/10 : (i+1)*len(body)/10])
		w.(http.Flusher).Flush()
		time.Sleep(150 * time.Millisecond)
	}
}

func (h *fakeHub) log() (requests, auth []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.requests...), append([]string(nil), h.auth...)
}

// hubEnv isolates a test from the machine's Hugging Face settings and cache.
func hubEnv(t *testing.T) (cache string) {
	t.Helper()
	home := t.TempDir()
	for _, k := range []string{"HF_TOKEN", "HF_TOKEN_PATH", "HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_HUB_CACHE"} {
		t.Setenv(k, "")
	}
	t.Setenv("HF_HOME", home)
	return filepath.Join(home, "hub")
}

func testHubEntry(rev string) Entry {
	return hubEntry(hubTestRepo, "model.safetensors", rev, Entry{Family: "convnext", Arch: "convnext_tiny", Source: "test"})
}

func TestFetchHub(t *testing.T) {
	ctx := context.Background()
	main := strings.Repeat("b", 40)

	t.Run("download into the Hugging Face cache", func(t *testing.T) {
		cache := hubEnv(t)
		t.Setenv("HF_TOKEN", "hf_secret")
		h := newFakeHub(t)
		var progress bytes.Buffer
		f := Fetcher{HubEndpoint: h.URL, Progress: &progress}
		p, err := f.FetchEntry(ctx, testHubEntry("main"))
		if err != nil {
			t.Fatal(err)
		}
		repoDir := filepath.Join(cache, "models--timm--test_net.fb_in1k")
		if want := filepath.Join(repoDir, "snapshots", main, "model.safetensors"); p != want {
			t.Errorf("path %s, want %s", p, want)
		}
		// huggingface_hub's layout: the snapshot links to the blob named by the file's hash,
		// and refs/main names the commit.
		body := h.commits[main]
		link, err := os.Readlink(p)
		if err != nil || link != filepath.Join("..", "..", "blobs", sha256Hex(body)) {
			t.Errorf("snapshot link -> %q (%v)", link, err)
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, body) {
			t.Errorf("downloaded %d bytes, want %d", len(got), len(body))
		}
		if ref, _ := os.ReadFile(filepath.Join(repoDir, "refs", "main")); string(ref) != main {
			t.Errorf("refs/main = %q", ref)
		}
		leftovers, _ := filepath.Glob(filepath.Join(repoDir, "blobs", "*.*"))
		if len(leftovers) != 0 {
			t.Errorf("partial or lock files left: %v", leftovers)
		}
		// HF_TOKEN went to the hub as a bearer token, on every request.
		requests, auth := h.log()
		if len(requests) == 0 {
			t.Fatal("no request reached the hub")
		}
		for i, a := range auth {
			if a != "Bearer hf_secret" {
				t.Errorf("%s: Authorization %q", requests[i], a)
			}
		}
		if !strings.Contains(progress.String(), "timm/test_net.fb_in1k: 100% of 0.1 MB") {
			t.Errorf("progress lines:\n%s", progress.String())
		}
		// Cached: found again without the network, also offline.
		f.Offline = true
		if p2, err := f.FetchEntry(ctx, testHubEntry("main")); err != nil || p2 != p {
			t.Errorf("cached: %s, %v", p2, err)
		}
		if again, _ := h.log(); len(again) != len(requests) {
			t.Errorf("the cached file was asked for again: %v", again[len(requests):])
		}
	})

	t.Run("pinned revision", func(t *testing.T) {
		cache := hubEnv(t)
		h := newFakeHub(t)
		t.Setenv("HF_ENDPOINT", h.URL) // the endpoint the ecosystem's variable names
		first := strings.Repeat("a", 40)
		p, err := Fetcher{}.FetchEntry(ctx, testHubEntry(first))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(p); string(got) != "weights of the first commit" {
			t.Errorf("pinned revision gave %q", got)
		}
		if !strings.HasPrefix(p, filepath.Join(cache, "models--timm--test_net.fb_in1k", "snapshots", first)) {
			t.Errorf("path %s", p)
		}
		requests, auth := h.log()
		if !strings.Contains(strings.Join(requests, "\n"), "GET /api/models/"+hubTestRepo+"/revision/"+first) {
			t.Errorf("the revision was not asked for: %v", requests)
		}
		for _, a := range auth {
			if a != "" {
				t.Errorf("a token was sent without one: %q", a)
			}
		}
		if _, err := os.Stat(filepath.Join(cache, "models--timm--test_net.fb_in1k", "refs", first)); err == nil {
			t.Error("a commit hash got a ref")
		}
	})

	t.Run("token from huggingface-cli login's file", func(t *testing.T) {
		hubEnv(t)
		os.WriteFile(filepath.Join(os.Getenv("HF_HOME"), "token"), []byte("hf_from_file\n"), 0o600)
		if got := HubToken(); got != "hf_from_file" {
			t.Errorf("HubToken() = %q", got)
		}
		t.Setenv("HF_TOKEN", "hf_env")
		if got := HubToken(); got != "hf_env" {
			t.Errorf("HubToken() = %q, want HF_TOKEN's", got)
		}
	})

	t.Run("cache dir as huggingface_hub chooses it", func(t *testing.T) {
		cache := hubEnv(t)
		if got := HubCacheDir(); got != cache {
			t.Errorf("HF_HOME: %s, want %s", got, cache)
		}
		t.Setenv("HF_HUB_CACHE", "/elsewhere/hub")
		if got := HubCacheDir(); got != "/elsewhere/hub" {
			t.Errorf("HF_HUB_CACHE: %s", got)
		}
		t.Setenv("HF_HUB_CACHE", "")
		t.Setenv("HF_HOME", "")
		t.Setenv("XDG_CACHE_HOME", "/xdg")
		if got := HubCacheDir(); got != "/xdg/huggingface/hub" {
			t.Errorf("XDG_CACHE_HOME: %s", got)
		}
	})

	t.Run("a file another program put in the shared cache", func(t *testing.T) {
		cache := hubEnv(t)
		// As huggingface_hub (timm, huggingface-cli) leaves it.
		repoDir := filepath.Join(cache, "models--timm--test_net.fb_in1k")
		body := []byte("weights from python")
		blob := filepath.Join(repoDir, "blobs", sha256Hex(body))
		snap := filepath.Join(repoDir, "snapshots", main, "model.safetensors")
		os.MkdirAll(filepath.Dir(blob), 0o755)
		os.MkdirAll(filepath.Dir(snap), 0o755)
		os.MkdirAll(filepath.Join(repoDir, "refs"), 0o755)
		os.WriteFile(blob, body, 0o644)
		os.Symlink(filepath.Join("..", "..", "blobs", sha256Hex(body)), snap)
		os.WriteFile(filepath.Join(repoDir, "refs", "main"), []byte(main), 0o644)
		for _, rev := range []string{"main", main} {
			p, err := Fetcher{Offline: true}.FetchEntry(ctx, testHubEntry(rev))
			if err != nil || p != snap {
				t.Errorf("revision %s: %s, %v", rev, p, err)
			}
		}
		// A blob whose content is not the hash it is named by is refused.
		os.WriteFile(blob, []byte("tampered"), 0o644)
		_, err := Fetcher{Offline: true}.FetchEntry(ctx, testHubEntry("main"))
		wantError(t, err, "not the published file", snap, sha256Hex(body))
	})

	t.Run("offline", func(t *testing.T) {
		cache := hubEnv(t)
		t.Setenv("HF_HUB_OFFLINE", "1")
		h := newFakeHub(t)
		_, err := Fetcher{HubEndpoint: h.URL}.FetchEntry(ctx, testHubEntry("main"))
		wantError(t, err, "downloads are off", "model.safetensors of the Hugging Face repository "+hubTestRepo+" (revision main)",
			"into the Hugging Face cache "+cache, "huggingface-cli download "+hubTestRepo+" model.safetensors --revision main --cache-dir "+cache,
			h.URL+"/"+hubTestRepo+"/resolve/main/model.safetensors", "--family convnext --arch convnext_tiny")
		if requests, _ := h.log(); len(requests) != 0 {
			t.Errorf("offline, yet asked the hub: %v", requests)
		}
		// The catalogue's timm entries through Run, with --offline.
		t.Setenv("HF_HUB_OFFLINE", "")
		_, err = Run(ctx, Options{Input: "timm/convnext_tiny.fb_in1k", Offline: true, Out: filepath.Join(t.TempDir(), "out")})
		wantError(t, err, "timm/convnext_tiny.fb_in1k (revision main)", "into the Hugging Face cache "+cache,
			"https://huggingface.co/timm/convnext_tiny.fb_in1k/resolve/main/model.safetensors")
	})

	t.Run("checksum mismatch", func(t *testing.T) {
		cache := hubEnv(t)
		h := newFakeHub(t)
		h.publish = strings.Repeat("0", 64) // the hub announces another file than it serves
		_, err := Fetcher{HubEndpoint: h.URL}.FetchEntry(ctx, testHubEntry("main"))
		wantError(t, err, "corrupt or not the published file", sha256Hex(h.commits[main]))
		repoDir := filepath.Join(cache, "models--timm--test_net.fb_in1k")
		if blobs, _ := os.ReadDir(filepath.Join(repoDir, "blobs")); len(blobs) != 0 {
			t.Errorf("a refused download left %d blobs", len(blobs))
		}
		if _, err := os.Lstat(filepath.Join(repoDir, "snapshots", main, "model.safetensors")); err == nil {
			t.Error("a refused download left its snapshot link")
		}
		// A SHA-256 pinned in the catalogue is checked too.
		h.publish = ""
		e := testHubEntry("main")
		e.SHA256 = strings.Repeat("1", 64)
		_, err = Fetcher{HubEndpoint: h.URL}.FetchEntry(ctx, e)
		wantError(t, err, "corrupt or not the published file", e.SHA256)
	})

	t.Run("unreachable or unknown", func(t *testing.T) {
		cache := hubEnv(t)
		down := httptest.NewServer(http.NotFoundHandler())
		down.Close()
		_, err := Fetcher{HubEndpoint: down.URL}.FetchEntry(ctx, testHubEntry("main"))
		wantError(t, err, "cannot get the repository's file list", "huggingface-cli download", cache)
		h := newFakeHub(t)
		_, err = Fetcher{HubEndpoint: h.URL}.FetchEntry(ctx, testHubEntry("v9"))
		wantError(t, err, "cannot get the repository's file list", "Invalid rev id: v9")
		e := testHubEntry("main")
		e.HubFile = "pytorch_model.bin"
		_, err = Fetcher{HubEndpoint: h.URL}.FetchEntry(ctx, e)
		wantError(t, err, "has no file pytorch_model.bin")
	})
}

func TestCatalogueHubEntries(t *testing.T) {
	n := 0
	for _, e := range Catalogue() {
		if !strings.HasPrefix(e.Name, "timm/") {
			if e.Hub != "" {
				t.Errorf("%s: a hub entry outside timm/", e.Name)
			}
			continue
		}
		n++
		if e.Hub != e.Name || e.HubFile != "model.safetensors" || e.Revision != "main" ||
			e.URL != "https://huggingface.co/"+e.Name+"/resolve/main/model.safetensors" {
			t.Errorf("%s: hub %q file %q revision %q URL %q", e.Name, e.Hub, e.HubFile, e.Revision, e.URL)
		}
	}
	if n != 9 {
		t.Errorf("%d timm hub entries, want 9", n)
	}
}

// TestDownloadProgress: a byte progress bar on a terminal, lines elsewhere, for both kinds of
// download.
func TestDownloadProgress(t *testing.T) {
	ctx := context.Background()
	body := bytes.Repeat([]byte("0123456789"), 30000)
	srv, _ := serve(t, body)
	e := Entry{Name: "test.weights", URL: srv.URL + "/weights.pth"}

	var lines bytes.Buffer
	if _, err := (Fetcher{CacheDir: t.TempDir(), Progress: &lines}).FetchEntry(ctx, e); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(lines.String(), "\n"); got < 5 || got > 10 || !strings.HasSuffix(lines.String(), "test.weights: 100% of 0.3 MB\n") {
		t.Errorf("%d lines:\n%s", got, lines.String())
	}

	defer func(f func(io.Writer) bool) { isTerminal = f }(isTerminal)
	isTerminal = func(io.Writer) bool { return true }
	var bar bytes.Buffer
	if _, err := (Fetcher{CacheDir: t.TempDir(), Progress: &bar}).FetchEntry(ctx, e); err != nil {
		t.Fatal(err)
	}
	if s := bar.String(); !strings.Contains(s, "test.weights") || !strings.Contains(s, "100%") || !strings.Contains(s, "300 kB") {
		t.Errorf("progress bar:\n%q", s)
	}

	hubEnv(t)
	h := newFakeHub(t)
	bar.Reset()
	if _, err := (Fetcher{HubEndpoint: h.URL, Progress: &bar}).FetchEntry(ctx, testHubEntry("main")); err != nil {
		t.Fatal(err)
	}
	if s := bar.String(); !strings.Contains(s, hubTestRepo) || !strings.Contains(s, "100%") || !strings.Contains(s, "85 kB") {
		t.Errorf("hub progress bar:\n%q", s)
	}

	// The hub client downloads on its own: its progress is read from the growing partial file.
	isTerminal = func(io.Writer) bool { return false }
	hubEnv(t)
	h.slow = true
	lines.Reset()
	if _, err := (Fetcher{HubEndpoint: h.URL, Progress: &lines}).FetchEntry(ctx, testHubEntry("main")); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(lines.String(), "\n"); got < 4 || !strings.HasSuffix(lines.String(), hubTestRepo+": 100% of 0.1 MB\n") {
		t.Errorf("hub progress lines (%d):\n%s", got, lines.String())
	}
}
