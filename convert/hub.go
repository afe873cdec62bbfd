package convert

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gomlx/go-huggingface/hub"
)

// The Hugging Face hub entries (timm's "timm/<arch>.<tag>") are downloaded the way the
// ecosystem does it, with go-huggingface's hub client: into the cache that Python's
// huggingface_hub shares (models--timm--<name>/{blobs,snapshots/<commit>,refs}), at the
// entry's revision, authenticated by HF_TOKEN, from HF_ENDPOINT when set. A file already in
// that cache, downloaded by us, by timm or by huggingface-cli, is used without going online.

const defaultHubEndpoint = "https://huggingface.co"

// HubCacheDir is the Hugging Face cache that hub entries are looked for and downloaded in, as
// huggingface_hub chooses it: $HF_HUB_CACHE, else $HF_HOME/hub, else
// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
func HubCacheDir() string {
	if d := os.Getenv("HF_HUB_CACHE"); d != "" {
		return d
	}
	return filepath.Join(hfHome(), "hub")
}

// hfHome is huggingface_hub's home folder: $HF_HOME, else $XDG_CACHE_HOME/huggingface, else
// ~/.cache/huggingface.
func hfHome() string {
	if d := os.Getenv("HF_HOME"); d != "" {
		return d
	}
	return filepath.Dir(hub.DefaultCacheDir())
}

// HubToken is the Hugging Face access token, found as huggingface_hub finds it: $HF_TOKEN,
// else the file that `huggingface-cli login` writes ($HF_TOKEN_PATH, default $HF_HOME/token).
// Empty when there is none: public repositories such as timm's need none.
func HubToken() string {
	if t := strings.TrimSpace(os.Getenv("HF_TOKEN")); t != "" {
		return t
	}
	path := os.Getenv("HF_TOKEN_PATH")
	if path == "" {
		path = filepath.Join(hfHome(), "token")
	}
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b))
	}
	return ""
}

// hubOffline is huggingface_hub's HF_HUB_OFFLINE switch.
func hubOffline() bool {
	switch strings.ToUpper(os.Getenv("HF_HUB_OFFLINE")) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}

func (f Fetcher) hubEndpoint() string {
	ep := f.HubEndpoint
	if ep == "" {
		ep = os.Getenv("HF_ENDPOINT")
	}
	if ep == "" {
		ep = defaultHubEndpoint
	}
	return strings.TrimSuffix(ep, "/")
}

// fetchHub returns the path of a hub entry's file in the Hugging Face cache (a link in the
// snapshot of its revision to the blob named by its hash), downloading it if it is not there.
func (f Fetcher) fetchHub(ctx context.Context, e Entry) (string, error) {
	cache := f.HubCacheDir
	if cache == "" {
		cache = HubCacheDir()
	}
	rev := e.Revision
	if rev == "" {
		rev = hubMain
	}
	repoDir := filepath.Join(cache, "models--"+strings.ReplaceAll(e.Hub, "/", "--"))
	if p, ok := hubCached(repoDir, rev, e.HubFile); ok {
		if err := e.checkHubFile(p, ""); err != nil {
			return "", fmt.Errorf("convert: the cached %s is not the published file (%v): delete its snapshot link and blob, or replace them with a download of %s",
				p, err, f.hubURL(e, rev))
		}
		return p, nil
	}
	url := f.hubURL(e, rev)
	manual := func(why string) error {
		return fmt.Errorf("convert: %s: %s.\n"+
			"Download %s of the Hugging Face repository %s (revision %s) into the Hugging Face cache %s, e.g.:\n"+
			"  huggingface-cli download %s %s --revision %s --cache-dir %s\n"+
			"or download %s and convert that file: --input FILE --family %s --arch %s",
			e.Name, why, e.HubFile, e.Hub, rev, cache, e.Hub, e.HubFile, rev, cache, url, e.Family, e.Arch)
	}
	if f.Offline || hubOffline() {
		return "", manual("not in the Hugging Face cache and downloads are off")
	}
	token := f.HubToken
	if token == "" {
		token = HubToken()
	}
	repo := hub.New(e.Hub).WithEndpoint(f.hubEndpoint()).WithRevision(rev).WithCacheDir(cache).WithAuth(token).WithProgressBar(false)
	repo.Verbosity = 0 // it would print to stdout; f.Progress shows the download
	repo.MaxParallelDownload = 1
	// The revision's file list: the file's size for the progress bar, and the SHA-256 the hub
	// publishes for it (its LFS object id) to check the download against. (go-huggingface
	// v0.4.1 asks for it without the context: ctx and Timeout bound the file's download only.)
	if err := repo.DownloadInfo(true); err != nil {
		return "", manual(fmt.Sprintf("cannot get the repository's file list (%v)", err))
	}
	size, published, found := int64(-1), "", false
	for _, fi := range repo.Info().Siblings {
		if fi.Name != e.HubFile {
			continue
		}
		found = true
		if fi.LFS != nil {
			size, published = fi.LFS.Size, fi.LFS.SHA256
		} else if fi.Size > 0 {
			size = fi.Size
		}
	}
	if !found {
		return "", fmt.Errorf("convert: %s: the Hugging Face repository %s at revision %s has no file %s", e.Name, e.Hub, rev, e.HubFile)
	}
	m := newMeter(f.Progress, e.Name, size)
	stop := watchParts(filepath.Join(repoDir, "blobs"), m)
	p, err := repo.DownloadFileCtx(ctx, e.HubFile)
	stop()
	if err == nil {
		if fi, statErr := os.Stat(p); statErr == nil {
			m.set(fi.Size())
		}
	}
	m.finish(err == nil)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return "", manual(fmt.Sprintf("cannot download it (%v)", firstLine(err.Error())))
	}
	if err := e.checkHubFile(p, published); err != nil {
		// Remove the blob and its link, so that the next try downloads it again.
		if blob, linkErr := filepath.EvalSymlinks(p); linkErr == nil {
			os.Remove(blob)
		}
		os.Remove(p)
		return "", fmt.Errorf("convert: %s: the download of %s is corrupt or not the published file: %w", e.Name, url, err)
	}
	writeRef(repoDir, rev, repo.Info().CommitHash)
	return p, nil
}

func (f Fetcher) hubURL(e Entry, rev string) string {
	return f.hubEndpoint() + "/" + e.Hub + "/resolve/" + rev + "/" + e.HubFile
}

// hubCached finds file in the Hugging Face cache folder of a repository at a revision: the
// revision's commit is the revision itself when it is a commit hash, else the one its ref names
// (refs/<revision>, written by huggingface_hub and by us) or, failing that, the one in
// go-huggingface's copy of the revision's file list (info/<revision>).
func hubCached(repoDir, rev, file string) (string, bool) {
	commit := rev
	if !isHex(rev, 40) {
		if b, err := os.ReadFile(filepath.Join(repoDir, "refs", filepath.FromSlash(rev))); err == nil {
			commit = strings.TrimSpace(string(b))
		} else {
			raw, err := os.ReadFile(filepath.Join(repoDir, "info", filepath.FromSlash(rev)))
			if err != nil {
				return "", false
			}
			var info struct {
				SHA string `json:"sha"`
			}
			if json.Unmarshal(raw, &info) != nil || info.SHA == "" {
				return "", false
			}
			commit = info.SHA
		}
	}
	p := filepath.Join(repoDir, "snapshots", commit, filepath.FromSlash(file))
	if _, err := os.Stat(p); err != nil { // a dangling link is no file either
		return "", false
	}
	return p, true
}

// writeRef records which commit a branch or tag resolved to, as huggingface_hub does, so that
// it (and hubCached) finds the file offline. Failing to is no error: go-huggingface's info
// file says the same to us.
func writeRef(repoDir, rev, commit string) {
	if isHex(rev, 40) || commit == "" {
		return
	}
	ref := filepath.Join(repoDir, "refs", filepath.FromSlash(rev))
	if os.MkdirAll(filepath.Dir(ref), 0o755) == nil {
		os.WriteFile(ref, []byte(commit), 0o644)
	}
}

// checkHubFile checks a hub file against the entry's SHA-256 when the catalogue has one, else
// against the one the hub published (published, or the name of the blob the snapshot links to,
// which is the SHA-256 for files stored with Git LFS).
func (e Entry) checkHubFile(p, published string) error {
	want := strings.ToLower(e.SHA256)
	if want == "" {
		want = strings.ToLower(published)
	}
	if want == "" {
		if blob, err := filepath.EvalSymlinks(p); err == nil && isHex(filepath.Base(blob), 64) {
			want = filepath.Base(blob)
		}
	}
	if want == "" {
		return nil
	}
	got, err := fileSHA256(p)
	if err != nil {
		return err
	}
	if got != want {
		return &checksumError{got, want}
	}
	return nil
}

// watchParts shows on m the size of the partial downloads in a hub repository's blob folder
// (go-huggingface writes blobs/<hash>.part, then renames it), until stop is called.
func watchParts(blobs string, m *meter) (stop func()) {
	if m == nil {
		return func() {}
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			parts, _ := filepath.Glob(filepath.Join(blobs, "*.part"))
			var n int64
			for _, p := range parts {
				if fi, err := os.Stat(p); err == nil {
					n += fi.Size()
				}
			}
			if n > 0 {
				m.set(n)
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
