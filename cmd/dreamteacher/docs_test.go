package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/dreamteacher-go/dreamteacher/configs"
	"github.com/dreamteacher-go/dreamteacher/datasets/imagenet/imagenettest"
)

// documentedCommands are the command lines the documentation gives a user: README.md's code
// (blocks and `spans`) and the header comments of configs/*.conf, each with where it is written.
func documentedCommands(t *testing.T, repo string) map[string]string {
	t.Helper()
	cmds := map[string]string{}
	readme, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	span := regexp.MustCompile("`((?:dreamteacher|make) [^`]+)`")
	inBlock := false
	for i, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "```") {
			inBlock = !inBlock
			continue
		}
		where := "README.md:" + strconv.Itoa(i+1)
		if inBlock && (strings.HasPrefix(line, "dreamteacher ") || strings.HasPrefix(line, "make ")) {
			cmds[stripComment(line)] = where
		}
		for _, m := range span.FindAllStringSubmatch(line, -1) {
			cmds[strings.ReplaceAll(m[1], `\|`, "|")] = where
		}
	}
	header := regexp.MustCompile(`^#\s+((?:dreamteacher|make) .*)$`)
	for _, name := range configs.Names() {
		text, _ := configs.Text(name)
		for i, line := range strings.Split(text, "\n") {
			if m := header.FindStringSubmatch(line); m != nil {
				cmds[stripComment(m[1])] = "configs/" + name + ".conf:" + strconv.Itoa(i+1)
			}
		}
	}
	return cmds
}

func stripComment(s string) string {
	if i := strings.Index(s, " #"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// shellWords splits a command line as a shell would for these lines: spaces, and quotes that
// group words.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	quote := rune(0)
	inWord := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// TestDocumentedCommandsRun runs every command line of the documentation. Those whose data is
// here (CamVid in ../shared/data, the generated scenes) run for real as --dry-run 1 (one timed
// step of the real pipeline, the pre-trained weights they name replaced by random ones, which
// time the same); those that need data or weights that are not here (ImageNet, ADE20K, COCO,
// BDD100K, a checkpoint to download) must fail at once with a usage error naming what is
// missing. make targets run with `make -n` (they exist and expand), and `make pretrain-imagenet
// DRY_RUN=1` runs for real on a generated ImageNet-layout folder.
func TestDocumentedCommandsRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every documented command (dry runs)")
	}
	repo, _ := filepath.Abs(filepath.Join("..", ".."))
	camvid, _ := filepath.Abs(filepath.Join(repo, "..", "shared", "data", "camvid"))
	if _, err := os.Stat(camvid); err != nil {
		t.Fatalf("CamVid is not at %s (../shared/data/camvid beside the repository): %v", camvid, err)
	}
	scenes := testScenes(t)
	work := t.TempDir()
	t.Chdir(work)
	missing := filepath.Join(work, "not-here")
	vars := map[string]string{"$CAMVID": camvid, "$ADE20K": missing + "/ade20k", "$COCO": missing + "/coco",
		"$BDD100K_IMAGES": missing + "/bdd100k-images", "$BDD100K": missing + "/bdd100k", "$IMAGENET": missing + "/imagenet"}

	cmds := documentedCommands(t, repo)
	if len(cmds) < 15 {
		t.Fatalf("found only %d documented commands: %v", len(cmds), cmds)
	}
	madeTargets := map[string]bool{}
	for line, where := range cmds {
		t.Run(where, func(t *testing.T) {
			words := shellWords(line)
			if words[0] == "make" {
				if !madeTargets[words[1]] { // the same target documented twice runs once
					madeTargets[words[1]] = true
					runMake(t, repo, words, scenes)
				}
				return
			}
			args := words[1:]
			var wantMissing string
			for i, a := range args {
				for k, v := range vars {
					if strings.Contains(a, k) {
						a = strings.ReplaceAll(a, k, v)
						if strings.HasPrefix(v, missing) {
							wantMissing = v
						}
					}
				}
				if strings.HasPrefix(a, "data=out/demo/scenes") {
					a = "data=" + scenes
				}
				args[i] = a
			}
			switch {
			case strings.HasPrefix(args[0], "<"):
				return // `dreamteacher <command> -h`: TestHelpOfEveryCommand
			case args[0] == "demo":
				return // TestDemoQuick runs the demo
			case args[0] == "convert":
				code, _, stderr := runCLI(append(args, "--offline", "--cache", filepath.Join(work, "weights"))...)
				if code == 0 || !strings.Contains(stderr, "download") {
					t.Errorf("%s: `%s --offline`: exit %d, %q; want an error saying what to download", where, line, code, stderr)
				}
				return
			case args[0] == "eval" || args[0] == "predict" || args[0] == "export":
				code, _, stderr := runCLI(args...)
				if code != 2 || !strings.Contains(stderr, "out/") {
					t.Errorf("%s: `%s` without its run: exit %d, %q; want a usage error naming the missing run", where, line, code, stderr)
				}
				return
			}
			if wantMissing != "" {
				code, _, stderr := runCLI(args...)
				if code != 2 || !strings.Contains(stderr, wantMissing) {
					t.Errorf("%s: `%s` without its data: exit %d, %q; want a usage error naming %s", where, line, code, stderr, wantMissing)
				}
				return
			}
			// Data is here: one real step. Weights that earlier steps would have written are
			// replaced by random ones of the same architecture.
			for i, a := range args {
				switch {
				case strings.HasPrefix(a, "teacher=out/"):
					args[i] = "teacher=random:" + map[bool]string{true: "adm_camvid", false: "adm_demo"}[strings.Contains(line, "camvid")]
				case strings.HasPrefix(a, "init=out/"):
					args[i] = "init=random"
				}
			}
			args = append(args, "--dry-run", "1")
			code, stdout, stderr := runCLI(args...)
			if code != 0 || !strings.Contains(stdout, "plan:") {
				t.Errorf("%s: `%s` as a dry run: exit %d\n%s\n%s", where, strings.Join(args, " "), code, stdout, stderr)
			}
		})
	}
}

// runMake checks a documented make target: `make -n` expands it; pretrain-imagenet runs for real
// as a dry run on a generated ImageNet-layout folder.
func runMake(t *testing.T, repo string, words []string, scenes string) {
	target := words[1]
	switch target {
	case "test", "demo":
		return // the suite itself, and TestDemoQuick
	case "pretrain-imagenet":
		// One step of the 552M-parameter ADM teacher at 256x256 (random weights) and ResNet-50:
		// about 2 minutes and 7 GB on 2 cores.
		imagenet := imagenettest.Folder(t, []string{"train"}, 3, 2, 32)
		cmd := exec.Command("make", "-C", repo, "pretrain-imagenet", "IMAGENET="+imagenet, "DRY_RUN=1", "DRY_STEPS=1", "OUT="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "plan:") {
			t.Errorf("make pretrain-imagenet DRY_RUN=1: %v\n%s", err, out)
		}
		return
	}
	args := append([]string{"-n", "-C", repo}, words[1:]...)
	for i, a := range args {
		if strings.HasPrefix(a, "CAMVID=") {
			args[i] = "CAMVID=" + scenes
		}
	}
	if out, err := exec.Command("make", args...).CombinedOutput(); err != nil {
		t.Errorf("make %s: %v\n%s", strings.Join(words[1:], " "), err, out)
	}
}
