// Package imagebuild makes container images with no registry and no base image: a layer of
// files (a static binary, its symlinks) and a config, written as a tarball that both
// containerd (`skiff image load`, client.Import) and `docker load` read: an OCI layout whose
// index.json names the image (io.containerd.image.name) plus Docker's manifest.json. Builds
// are reproducible (fixed timestamps), so an image's digest changes only with its content.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Image names of the images `make images` builds.
const (
	DemoImage    = "skiff-demo:v1"
	BusyboxImage = "skiff-busybox:v1"
)

// epoch is every file's and the image's timestamp (reproducible builds).
var epoch = time.Unix(0, 0).UTC()

// File is one entry of a layer.
type File struct {
	Path     string // inside the image, without a leading slash
	Mode     int64
	Content  []byte
	Linkname string // set: a symlink to Linkname
	Dir      bool
}

// Image builds an image of one layer holding files, with cfg (entrypoint, cmd, env, ...).
func Image(files []File, cfg v1.Config) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	for _, f := range files {
		h := &tar.Header{Name: f.Path, Mode: f.Mode, ModTime: epoch, Uname: "root", Gname: "root", Format: tar.FormatPAX}
		switch {
		case f.Dir:
			h.Typeflag, h.Name = tar.TypeDir, strings.TrimSuffix(f.Path, "/")+"/"
		case f.Linkname != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.Linkname
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Content))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Content); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	if arch := goarch(); arch != "" {
		cf.Architecture = arch
	}
	cf.Created = v1.Time{Time: epoch}
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

// Demo is the skiff-demo image around the static binary at binPath.
func Demo(binPath string) (v1.Image, error) {
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return nil, err
	}
	return Image([]File{{Path: "demo", Mode: 0o755, Content: bin}, {Path: "tmp", Mode: 0o1777, Dir: true}},
		v1.Config{Entrypoint: []string{"/demo"}, ExposedPorts: map[string]struct{}{"8080/tcp": {}},
			Env: []string{"PATH=/"}})
}

// Busybox is a busybox-style image: the static busybox at path (Debian's busybox-static) as
// /bin/busybox with a symlink per applet; its default command is sh.
func Busybox(path string) (v1.Image, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("busybox: %w (Debian: apt-get install busybox-static)", err)
	}
	out, err := exec.Command(path, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", path, err)
	}
	files := []File{
		{Path: "bin", Mode: 0o755, Dir: true}, {Path: "tmp", Mode: 0o1777, Dir: true},
		{Path: "etc", Mode: 0o755, Dir: true},
		{Path: "etc/passwd", Mode: 0o644, Content: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")},
		{Path: "etc/group", Mode: 0o644, Content: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{Path: "bin/busybox", Mode: 0o755, Content: bin},
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		files = append(files, File{Path: "bin/" + applet, Mode: 0o777, Linkname: "busybox"})
	}
	return Image(files, v1.Config{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}})
}

// BuildStatic builds the Go main package pkg (a path inside the module at moduleRoot) as a
// static binary at out.
func BuildStatic(ctx context.Context, moduleRoot, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = moduleRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v: %s", pkg, err, b)
	}
	return nil
}

// WriteTar writes img named ref (a short name is normalised: "skiff-demo:v1" is
// docker.io/library/skiff-demo:v1) to path as an OCI layout with a Docker manifest.json.
func WriteTar(path, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image name %q: %w", ref, err)
	}
	full := tag.Name() // index.docker.io/library/...: containerd wants docker.io
	full = strings.Replace(full, "index.docker.io/", "docker.io/", 1)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	write := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	err = writeImage(write, img, full, tag)
	if cerr := tw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func writeImage(write func(string, []byte) error, img v1.Image, full string, tag name.Tag) error {
	blob := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
	rawManifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	manifestDigest, err := img.Digest()
	if err != nil {
		return err
	}
	mediaType, err := img.MediaType()
	if err != nil {
		return err
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	configName, err := img.ConfigName()
	if err != nil {
		return err
	}
	if err := write("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := write(blob(configName), rawConfig); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	var layerPaths []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return err
		}
		if err := write(blob(d), data); err != nil {
			return err
		}
		layerPaths = append(layerPaths, blob(d))
	}
	if err := write(blob(manifestDigest), rawManifest); err != nil {
		return err
	}
	index := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []map[string]any{{
			"mediaType": string(mediaType), "digest": manifestDigest.String(), "size": len(rawManifest),
			"annotations": map[string]string{"io.containerd.image.name": full, "org.opencontainers.image.ref.name": tag.TagStr()},
		}},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}
	if err := write("index.json", indexJSON); err != nil {
		return err
	}
	short := tag.RepositoryStr() + ":" + tag.TagStr()
	if reg := tag.RegistryStr(); reg != name.DefaultRegistry {
		short = reg + "/" + short
	}
	manifestJSON, err := json.Marshal([]map[string]any{{"Config": blob(configName), "RepoTags": []string{strings.TrimPrefix(short, "library/")}, "Layers": layerPaths}})
	if err != nil {
		return err
	}
	return write("manifest.json", manifestJSON)
}
