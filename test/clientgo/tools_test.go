package clientgo

import (
	_ "k8s.io/api/core/v1"
	_ "k8s.io/apimachinery/pkg/labels"
	_ "k8s.io/client-go/informers"
	_ "k8s.io/client-go/kubernetes"
)
