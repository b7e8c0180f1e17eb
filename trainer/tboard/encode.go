package tboard

import (
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the TensorBoard protos (tensorboard/compat/proto/*.proto) used here.
const (
	// Event
	evWallTime    = 1
	evStep        = 2
	evFileVersion = 3
	evSummary     = 5

	// Summary
	sumValue = 1

	// Summary.Value
	valTag         = 1
	valSimpleValue = 2
	valImage       = 4
	valHisto       = 5
	valTensor      = 8
	valMetadata    = 9

	// Summary.Image
	imgHeight     = 1
	imgWidth      = 2
	imgColorspace = 3
	imgEncoded    = 4

	// HistogramProto
	hMin         = 1
	hMax         = 2
	hNum         = 3
	hSum         = 4
	hSumSquares  = 5
	hBucketLimit = 6
	hBucket      = 7

	// SummaryMetadata / PluginData
	mdPluginData  = 1
	pdPluginName  = 1
	pdPluginBytes = 2

	// TensorProto / TensorShapeProto / Dim
	tpDtype     = 1
	tpShape     = 2
	tpStringVal = 8
	tsDim       = 2
	dimSize     = 1

	dtString = 7 // DT_STRING
)

// fileVersion is the marker TensorBoard expects in the first record of an event file.
const fileVersion = "brain.Event:2"

func appendDouble(b []byte, num protowire.Number, v float64) []byte {
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, math.Float64bits(v))
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// appendPackedDoubles encodes a repeated double field in packed form, as proto3 does by default.
func appendPackedDoubles(b []byte, num protowire.Number, vs []float64) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(8*len(vs)))
	for _, v := range vs {
		b = protowire.AppendFixed64(b, math.Float64bits(v))
	}
	return b
}

// encodeEvent builds an Event with the given summary bytes (nil for none) and file_version ("" for none).
func encodeEvent(wallTime float64, step int64, version string, summary []byte) []byte {
	b := make([]byte, 0, 32+len(summary))
	b = appendDouble(b, evWallTime, wallTime)
	if step != 0 {
		b = appendVarint(b, evStep, uint64(step))
	}
	if version != "" {
		b = appendString(b, evFileVersion, version)
	}
	if summary != nil {
		b = appendBytes(b, evSummary, summary)
	}
	return b
}

// encodeSummary wraps one Summary.Value into a Summary.
func encodeSummary(value []byte) []byte {
	return appendBytes(make([]byte, 0, len(value)+8), sumValue, value)
}

func encodeScalarValue(tag string, v float32) []byte {
	b := appendString(nil, valTag, tag)
	b = protowire.AppendTag(b, valSimpleValue, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, math.Float32bits(v))
}

func encodeImageValue(tag string, h, w, colorspace int, png []byte) []byte {
	var img []byte
	img = appendVarint(img, imgHeight, uint64(h))
	img = appendVarint(img, imgWidth, uint64(w))
	img = appendVarint(img, imgColorspace, uint64(colorspace))
	img = appendBytes(img, imgEncoded, png)
	b := appendString(nil, valTag, tag)
	return appendBytes(b, valImage, img)
}

func encodeHistoValue(tag string, h *Histogram) []byte {
	var hp []byte
	hp = appendDouble(hp, hMin, h.Min)
	hp = appendDouble(hp, hMax, h.Max)
	hp = appendDouble(hp, hNum, h.Num)
	hp = appendDouble(hp, hSum, h.Sum)
	hp = appendDouble(hp, hSumSquares, h.SumSquares)
	hp = appendPackedDoubles(hp, hBucketLimit, h.BucketLimit)
	hp = appendPackedDoubles(hp, hBucket, h.Bucket)
	b := appendString(nil, valTag, tag)
	return appendBytes(b, valHisto, hp)
}

// encodeTextValue uses the text plugin layout of tensorboardX and TF: plugin "text" metadata and a
// rank-1 DT_STRING tensor of one element. TextPluginData{version=0} serialises to nothing, so the
// content field is omitted.
func encodeTextValue(tag, text string) []byte {
	pd := appendString(nil, pdPluginName, "text")
	md := appendBytes(nil, mdPluginData, pd)

	dim := appendVarint(nil, dimSize, 1)
	shape := appendBytes(nil, tsDim, dim)
	var tp []byte
	tp = appendVarint(tp, tpDtype, dtString)
	tp = appendBytes(tp, tpShape, shape)
	tp = appendString(tp, tpStringVal, text)

	b := appendString(nil, valTag, tag)
	b = appendBytes(b, valMetadata, md)
	return appendBytes(b, valTensor, tp)
}
