// Package dataset reads hyperspectral cubes and labels from disk and serves them as plain Go
// slices, so that nothing below the pipeline needs LibTorch.
//
// Formats: ENVI (.hdr + raw, BSQ/BIL/BIP, every common data type, both byte orders; also
// written, for the synthetic generator), NumPy .npy/.npz (header through npyio, data converted
// in bulk), MATLAB v5 .mat (plain and compressed; v7.3 gets an error with a conversion hint),
// COCO JSON (polygons and both RLE forms), PNG label masks. Cubert .cu3s sessions need the
// proprietary SDK and get an error that says how to export them to ENVI.
//
// A dataset is either a directory with dataset.yaml (Open), one capture cut into tiles
// (OpenScene), or the synthetic Lentils set that GenerateSynthetic and EnsureSynthetic make.
// Loaders (Dataset.NewLoader) batch a split channels-last with seeded shuffling and bounded
// background prefetch. README.md in this directory describes the layout, the synthetic model
// and the measured throughput.
package dataset
