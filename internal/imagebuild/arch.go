package imagebuild

import "runtime"

func goarch() string { return runtime.GOARCH }
