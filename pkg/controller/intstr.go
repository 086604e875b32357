package controller

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

// ScaledValue resolves an absolute number or a percentage of total, as Kubernetes'
// GetScaledValueFromIntOrPercent: a percentage rounds up when roundUp (maxSurge) and down
// otherwise (maxUnavailable). An unset value is 0.
func ScaledValue(v *metav1.IntOrString, total int, roundUp bool) (int, error) {
	switch x := v.GetValue().(type) {
	case nil:
		return 0, nil
	case *metav1.IntOrString_IntVal:
		return int(x.IntVal), nil
	case *metav1.IntOrString_StrVal:
		s, ok := strings.CutSuffix(x.StrVal, "%")
		if !ok {
			return 0, fmt.Errorf("invalid value %q: want an integer or a percentage", x.StrVal)
		}
		p, err := strconv.Atoi(s)
		if err != nil {
			return 0, fmt.Errorf("invalid value %q: %w", x.StrVal, err)
		}
		f := float64(p) * float64(total) / 100
		if roundUp {
			return int(math.Ceil(f)), nil
		}
		return int(math.Floor(f)), nil
	}
	return 0, fmt.Errorf("invalid IntOrString %v", v)
}
