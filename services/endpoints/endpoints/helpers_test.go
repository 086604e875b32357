package endpoints_test

import "github.com/skiff-project/skiff/pkg/client"

func clientDeleteOptions() client.DeleteOptions { return client.DeleteOptions{} }
