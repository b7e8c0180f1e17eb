package torch

import "testing"

func TestSmoke(t *testing.T) {
	s := NewScope()
	defer s.Close()
	a := s.FromFloat32([]float32{1, 2, 3, 4}, 2, 2)
	b := s.Add(a, a)
	v, err := b.Float32s()
	if err != nil || s.Err() != nil {
		t.Fatal(err, s.Err())
	}
	t.Log(v, b, Version())
}
