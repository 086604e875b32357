// Command build-images writes the images `make images` makes, with no registry and no base
// image: bin/images/demo.tar (skiff-demo:v1, the demo HTTP server) and bin/images/busybox.tar
// (skiff-busybox:v1, Debian's busybox-static with its applets).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/skiff-project/skiff/internal/imagebuild"
)

func main() {
	out := flag.String("out", "bin/images", "directory the tarballs go to")
	busybox := flag.String("busybox", "/bin/busybox", "a static busybox binary (Debian: busybox-static)")
	flag.Parse()
	if err := run(*out, *busybox); err != nil {
		fmt.Fprintln(os.Stderr, "build-images:", err)
		os.Exit(1)
	}
}

func run(out, busybox string) error {
	tmp, err := os.MkdirTemp("", "skiff-images")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "demo")
	if err := imagebuild.BuildStatic(context.Background(), ".", "./deploy/images/demo", bin); err != nil {
		return err
	}
	demo, err := imagebuild.Demo(bin)
	if err != nil {
		return err
	}
	if err := imagebuild.WriteTar(filepath.Join(out, "demo.tar"), imagebuild.DemoImage, demo); err != nil {
		return err
	}
	fmt.Println("wrote", filepath.Join(out, "demo.tar"), "("+imagebuild.DemoImage+")")
	bb, err := imagebuild.Busybox(busybox)
	if err != nil {
		return err
	}
	if err := imagebuild.WriteTar(filepath.Join(out, "busybox.tar"), imagebuild.BusyboxImage, bb); err != nil {
		return err
	}
	fmt.Println("wrote", filepath.Join(out, "busybox.tar"), "("+imagebuild.BusyboxImage+")")
	return nil
}
