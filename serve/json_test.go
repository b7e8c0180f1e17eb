package serve

import (
	"encoding/json"
	"math/rand"
	"net/http"
	"strings"
	"testing"
)

// TestJSONTrailingGarbage (#25 item 10): a JSON body with anything but white space after
// its object was scored (the decoder stopped at the object's end); it is refused, 400,
// naming the JSON body. Trailing white space is fine.
func TestJSONTrailingGarbage(t *testing.T) {
	s, base, _ := startServer(t, Options{})
	f := randomFrame(rand.New(rand.NewSource(4)), 8, 8, s.Scorer().Bands)
	b, err := json.Marshal(map[string]any{"shape": []int{8, 8, f.C}, "dtype": "float32", "data": cubeOf(f).Data})
	if err != nil {
		t.Fatal(err)
	}
	for _, tail := range []string{"garbage", "{}", `{"shape":[1,1,1]}`, "]"} {
		resp, msg := postAs(t, base+"/v1/score", "application/json", append(append([]byte(nil), b...), tail...))
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(msg), "JSON body") {
			t.Errorf("trailing %q: %d %s", tail, resp.StatusCode, msg)
		}
	}
	if resp, msg := postAs(t, base+"/v1/score", "application/json", append(b, " \n\t"...)); resp.StatusCode != 200 {
		t.Errorf("trailing white space: %d %s", resp.StatusCode, msg)
	}
}
