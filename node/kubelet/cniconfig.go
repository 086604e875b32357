package main

import (
	"path/filepath"
	"strings"

	"github.com/skiff-project/skiff/node/kubelet/cni"
)

func cniConfig(node, rootDir, pluginDirs string) cni.Config {
	return cni.Config{NodeName: node, PluginDirs: strings.Split(pluginDirs, ","), DataDir: filepath.Join(rootDir, "cni")}
}
