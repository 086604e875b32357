package replicaset_test

import "github.com/skiff-project/skiff/pkg/client"

func clientDelete() client.DeleteOptions { return client.DeleteOptions{} }
