package kubelet

import (
	"context"
	"sort"
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
