// Package tboard writes and reads TensorBoard event files (tfevents) without TensorFlow.
//
// No maintained Go writer exists, so the few protobuf messages TensorBoard needs (Event,
// Summary, Summary.Value, Summary.Image, HistogramProto, and the text plugin's TensorProto) are
// hand-encoded with google.golang.org/protobuf/encoding/protowire. Records use TFRecord framing:
//
//	uint64 length (little endian)
//	uint32 masked CRC32C of the 8 length bytes
//	byte   data[length]            // one serialized Event
//	uint32 masked CRC32C of data
//
// where masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8. The first record of every file is an
// Event carrying file_version "brain.Event:2", which TensorBoard uses to recognise the format.
//
// The reader (ReadEvents) verifies both CRCs of every record and decodes just the fields the
// writer produces; it exists so that tests in this and other packages can check what was logged.
package tboard
