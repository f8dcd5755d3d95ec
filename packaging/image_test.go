package packaging

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// buildah is the command make image builds with, on its storage.
var buildah = []string{"buildah", "--storage-driver", "vfs"}

// The parts of an OCI image that matter here.
type (
	ociIndex struct {
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	ociManifest struct {
		Config struct {
			Digest string `json:"digest"`
		} `json:"config"`
		Layers []struct {
			Digest    string `json:"digest"`
			MediaType string `json:"mediaType"`
		} `json:"layers"`
	}
	ociConfig struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Config       struct {
			User         string              `json:"User"`
			ExposedPorts map[string]struct{} `json:"ExposedPorts"`
			Entrypoint   []string            `json:"Entrypoint"`
			Cmd          []string            `json:"Cmd"`
			Labels       map[string]string   `json:"Labels"`
		} `json:"config"`
	}
)

// imageFiles is every entry of the image's file system: mode, owner and
// path.
var imageFiles = []string{
	"drwxr-xr-x 0:0 usr/",
	"drwxr-xr-x 0:0 usr/bin/",
	"-rwxr-xr-x 0:0 usr/bin/fpmguard",
	"drwxr-xr-x 0:0 var/",
	"drwxr-xr-x 0:0 var/lib/",
	"drwxr-xr-x 65534:65534 var/lib/fpmguard/",
}

// TestImage exports the image as a user would push it (an OCI archive),
// reads it back, and runs its binary.
func TestImage(t *testing.T) {
	b := artifacts(t)
	dir := t.TempDir()
	archive := filepath.Join(dir, "fpmguard.tar")
	run(t, buildah[0], append(buildah[1:], "push", "--quiet", b.image, "oci-archive:"+archive)...)
	blobs := readTar(t, archive)

	var index ociIndex
	unmarshal(t, blobs["index.json"], &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("index.json: %d manifests, want 1", len(index.Manifests))
	}
	var manifest ociManifest
	unmarshal(t, blob(t, blobs, index.Manifests[0].Digest), &manifest)
	var config ociConfig
	unmarshal(t, blob(t, blobs, manifest.Config.Digest), &config)

	c := config.Config
	for _, tt := range []struct{ what, got, want string }{
		{"architecture", config.Architecture, hostArch},
		{"os", config.OS, "linux"},
		{"user", c.User, "65534:65534"},
		{"entrypoint", fmt.Sprint(c.Entrypoint), "[/usr/bin/fpmguard]"},
		{"cmd", fmt.Sprint(c.Cmd), "[serve]"},
		{"exposed ports", fmt.Sprint(c.ExposedPorts), "map[9253/tcp:{}]"},
		{"label version", c.Labels["org.opencontainers.image.version"], b.version},
		{"label revision", c.Labels["org.opencontainers.image.revision"], b.revision},
		{"label source", c.Labels["org.opencontainers.image.source"], "https://github.com/fpmguard/fpmguard"},
		{"tag", b.image[strings.LastIndexByte(b.image, ':')+1:], b.version},
	} {
		if tt.got != tt.want {
			t.Errorf("image %s: %q, want %q", tt.what, tt.got, tt.want)
		}
	}

	// The file system: the binary, the .deb's very bytes, and the opcache
	// directory of the default user; nothing else.
	var files []string
	var bin []byte
	for _, l := range manifest.Layers {
		layer := blob(t, blobs, l.Digest)
		zr, err := gzip.NewReader(bytes.NewReader(layer))
		if err != nil {
			t.Fatalf("layer %s (%s): %v", l.Digest, l.MediaType, err)
		}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, fmt.Sprintf("%s %d:%d %s", h.FileInfo().Mode(), h.Uid, h.Gid, h.Name))
			if h.Name == "usr/bin/fpmguard" {
				if bin, err = io.ReadAll(tr); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if !slices.Equal(files, imageFiles) {
		t.Errorf("the image holds:\n%s\nwant:\n%s", strings.Join(files, "\n"), strings.Join(imageFiles, "\n"))
	}
	if bin == nil {
		t.Fatal("no /usr/bin/fpmguard in the image")
	}
	sum := checkBinary(t, b, "the image", bin, hostArch)
	if debSum := checkBinary(t, b, "the .deb", debBinary(t, b, hostArch), hostArch); sum != debSum {
		t.Errorf("the image's binary (sha256 %s) is not the .deb's (%s)", sum, debSum)
	}

	// The binary runs in the image's root, as its user.
	ctr := strings.TrimSpace(run(t, buildah[0], append(buildah[1:], "from", "--quiet", b.image)...))
	t.Cleanup(func() { _, _ = command(buildah[0], append(buildah[1:], "rm", ctr)...) })
	got := run(t, buildah[0], append(buildah[1:], "run", "--isolation", "chroot", ctr, "--", "/usr/bin/fpmguard", "version")...)
	if want := "fpmguard " + b.version + " (go"; !strings.HasPrefix(got, want) {
		t.Errorf("fpmguard version in the image: %q, want %s...", got, want)
	}
}

// readTar reads every regular file of a tar archive by name.
func readTar(t *testing.T, name string) map[string][]byte {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if files[h.Name], err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// blob is the blob of a digest in an OCI layout.
func blob(t *testing.T, blobs map[string][]byte, digest string) []byte {
	t.Helper()
	algo, hex, ok := strings.Cut(digest, ":")
	data, found := blobs["blobs/"+algo+"/"+hex]
	if !ok || !found {
		t.Fatalf("no blob %s in the archive", digest)
	}
	return data
}

func unmarshal(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%v in %.200s", err, data)
	}
}
