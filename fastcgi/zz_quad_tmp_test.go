package fastcgi

import (
	"strings"
	"testing"
	"time"
)

func TestQuadQ(t *testing.T) {
	for _, n := range []int{1 << 14, 1 << 16, 1 << 18} {
		in := "pool: www\n*****\npid: 1\nrequest uri: /x\n" + strings.Repeat("a\n", n)
		s := time.Now()
		_, err := ParseStatus([]byte(in))
		t.Log(len(in), time.Since(s), err)
		js := `{"pool":"www","processes":[{"pid":1,"request uri":"` + strings.Repeat(`"`, n) + `","content length":0}]}`
		s = time.Now()
		_, err = ParseStatus([]byte(js))
		t.Log("json", len(js), time.Since(s), err)
		js = `{"pool":"www","processes":[{"pid":1,"request uri":"` + strings.Repeat(`","x":`, n) + `","content length":0}]}`
		s = time.Now()
		_, err = ParseStatus([]byte(js))
		t.Log("json2", len(js), time.Since(s), err)
	}
}
