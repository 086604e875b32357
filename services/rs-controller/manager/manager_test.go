package manager

import (
	"strings"
	"testing"
)

func TestSelectedControllers(t *testing.T) {
	for in, want := range map[string]string{
		"":                       "replicaset,deployment,garbagecollector,namespace,nodelifecycle",
		"*":                      "replicaset,deployment,garbagecollector,namespace,nodelifecycle",
		"*,-nodelifecycle":       "replicaset,deployment,garbagecollector,namespace",
		"deployment,replicaset":  "replicaset,deployment",
		"garbagecollector, -foo": "error",
		"replicaset,-replicaset": "",
		"-namespace,*":           "replicaset,deployment,garbagecollector,nodelifecycle",
		"bogus":                  "error",
	} {
		o := Options{Controllers: in}
		got, err := o.Selected()
		s := strings.Join(got, ",")
		if err != nil {
			s = "error"
		}
		if s != want {
			t.Errorf("--controllers=%q selects %q (%v); want %q", in, s, err, want)
		}
	}
}
