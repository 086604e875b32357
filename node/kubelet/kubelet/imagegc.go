package kubelet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/skiff-project/skiff/node/kubelet/runtime"
)

// noteImageUse records that a container was started from image (for least-recently-used).
func (k *Kubelet) noteImageUse(image string) {
	k.imageUseMu.Lock()
	k.imageUse[image] = time.Now()
	k.imageUseMu.Unlock()
}

func (k *Kubelet) imageGCLoop(ctx context.Context) {
	t := time.NewTicker(k.cfg.ImageGCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := k.GarbageCollectImages(ctx); err != nil && ctx.Err() == nil {
			k.log.Warn("image garbage collection", "error", err)
		}
	}
}

// GarbageCollectImages removes unused images, least recently used first, when the image disk
// is fuller than the high threshold, until it is below the low threshold (Kubernetes' image
// GC). Images any container (running or not) was made from are in use. It returns the
// images removed.
func (k *Kubelet) GarbageCollectImages(ctx context.Context) ([]string, error) {
	used, capacity, err := k.rt.ImageFsUsage(ctx)
	if err != nil || capacity == 0 {
		return nil, err
	}
	if used*100 < uint64(k.cfg.ImageGCHighThresholdPercent)*capacity {
		return nil, nil
	}
	target := uint64(k.cfg.ImageGCLowThresholdPercent) * capacity / 100
	toFree := int64(used - target)
	imgs, err := k.rt.ListImages(ctx)
	if err != nil {
		return nil, err
	}
	cs, err := k.rt.ListContainers(ctx)
	if err != nil {
		return nil, err
	}
	inUse := map[string]bool{}
	for _, c := range cs {
		inUse[c.Image] = true
		inUse[c.ImageID] = true
	}
	var candidates []*runtime.Image
	for _, img := range imgs {
		if !inUse[img.Name] && !inUse[img.ID] {
			candidates = append(candidates, img)
		}
	}
	k.imageUseMu.Lock()
	lastUse := func(name string) time.Time { return k.imageUse[name] }
	sort.SliceStable(candidates, func(i, j int) bool { return lastUse(candidates[i].Name).Before(lastUse(candidates[j].Name)) })
	k.imageUseMu.Unlock()
	var removed []string
	for _, img := range candidates {
		if toFree <= 0 {
			break
		}
		if err := k.rt.RemoveImage(ctx, img.Name); err != nil {
			return removed, err
		}
		k.log.Info("image garbage-collected", "image", img.Name, "size", img.Size)
		removed = append(removed, img.Name)
		toFree -= img.Size
	}
	return removed, nil
}

// preloadImages imports Config.PreloadImages into the runtime. A tarball that cannot be read
// stops the kubelet: a node that registers without the images it was told to hold would take
// pods it cannot start.
func (k *Kubelet) preloadImages(ctx context.Context) error {
	for _, path := range k.cfg.PreloadImages {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("preload images: %w", err)
		}
		imgs, err := k.rt.ImportImages(ctx, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("preload images from %s: %w", path, err)
		}
		for _, img := range imgs {
			k.log.Info("image preloaded", "file", path, "image", img.Name)
		}
	}
	return nil
}

// ExpandPreload turns a comma-separated list of files and glob patterns into the tarballs it
// names. A pattern that matches nothing is an error: a node told to hold images must not
// come up without them.
func ExpandPreload(list string) ([]string, error) {
	var files []string
	for _, pat := range strings.Split(list, ",") {
		if pat = strings.TrimSpace(pat); pat == "" {
			continue
		}
		m, err := filepath.Glob(pat)
		if err != nil {
			return nil, fmt.Errorf("--preload-images %q: %w", pat, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("--preload-images %q: no such file", pat)
		}
		files = append(files, m...)
	}
	return files, nil
}
