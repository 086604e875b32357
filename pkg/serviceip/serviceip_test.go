package serviceip

import (
	"net/netip"
	"testing"
)

func TestParseRange(t *testing.T) {
	r, err := ParseRange(DefaultRange)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		got, want netip.Addr
	}{
		{r.APIServerIP(), netip.MustParseAddr("10.96.0.1")},
		{r.DNSIP(), netip.MustParseAddr("10.96.0.10")},
	} {
		if c.got != c.want {
			t.Errorf("got %s; want %s", c.got, c.want)
		}
	}
	for ip, want := range map[string]bool{"10.96.0.0": false, "10.96.0.1": true, "10.111.255.254": true,
		"10.111.255.255": false, "10.112.0.1": false, "192.168.1.1": false} {
		if got := r.Contains(netip.MustParseAddr(ip)); got != want {
			t.Errorf("Contains(%s) = %v; want %v", ip, got, want)
		}
	}
	if r.offset != 256 {
		t.Errorf("static band of a /12: %d; want 256 (Kubernetes' cap)", r.offset)
	}
	small, _ := ParseRange("10.0.0.0/27")
	if small.size != 30 || small.offset != 16 {
		t.Errorf("a /27: size %d offset %d; want 30 and 16", small.size, small.offset)
	}
	for _, bad := range []string{"10.0.0.0/30", "fd00::/108", "nonsense", "10.0.0.0/7"} {
		if _, err := ParseRange(bad); err == nil {
			t.Errorf("ParseRange(%q) accepted", bad)
		}
	}
}
