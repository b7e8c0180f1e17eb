// Package scene makes a single labelled capture (an ENVI export, a .mat, .npy or .npz scene of
// any band count) the data of a trainrun, and compares the variants with classical baselines
// on its held-out pixels.
//
// Whole-scene mode: the pipeline always runs on the whole scene (the detector needs the
// context of the image); the split is a split of pixels. The default rule, "objects", assigns
// every connected anomaly component (8-neighbour) whole to train, val or test, seeded and
// stratified by size, and the normal pixels by square spatial blocks in the same proportions.
// The loss sees only train pixels, validation and test metrics only their own pixels. The
// labels of val and test pixels are never used in training, but the detector, the normaliser
// and PCA see the spectra of every pixel of the scene, as RX does: the evaluation is
// transductive. Rule "none" puts every pixel in every split: zero-shot evaluation only (no
// gradient training).
//
// Entry points: Source and Open (the data of a trainrun's data.scene, passed to the trainer
// as its data source), TrainVariant (`spectraclip train --scene`), Compare (`spectraclip
// compare --scene`) and Detect (`spectraclip detect`: global RX on a whole scene).
package scene
