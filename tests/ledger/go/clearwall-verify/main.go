// Command clearwall-verify checks a clearwall log with Go's own transparency-log code.
//
// It is the independent implementation of the ledger interoperability test: the
// signed checkpoint is opened with golang.org/x/mod/sumdb/note, the tiles are read
// through sumdb/tlog's TileHashReader (which authenticates every tile against the
// signed tree hash), every entry bundle is checked against the level-0 tiles with
// tlog.RecordHash, Go's own inclusion proofs are checked, and the proofs clearwall
// produced (a JSON file) are checked with tlog.CheckRecord and tlog.CheckTree.
//
// Usage: clearwall-verify -dir TILES_DIR -vkey VKEY [-proofs FILE]
package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const height = 8 // C2SP tlog-tiles fixes the tile height at 8 (256 hashes)

// c2spPath encodes a tile path as C2SP tlog-tiles does (no height element,
// "entries" for data tiles); Go's Tile.Path uses the older sumdb layout.
func c2spPath(t tlog.Tile) string {
	n := t.N
	groups := []string{fmt.Sprintf("%03d", n%1000)}
	for n /= 1000; n > 0; n /= 1000 {
		groups = append([]string{fmt.Sprintf("x%03d", n%1000)}, groups...)
	}
	level := strconv.Itoa(t.L)
	if t.L < 0 {
		level = "entries"
	}
	p := "tile/" + level + "/" + strings.Join(groups, "/")
	if t.W != 1<<height {
		p += fmt.Sprintf(".p/%d", t.W)
	}
	return p
}

type dirReader struct{ dir string }

func (r dirReader) Height() int { return height }

func (r dirReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := os.ReadFile(filepath.Join(r.dir, c2spPath(t)))
		if errors.Is(err, os.ErrNotExist) && t.W < 1<<height {
			// A full tile (or a wider partial) is a valid source for a narrower one.
			full := t
			full.W = 1 << height
			data, err = os.ReadFile(filepath.Join(r.dir, c2spPath(full)))
			if err == nil {
				data = data[:t.W*tlog.HashSize]
			}
		}
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (r dirReader) SaveTiles([]tlog.Tile, [][]byte) {}

type inclusion struct {
	Index int64    `json:"index"`
	Size  int64    `json:"size"`
	Root  string   `json:"root"`
	Leaf  string   `json:"leaf_hash"`
	Proof []string `json:"proof"`
}

type consistency struct {
	Old     int64    `json:"old"`
	New     int64    `json:"new"`
	OldRoot string   `json:"old_root"`
	NewRoot string   `json:"new_root"`
	Proof   []string `json:"proof"`
}

type proofFile struct {
	Inclusion   []inclusion   `json:"inclusion"`
	Consistency []consistency `json:"consistency"`
}

func hash(s string) tlog.Hash {
	h, err := tlog.ParseHash(s)
	if err != nil {
		fail("bad hash %q: %v", s, err)
	}
	return h
}

func hashes(ss []string) []tlog.Hash {
	out := make([]tlog.Hash, len(ss))
	for i, s := range ss {
		out[i] = hash(s)
	}
	return out
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "clearwall-verify: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	dir := flag.String("dir", "", "tiles directory (holds checkpoint and tile/)")
	vkey := flag.String("vkey", "", "the log's verifier key")
	proofs := flag.String("proofs", "", "JSON file of clearwall proofs to check")
	flag.Parse()

	verifier, err := note.NewVerifier(*vkey)
	if err != nil {
		fail("verifier key: %v", err)
	}
	msg, err := os.ReadFile(filepath.Join(*dir, "checkpoint"))
	if err != nil {
		fail("%v", err)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint signature: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != verifier.Name() {
		fail("checkpoint origin %q is not the key name %q", lines[0], verifier.Name())
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	root := hash(lines[2])
	tree := tlog.Tree{N: size, Hash: root}
	reader := tlog.TileHashReader(tree, dirReader{*dir})

	got, err := tlog.TreeHash(size, reader)
	if err != nil || got != root {
		fail("tree hash from tiles: %v %v, checkpoint says %v", got, err, root)
	}
	// Every entry, from the entry bundles, against the authenticated level-0 tiles,
	// and a Go-generated inclusion proof for it.
	for start := int64(0); start < size; start += 1 << height {
		w := size - start
		if w > 1<<height {
			w = 1 << height
		}
		bundle, err := dirReader{*dir}.ReadTiles([]tlog.Tile{{H: height, L: -1, N: start >> height, W: int(w)}})
		if err != nil {
			fail("entry bundle at %d: %v", start, err)
		}
		data := bundle[0]
		indexes := make([]int64, w)
		for i := range indexes {
			indexes[i] = tlog.StoredHashIndex(0, start+int64(i))
		}
		leaves, err := reader.ReadHashes(indexes)
		if err != nil {
			fail("leaves at %d: %v", start, err)
		}
		for i := int64(0); i < w; i++ {
			if len(data) < 2 {
				fail("entry bundle at %d truncated", start)
			}
			l := int(binary.BigEndian.Uint16(data))
			if len(data) < 2+l {
				fail("entry bundle at %d truncated", start)
			}
			entry := data[2 : 2+l]
			data = data[2+l:]
			idx := start + i
			if tlog.RecordHash(entry) != leaves[i] {
				fail("entry %d does not match its leaf hash", idx)
			}
			if idx%61 != 0 && idx != size-1 {
				continue // Go's own proofs for a sample; every leaf is checked above
			}
			p, err := tlog.ProveRecord(size, idx, reader)
			if err != nil {
				fail("prove %d: %v", idx, err)
			}
			if err := tlog.CheckRecord(p, size, root, idx, leaves[i]); err != nil {
				fail("check %d: %v", idx, err)
			}
		}
		if len(data) != 0 {
			fail("entry bundle at %d has trailing bytes", start)
		}
	}
	checked := 0
	if *proofs != "" {
		raw, err := os.ReadFile(*proofs)
		if err != nil {
			fail("%v", err)
		}
		var pf proofFile
		if err := json.Unmarshal(raw, &pf); err != nil {
			fail("proofs file: %v", err)
		}
		for _, p := range pf.Inclusion {
			if err := tlog.CheckRecord(hashes(p.Proof), p.Size, hash(p.Root), p.Index, hash(p.Leaf)); err != nil {
				fail("inclusion proof of %d in %d: %v", p.Index, p.Size, err)
			}
			checked++
		}
		for _, p := range pf.Consistency {
			if err := tlog.CheckTree(hashes(p.Proof), p.New, hash(p.NewRoot), p.Old, hash(p.OldRoot)); err != nil {
				fail("consistency proof %d -> %d: %v", p.Old, p.New, err)
			}
			checked++
		}
	}
	fmt.Printf("ok size=%d root=%s proofs=%d\n", size, base64.StdEncoding.EncodeToString(root[:]), checked)
}
