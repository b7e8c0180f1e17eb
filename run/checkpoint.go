package run

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spectraclip/spectraclip/internal/atomicfile"
)

// ManifestName is the file written last into a checkpoint directory: it names every other
// file of the checkpoint with its size and sha256. A directory without a manifest that
// matches its files is not a checkpoint.
const ManifestName = "manifest.json"

// tmpPrefix starts the names of staging and deleting directories.
const tmpPrefix = ".tmp-"

// Manifest describes one complete checkpoint.
type Manifest struct {
	Format  int                 `json:"format"`
	Name    string              `json:"name"`
	Epoch   int                 `json:"epoch"`
	Created string              `json:"created"`
	Files   map[string]FileHash `json:"files"`
}

// FileHash is one file of a checkpoint.
type FileHash struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Staging is a checkpoint being written: files go into Dir, and Commit turns it into the
// checkpoint parent/name in one rename.
type Staging struct {
	parent, name string
	Dir          string
}

// Stage creates a staging directory for the checkpoint parent/name.
func Stage(parent, name string) (*Staging, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return nil, fmt.Errorf("checkpoint name %q: want a plain name", name)
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	d, err := os.MkdirTemp(parent, tmpPrefix+name+"-")
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", filepath.Join(parent, name), atomicfile.DiskFull(parent, err))
	}
	return &Staging{parent: parent, name: name, Dir: d}, nil
}

// Path is where a file of the staged checkpoint is written.
func (s *Staging) Path(file string) string { return filepath.Join(s.Dir, file) }

// Abort removes the staging directory.
func (s *Staging) Abort() { os.RemoveAll(s.Dir) }

// Commit writes the manifest (sha256 of every file written into Dir) and renames the
// staging directory to parent/name. An existing checkpoint of that name is first renamed
// to .name.prev and removed only after the new one is in place, so that at every instant
// either the new or the previous complete checkpoint exists under a name Resolve finds.
func (s *Staging) Commit(epoch int) error {
	final := filepath.Join(s.parent, s.name)
	m := Manifest{Format: 1, Name: s.name, Epoch: epoch, Created: time.Now().UTC().Format(time.RFC3339Nano), Files: map[string]FileHash{}}
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		s.Abort()
		return fmt.Errorf("checkpoint %s: %w", final, err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || e.Name() == ManifestName {
			continue
		}
		h, err := hashFile(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			s.Abort()
			return fmt.Errorf("checkpoint %s: %w", final, err)
		}
		m.Files[e.Name()] = h
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		s.Abort()
		return fmt.Errorf("checkpoint %s: manifest: %w", final, err)
	}
	mp := filepath.Join(s.Dir, ManifestName)
	if err := writeSynced(mp+".tmp", b); err != nil {
		s.Abort()
		return fmt.Errorf("checkpoint %s: manifest: %w", final, err)
	}
	KillPoint("rename manifest " + s.name)
	if err := atomicfile.Rename(mp+".tmp", mp); err != nil {
		s.Abort()
		return fmt.Errorf("checkpoint %s: manifest: %w", final, err)
	}
	prev := prevPath(s.parent, s.name)
	hadOld := false
	if _, err := os.Lstat(final); err == nil {
		hadOld = true
		if err := os.RemoveAll(prev); err != nil {
			s.Abort()
			return fmt.Errorf("checkpoint %s: %w", final, err)
		}
		KillPoint("rename old " + s.name + " to prev")
		if err := atomicfile.Rename(final, prev); err != nil {
			s.Abort()
			return fmt.Errorf("checkpoint %s: %w", final, err)
		}
	}
	KillPoint("rename staged " + s.name + " into place")
	// PutDir syncs every file of the checkpoint before the rename and the parent after it.
	// When it fails the previous checkpoint is renamed back; if only the sync after the
	// rename failed, the new checkpoint stands at final, that rename fails and changes
	// nothing, and CleanTemp removes the .prev later.
	if err := atomicfile.PutDir(s.Dir, final); err != nil {
		if hadOld {
			_ = atomicfile.Rename(prev, final)
		}
		s.Abort()
		return fmt.Errorf("checkpoint %s: %w", final, err)
	}
	if hadOld {
		KillPoint("remove prev " + s.name)
		if err := os.RemoveAll(prev); err != nil {
			return fmt.Errorf("checkpoint %s: removing the previous one: %w", final, err)
		}
	}
	return nil
}

// Remove deletes the checkpoint parent/name: it is first renamed out of the way, so that a
// half-deleted directory never stands under a checkpoint's name.
func Remove(parent, name string) error {
	final := filepath.Join(parent, name)
	if _, err := os.Lstat(final); err != nil {
		return nil
	}
	d, err := os.MkdirTemp(parent, tmpPrefix+"del-")
	if err != nil {
		return err
	}
	gone := filepath.Join(d, name)
	KillPoint("rename " + name + " for removal")
	if err := atomicfile.Rename(final, gone); err != nil {
		os.Remove(d)
		return err
	}
	return os.RemoveAll(d)
}

func prevPath(parent, name string) string { return filepath.Join(parent, "."+name+".prev") }

// Verify checks that dir is a complete checkpoint: its manifest parses and every file it
// names has the recorded size and sha256.
func Verify(dir string) (*Manifest, error) {
	b, err := readRegular(filepath.Join(dir, ManifestName))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("checkpoint %s: no %s (not a complete checkpoint)", dir, ManifestName)
		}
		return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %s: %w", dir, ManifestName, err)
	}
	if m.Format != 1 || len(m.Files) == 0 {
		return nil, fmt.Errorf("checkpoint %s: %s: format %d with %d files is not a checkpoint manifest", dir, ManifestName, m.Format, len(m.Files))
	}
	for _, name := range slices.Sorted(maps.Keys(m.Files)) {
		want := m.Files[name]
		if strings.ContainsAny(name, `/\`) {
			return nil, fmt.Errorf("checkpoint %s: %s names %q, not a plain file name", dir, ManifestName, name)
		}
		got, err := hashFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("checkpoint %s: %w", dir, err)
		}
		if got != want {
			return nil, fmt.Errorf("checkpoint %s: %s has size %d sha256 %s, the manifest says size %d sha256 %s", dir, name, got.Size, got.SHA256, want.Size, want.SHA256)
		}
	}
	return &m, nil
}

// Resolve finds the checkpoint to load for path. When path is complete it is returned with
// an empty note. Otherwise the most recent complete checkpoint beside it (the previous
// version of the same checkpoint kept during a replacement, or another checkpoint of the
// run) is returned, with a note saying what was wrong and which one is used instead.
// With none, the error says why path cannot be used.
func Resolve(path string) (string, *Manifest, string, error) {
	path = filepath.Clean(path)
	m, verr := Verify(path)
	if verr == nil {
		return path, m, "", nil
	}
	parent, name := filepath.Dir(path), filepath.Base(path)
	best, bm := "", (*Manifest)(nil)
	if pm, err := Verify(prevPath(parent, name)); err == nil {
		best, bm = prevPath(parent, name), pm
	}
	for _, c := range Complete(parent) {
		if bm == nil || c.Manifest.Epoch > bm.Epoch {
			best, bm = c.Dir, c.Manifest
		}
	}
	if bm == nil {
		return "", nil, "", fmt.Errorf("%w; no other complete checkpoint in %s", verr, parent)
	}
	note := fmt.Sprintf("%v; falling back to the most recent complete checkpoint %s (epoch %d)", verr, best, bm.Epoch)
	return best, bm, note, nil
}

// Checkpoint is one complete checkpoint directory.
type Checkpoint struct {
	Dir      string
	Manifest *Manifest
}

// Complete lists the complete checkpoints directly under parent (not the staging and
// previous-version directories), sorted by name.
func Complete(parent string) []Checkpoint {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	var out []Checkpoint
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		d := filepath.Join(parent, e.Name())
		if m, err := Verify(d); err == nil {
			out = append(out, Checkpoint{Dir: d, Manifest: m})
		}
	}
	return out
}

// CleanTemp removes what a killed writer leaves in a run directory and its checkpoints/:
// staging directories, temporary files of atomic writes (".name.tmp…", "name.tmp"), and
// previous-version checkpoint directories. A previous version whose checkpoint is missing
// or incomplete is put back in its place instead. It returns what it did, for the log.
func CleanTemp(dir string) ([]string, error) {
	var did []string
	for _, d := range []string{dir, Path(dir, CheckpointsDir)} {
		ents, err := os.ReadDir(d)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return did, err
		}
		for _, e := range ents {
			n := e.Name()
			p := filepath.Join(d, n)
			switch {
			case strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".prev") && e.IsDir():
				name := strings.TrimSuffix(strings.TrimPrefix(n, "."), ".prev")
				final := filepath.Join(d, name)
				if _, err := Verify(final); err != nil {
					if _, perr := Verify(p); perr == nil {
						if err := os.RemoveAll(final); err != nil {
							return did, err
						}
						if err := atomicfile.Rename(p, final); err != nil {
							return did, err
						}
						did = append(did, fmt.Sprintf("restored %s from %s (the replacement was interrupted)", final, n))
						continue
					}
				}
				if err := os.RemoveAll(p); err != nil {
					return did, err
				}
				did = append(did, "removed "+p)
			case strings.HasPrefix(n, tmpPrefix), strings.HasPrefix(n, ".") && strings.Contains(n, ".tmp"), strings.HasSuffix(n, ".tmp"):
				if err := os.RemoveAll(p); err != nil {
					return did, err
				}
				did = append(did, "removed "+p)
			}
		}
	}
	return did, nil
}

// openRegular opens p for reading when it is a regular file (links followed): a FIFO would
// block the open forever and a device never ends.
func openRegular(p string) (*os.File, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%v)", p, st.Mode().Type())
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	if st, err = f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a regular file", p)
	}
	return f, nil
}

func readRegular(p string) ([]byte, error) {
	f, err := openRegular(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 64<<20))
}

func hashFile(p string) (FileHash, error) {
	f, err := openRegular(p)
	if err != nil {
		return FileHash{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return FileHash{}, fmt.Errorf("%s: %w", p, err)
	}
	return FileHash{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func writeSynced(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(p)
	}
	return atomicfile.DiskFull(p, err)
}
