// Command interop generates test fixtures for crfs and cross-checks them
// against the reference Go implementation of eStargz
// (github.com/containerd/stargz-snapshotter/estargz, v0.12 as packaged by Debian).
//
// Build in GOPATH mode, no modules:
//
//	GO111MODULE=off GOPATH=$TMP/gopath:/usr/share/gocode go build -o interop .
//
// Subcommands:
//
//	interop mktar -kind all-types|chunks|many|demo -out FILE.tar
//	interop build -in TAR -out BLOB [-format estargz|zstdchunked] [-chunk-size N] [-level N] [-prioritize a,b]
//	interop legacy -in TAR -out BLOB [-chunk-size N]
//	interop list BLOB
//	interop list-tar TAR
//	interop verify BLOB TOCDIGEST
//	interop open BLOB                       (benchmark: estargz.Open only)
//	interop readall BLOB [-piece N]         (benchmark: OpenFile + ReadAt every file)
//	interop mkcorpus -out TAR [-files N] [-bytes N]   (benchmark: synthetic tree)
//
// Canonical listing (list, list-tar): one line per entry, tab-separated
//
//	path type mode uid gid size mtime nlink link dev sha256 xattrs
//
// Lines are sorted bytewise (LC_ALL=C sort order). Because every byte of an
// encoded path is in 0x21..0x7e and the field separator is a tab (0x09), this
// is the same as sorting by the encoded path field. The root is ".".
// See formatLine for the exact field rules.
package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/containerd/stargz-snapshotter/estargz"
	"github.com/containerd/stargz-snapshotter/estargz/zstdchunked"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	args := os.Args[2:]
	var err error
	switch os.Args[1] {
	case "mktar":
		err = cmdMktar(args)
	case "build":
		err = cmdBuild(args)
	case "legacy":
		err = cmdLegacy(args)
	case "list":
		err = cmdList(args)
	case "list-tar":
		err = cmdListTar(args)
	case "verify":
		err = cmdVerify(args)
	case "open":
		err = cmdOpen(args)
	case "readall":
		err = cmdReadall(args)
	case "mkcorpus":
		err = cmdMkcorpus(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "interop %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: interop mktar|build|legacy|list|list-tar|verify ... (see source header)")
	os.Exit(2)
}

// ---------------------------------------------------------------------------
// Deterministic content.

// rng is xorshift64*: tiny, seeded, identical on every machine.
type rng struct{ s uint64 }

func newRNG(seed uint64) *rng { return &rng{s: seed*0x9E3779B97F4A7C15 + 1} }

func (r *rng) next() uint64 {
	r.s ^= r.s >> 12
	r.s ^= r.s << 25
	r.s ^= r.s >> 27
	return r.s * 2685821657736338717
}

func (r *rng) intn(n int) int { return int(r.next() % uint64(n)) }

const lorem = "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.\n"

// content returns n bytes that are partly random, partly repeated text, so
// that compression does something but not everything.
func content(seed uint64, n int) []byte {
	r := newRNG(seed)
	out := make([]byte, 0, n)
	for len(out) < n {
		blk := 64 + r.intn(448)
		if blk > n-len(out) {
			blk = n - len(out)
		}
		if r.next()%2 == 0 {
			for i := 0; i < blk; i++ {
				out = append(out, byte(r.next()>>56))
			}
		} else {
			off := r.intn(len(lorem))
			for i := 0; i < blk; i++ {
				out = append(out, lorem[(off+i)%len(lorem)])
			}
		}
	}
	return out
}

// lines returns n bytes of highly compressible numbered text lines.
func lines(name string, n int) []byte {
	var b []byte
	for i := 0; len(b) < n; i++ {
		b = append(b, fmt.Sprintf("%s line %d\n", name, i)...)
	}
	return b[:n]
}

// ---------------------------------------------------------------------------
// mktar

// Fixed timestamps (Unix seconds).
const (
	t0 = 1577934245 // 2020-01-02T03:04:05Z
	t1 = 1600000000
	t2 = 1700000000
	t3 = 4102444800 // 2100-01-01
)

type tarOut struct {
	tw *tar.Writer
}

func (t *tarOut) add(h *tar.Header, data []byte) {
	if h.Typeflag == tar.TypeReg {
		h.Size = int64(len(data))
	}
	if h.ModTime.IsZero() {
		h.ModTime = time.Unix(t0, 0)
	}
	if h.Uid == 0 && h.Uname == "" {
		h.Uname = "root"
	}
	if h.Gid == 0 && h.Gname == "" {
		h.Gname = "root"
	}
	if err := t.tw.WriteHeader(h); err != nil {
		panic(fmt.Sprintf("%q: %v", h.Name, err))
	}
	if _, err := t.tw.Write(data); err != nil {
		panic(err)
	}
}

func (t *tarOut) dir(name string, mode int64, mt int64) {
	t.add(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: time.Unix(mt, 0)}, nil)
}

func (t *tarOut) file(name string, mode int64, mt int64, data []byte) {
	t.add(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, ModTime: time.Unix(mt, 0)}, data)
}

func (t *tarOut) symlink(name, target string) {
	t.add(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0777, ModTime: time.Unix(t1, 0)}, nil)
}

func cmdMktar(args []string) error {
	fs := flag.NewFlagSet("mktar", flag.ExitOnError)
	kind := fs.String("kind", "", "all-types|chunks|many|demo")
	out := fs.String("out", "", "output tar")
	fs.Parse(args)
	gens := map[string]func(*tarOut){"all-types": mkAllTypes, "chunks": mkChunks, "many": mkMany, "demo": mkDemo}
	gen, ok := gens[*kind]
	if !ok || *out == "" {
		return fmt.Errorf("need -kind (all-types|chunks|many|demo) and -out")
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	t := &tarOut{tw: tar.NewWriter(bw)}
	gen(t)
	if err := t.tw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

func mkAllTypes(t *tarOut) {
	// Root entry and "./"-prefixed entries.
	t.dir("./", 0755, t0)
	t.dir("./dotted/", 0755, t1)
	t.file("./dotted/file.txt", 0644, t1, []byte("dot-slash prefixed\n"))

	// Directories with special modes and owners.
	t.dir("dirs/", 0755, t0)
	t.dir("dirs/sticky/", 01777, t2)
	t.add(&tar.Header{Typeflag: tar.TypeDir, Name: "dirs/private/", Mode: 0700, Uid: 1000, Gid: 1000,
		Uname: "user", Gname: "user", ModTime: time.Unix(t1, 0)}, nil)
	t.add(&tar.Header{Typeflag: tar.TypeReg, Name: "dirs/private/secret", Mode: 0600, Uid: 1000, Gid: 1000,
		Uname: "user", Gname: "user", ModTime: time.Unix(t1, 0)}, []byte("s3cr3t\n"))

	// Regular files.
	t.dir("files/", 0755, t0)
	t.file("files/empty", 0644, t0, nil)
	t.file("files/small.txt", 0644, t1, []byte("hello, world\n"))
	t.file("files/suid", 04755, t0, content(1, 300))
	t.file("files/sgid", 02755, t0, content(2, 301))
	t.file("files/epoch", 0444, 0, []byte("mtime is the Unix epoch\n"))
	t.file("files/future", 0644, t3, []byte("mtime in 2100\n"))
	t.file("files/medium.bin", 0644, t2, content(3, 10000)) // 3 chunks at -chunk-size 4096
	t.add(&tar.Header{Typeflag: tar.TypeReg, Name: "files/nobody", Mode: 0640, Uid: 65534, Gid: 65534,
		Uname: "nobody", Gname: "nogroup", ModTime: time.Unix(t2, 0)}, []byte("owned by nobody\n"))
	// Hardlink target, with an xattr the links must show too.
	t.add(&tar.Header{Typeflag: tar.TypeReg, Name: "files/data.bin", Mode: 0640, ModTime: time.Unix(t1, 0),
		PAXRecords: map[string]string{"SCHILY.xattr.user.hl": "target"}}, content(4, 5000))

	// Symlinks and hardlinks. The hardlink headers carry their own mode/mtime,
	// which extraction ignores: a hardlink name shows the target's inode.
	t.dir("links/", 0755, t0)
	t.symlink("links/rel", "../files/small.txt")
	t.symlink("links/abs", "/etc/passwd")
	t.symlink("links/dangling", "does/not/exist")
	t.add(&tar.Header{Typeflag: tar.TypeLink, Name: "links/hard1", Linkname: "files/data.bin", Mode: 0777, ModTime: time.Unix(t3, 0)}, nil)
	// Hardlink to a hardlink name: resolves to files/data.bin.
	t.add(&tar.Header{Typeflag: tar.TypeLink, Name: "links/hard2", Linkname: "links/hard1", Mode: 0644, ModTime: time.Unix(t2, 0)}, nil)
	// Hardlink to the same target spelled with "./".
	t.add(&tar.Header{Typeflag: tar.TypeLink, Name: "./links/hard3", Linkname: "./files/data.bin", Mode: 0644, ModTime: time.Unix(t2, 0)}, nil)

	// Devices and fifo.
	t.dir("dev/", 0755, t0)
	t.add(&tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0666, Devmajor: 1, Devminor: 3, ModTime: time.Unix(t1, 0)}, nil)
	t.add(&tar.Header{Typeflag: tar.TypeBlock, Name: "dev/loop0", Mode: 0660, Gid: 6, Gname: "disk", Devmajor: 7, Devminor: 0, ModTime: time.Unix(t1, 0)}, nil)
	t.add(&tar.Header{Typeflag: tar.TypeFifo, Name: "dev/fifo", Mode: 0620, ModTime: time.Unix(t2, 0)}, nil)

	// Xattrs via PAX records; security.capability is a vfs_cap_data v2 blob
	// (not valid UTF-8, contains NULs).
	capv := string([]byte{0x01, 0x00, 0x00, 0x02, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00})
	t.add(&tar.Header{Typeflag: tar.TypeDir, Name: "xattr/", Mode: 0755, ModTime: time.Unix(t0, 0),
		PAXRecords: map[string]string{"SCHILY.xattr.user.dir": "d"}}, nil)
	t.add(&tar.Header{Typeflag: tar.TypeReg, Name: "xattr/file", Mode: 0755, ModTime: time.Unix(t1, 0),
		PAXRecords: map[string]string{
			"SCHILY.xattr.user.foo":            "bar",
			"SCHILY.xattr.security.capability": capv,
			"SCHILY.xattr.trusted.x":           "1",
		}}, []byte("#!/bin/sh\necho caps\n"))

	// Long names: a basename > 100 bytes, and a path > 255 bytes (PAX path).
	t.dir("long/", 0755, t0)
	t.file("long/"+strings.Repeat("n", 120), 0644, t1, []byte("long name\n"))
	deep := "long"
	for i := 0; i < 6; i++ {
		deep += "/" + fmt.Sprintf("level%d-", i) + strings.Repeat("d", 43)
		t.dir(deep+"/", 0755, t1)
	}
	t.file(deep+"/"+strings.Repeat("f", 30), 0644, t2, []byte("long path\n"))

	// Non-ASCII names (UTF-8).
	t.dir("unicode/", 0755, t0)
	t.file("unicode/é.txt", 0644, t1, []byte("e acute\n"))
	t.dir("unicode/日本語/", 0755, t1)
	t.file("unicode/日本語/ファイル", 0644, t1, []byte("nihongo\n"))
	t.file("unicode/😀", 0644, t2, []byte("emoji\n"))
	t.symlink("unicode/link", "日本語/ファイル")

	// Names JSON (and the listing) must escape.
	t.dir("escape/", 0755, t0)
	for i, n := range []string{`quote"name`, `back\slash`, "tab\there", "new\nline", "<tag>&amp", "line\u2028sep", "with space", "100%"} {
		t.file("escape/"+n, 0644, t1, []byte(fmt.Sprintf("escape %d\n", i)))
	}
	t.symlink("escape/link", `quote"name`)

	// OCI whiteouts (kept as plain empty files in the listing).
	t.dir("wh/", 0755, t0)
	t.file("wh/.wh.gone", 0644, t0, nil)
	t.dir("wh/opaque/", 0755, t0)
	t.file("wh/opaque/.wh..wh..opq", 0644, t0, nil)

	// The same name twice: the later entry wins.
	t.dir("dup/", 0755, t0)
	t.file("dup/file", 0644, t1, []byte("first version\n"))
	t.file("dup/other", 0644, t1, []byte("between the duplicates\n"))
	t.file("dup/file", 0600, t2, []byte("second version, which must win\n"))

	// A file whose parent directories have no entries.
	t.file("orphan/sub/file.txt", 0644, t1, []byte("parents are implicit\n"))
}

func mkChunks(t *tarOut) {
	t.dir("chunks/", 0755, t0)
	for i, n := range []int{0, 1, 4095, 4096, 4097, 8192, 65535, 65536, 65537, 131072 + 5} {
		t.file(fmt.Sprintf("chunks/size-%07d", n), 0644, t1, content(uint64(100+i), n))
	}
	t.file("chunks/big-9MiB", 0644, t2, content(200, 9<<20)) // spans 3 chunks of 4 MiB
}

func mkMany(t *tarOut) {
	r := newRNG(7)
	for d := 0; d < 50; d++ {
		dir := fmt.Sprintf("d%02d/", d)
		t.dir(dir, 0755, t0+int64(d))
		for f := 0; f < 100; f++ {
			n := r.intn(2001)
			if f%10 == 0 {
				n = 0 // some empty files
			}
			name := fmt.Sprintf("%sf%03d", dir, f)
			t.file(name, 0644, t1+int64(d*100+f), lines(name, n))
		}
	}
}

func mkDemo(t *tarOut) {
	t.dir("etc/", 0755, t0)
	t.file("etc/hostname", 0644, t0, []byte("crfs-demo\n"))
	t.file("README.md", 0644, t1, []byte(`# crfs demo layer

This is a tiny eStargz blob used as the built-in demo. It contains:

- etc/hostname, a small text file
- etc/motd, a symlink to ../README.md
- usr/bin/hello and its hardlink usr/bin/hello-again
- usr/share/data/big.bin, 200 KiB stored in 64 KiB chunks
`))
	t.symlink("etc/motd", "../README.md")
	t.dir("usr/", 0755, t0)
	t.dir("usr/bin/", 0755, t0)
	t.file("usr/bin/hello", 0755, t1, []byte("#!/bin/sh\necho hello from crfs\n"))
	t.add(&tar.Header{Typeflag: tar.TypeLink, Name: "usr/bin/hello-again", Linkname: "usr/bin/hello", ModTime: time.Unix(t1, 0)}, nil)
	t.dir("usr/share/", 0755, t0)
	t.dir("usr/share/data/", 0755, t0)
	t.file("usr/share/data/big.bin", 0644, t2, content(300, 200<<10))
}

// ---------------------------------------------------------------------------
// build (reference writer)

func cmdBuild(args []string) error {
	fs := flag.NewFlagSet("build", flag.ExitOnError)
	in := fs.String("in", "", "input tar")
	out := fs.String("out", "", "output blob")
	format := fs.String("format", "estargz", "estargz|zstdchunked")
	chunkSize := fs.Int("chunk-size", 0, "chunk size (0 = library default, 4 MiB)")
	level := fs.Int("level", -1, "compression level (-1 = default: gzip 9, zstd 3)")
	prio := fs.String("prioritize", "", "comma-separated prioritized files")
	procs := fs.Int("procs", 1, "GOMAXPROCS (0 = Go's default, one per core)")
	fs.Parse(args)
	if *in == "" || *out == "" {
		return fmt.Errorf("need -in and -out")
	}
	// Build splits the input into runtime.GOMAXPROCS(0) parts, each written as
	// its own sub-blob and compressed on its own goroutine; v0.12 has no other
	// parallelism option. One part (the default here) makes the output
	// independent of the machine's CPU count; -procs 0 is the library's own
	// default, as a benchmark peer.
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}

	var opts []estargz.Option
	if *chunkSize > 0 {
		opts = append(opts, estargz.WithChunkSize(*chunkSize))
	}
	if *prio != "" {
		opts = append(opts, estargz.WithPrioritizedFiles(strings.Split(*prio, ",")))
	}
	switch *format {
	case "estargz":
		if *level >= 0 {
			opts = append(opts, estargz.WithCompressionLevel(*level))
		}
	case "zstdchunked":
		zl := 3
		if *level >= 0 {
			zl = *level
		}
		// WithCompression wants a Compressor and a Decompressor in one value
		// (the Decompressor computes the DiffID).
		opts = append(opts, estargz.WithCompression(struct {
			*zstdchunked.Compressor
			*zstdchunked.Decompressor
		}{&zstdchunked.Compressor{CompressionLevel: zstd.EncoderLevelFromZstd(zl)}, new(zstdchunked.Decompressor)}))
	default:
		return fmt.Errorf("unknown -format %q", *format)
	}

	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	blob, err := estargz.Build(io.NewSectionReader(f, 0, st.Size()), opts...)
	if err != nil {
		return err
	}
	o, err := os.Create(*out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(o, blob); err != nil {
		return err
	}
	if err := blob.Close(); err != nil {
		return err
	}
	if err := o.Close(); err != nil {
		return err
	}
	fmt.Printf("toc-digest %s\ndiff-id %s\n", blob.TOCDigest(), blob.DiffID())
	return nil
}

// ---------------------------------------------------------------------------
// legacy: a writer of the 2019 google/crfs stargz format (its 47-byte footer: core/src/footer.rs).

// legacyEntry mirrors the legacy TOC entry. Field order is the JSON key order.
// NumLink has no JSON tag, as in CRFS, so it is always written as "NumLink": 0.
type legacyEntry struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Size        int64  `json:"size,omitempty"`
	ModTime3339 string `json:"modtime,omitempty"`
	LinkName    string `json:"linkName,omitempty"`
	Mode        int64  `json:"mode,omitempty"`
	UID         int    `json:"uid,omitempty"`
	GID         int    `json:"gid,omitempty"`
	Uname       string `json:"userName,omitempty"`
	Gname       string `json:"groupName,omitempty"`
	Offset      int64  `json:"offset,omitempty"`
	DevMajor    int    `json:"devMajor,omitempty"`
	DevMinor    int    `json:"devMinor,omitempty"`
	NumLink     int
	Xattrs      map[string][]byte `json:"xattrs,omitempty"`
	Digest      string            `json:"digest,omitempty"`
	ChunkOffset int64             `json:"chunkOffset,omitempty"`
	ChunkSize   int64             `json:"chunkSize,omitempty"`
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// memberWriter sends tar bytes to the current gzip member, opening one on
// demand; it also hashes everything for the DiffID.
type memberWriter struct {
	out  *countWriter
	gz   *gzip.Writer
	diff io.Writer
}

func (m *memberWriter) Write(p []byte) (int, error) {
	m.diff.Write(p)
	if m.gz == nil {
		m.gz, _ = gzip.NewWriterLevel(m.out, gzip.BestCompression)
	}
	return m.gz.Write(p)
}

func (m *memberWriter) closeMember() error {
	if m.gz == nil {
		return nil
	}
	err := m.gz.Close()
	m.gz = nil
	return err
}

func formatModtime(t time.Time) string {
	if t.IsZero() || t.Unix() == 0 {
		return ""
	}
	return t.UTC().Round(time.Second).Format(time.RFC3339)
}

func cmdLegacy(args []string) error {
	fs := flag.NewFlagSet("legacy", flag.ExitOnError)
	in := fs.String("in", "", "input tar")
	out := fs.String("out", "", "output blob")
	chunkSize := fs.Int64("chunk-size", 4<<20, "chunk size")
	fs.Parse(args)
	if *in == "" || *out == "" || *chunkSize <= 0 {
		return fmt.Errorf("need -in, -out and a positive -chunk-size")
	}
	inf, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer inf.Close()
	of, err := os.Create(*out)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(of)
	diff := sha256.New()
	mw := &memberWriter{out: &countWriter{w: bw}, diff: diff}
	tw := tar.NewWriter(mw)
	tr := tar.NewReader(inf)

	var entries []*legacyEntry
	unames, gnames := map[int]string{}, map[int]string{}
	ifChanged := func(m map[int]string, id int, name string) string {
		if name == "" || m[id] == name {
			return ""
		}
		m[id] = name
		return name
	}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if h.Typeflag == tar.TypeXGlobalHeader || cleanName(h.Name) == "stargz.index.json" {
			continue
		}
		ent := &legacyEntry{
			Name: h.Name, Mode: h.Mode, UID: h.Uid, GID: h.Gid,
			Uname:       ifChanged(unames, h.Uid, h.Uname),
			Gname:       ifChanged(gnames, h.Gid, h.Gname),
			ModTime3339: formatModtime(h.ModTime),
		}
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				if ent.Xattrs == nil {
					ent.Xattrs = map[string][]byte{}
				}
				ent.Xattrs[strings.TrimPrefix(k, "SCHILY.xattr.")] = []byte(v)
			}
		}
		// The header (plus the previous payload's padding) goes into the
		// currently open member, i.e. at the end of the previous one.
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			ent.Type, ent.Size = "reg", h.Size
		case tar.TypeLink:
			ent.Type, ent.LinkName = "hardlink", h.Linkname
		case tar.TypeSymlink:
			ent.Type, ent.LinkName = "symlink", h.Linkname
		case tar.TypeDir:
			ent.Type = "dir"
		case tar.TypeChar, tar.TypeBlock:
			ent.Type = map[byte]string{tar.TypeChar: "char", tar.TypeBlock: "block"}[h.Typeflag]
			ent.DevMajor, ent.DevMinor = int(h.Devmajor), int(h.Devminor)
		case tar.TypeFifo:
			ent.Type = "fifo"
		default:
			return fmt.Errorf("%q: unsupported tar type %q", h.Name, h.Typeflag)
		}
		if ent.Type != "reg" {
			entries = append(entries, ent)
			continue
		}
		reg, fileHash := ent, sha256.New()
		for written := int64(0); written < h.Size; {
			// Every payload chunk starts a new gzip member.
			if err := mw.closeMember(); err != nil {
				return err
			}
			n := h.Size - written
			if n >= *chunkSize {
				n = *chunkSize
				ent.ChunkSize = n // omitted for a short final chunk
			}
			ent.Offset, ent.ChunkOffset = mw.out.n, written
			if _, err := io.CopyN(io.MultiWriter(tw, fileHash), tr, n); err != nil {
				return err
			}
			entries = append(entries, ent)
			written += n
			ent = &legacyEntry{Name: h.Name, Type: "chunk"}
		}
		if h.Size == 0 {
			entries = append(entries, reg)
		}
		reg.Digest = "sha256:" + hex.EncodeToString(fileHash.Sum(nil))
	}

	// Padding of the last payload stays in its member; the TOC entry and the
	// tar EOF blocks get their own member (with CRFS's "stargz.toc" Extra).
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := mw.closeMember(); err != nil {
		return err
	}
	tocOff := mw.out.n
	tocJSON, err := json.MarshalIndent(struct {
		Version int            `json:"version"`
		Entries []*legacyEntry `json:"entries"`
	}{1, entries}, "", "\t")
	if err != nil {
		return err
	}
	mw.gz, _ = gzip.NewWriterLevel(mw.out, gzip.BestCompression)
	mw.gz.Extra = []byte("stargz.toc")
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "stargz.index.json", Size: int64(len(tocJSON))}); err != nil {
		return err
	}
	if _, err := tw.Write(tocJSON); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := mw.closeMember(); err != nil {
		return err
	}
	// The 47-byte legacy footer, literally: an empty stored gzip member whose
	// FEXTRA is the raw 22 bytes "%016xSTARGZ" (no RFC 1952 subfield header).
	footer := []byte{0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0x00, 0xff, 22, 0}
	footer = append(footer, fmt.Sprintf("%016xSTARGZ", tocOff)...)
	footer = append(footer, 0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0)
	if _, err := mw.out.Write(footer); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := of.Close(); err != nil {
		return err
	}
	fmt.Printf("toc-digest %s\ndiff-id sha256:%x\n", digest.FromBytes(tocJSON), diff.Sum(nil))
	return nil
}

// ---------------------------------------------------------------------------
// Canonical listing.

// node is one listed inode; several paths may share it (hardlinks).
type node struct {
	typ          string
	mode         int64
	uid, gid     int
	size, mtime  int64
	nlink        int
	link         string
	major, minor int64
	sha          string
	xattrs       map[string][]byte
}

// enc percent-encodes bytes outside 0x21..0x7e and '%' as %XX (uppercase).
func enc(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// formatLine renders: path type mode uid gid size mtime nlink link dev sha256 xattrs.
func formatLine(p string, n *node) string {
	if p == "" {
		p = "."
	}
	size := int64(0)
	switch n.typ {
	case "reg":
		size = n.size
	case "symlink":
		size = int64(len(n.link))
	}
	nlink := "-" // not compared for directories
	if n.typ != "dir" {
		nlink = fmt.Sprint(n.nlink)
	}
	link, dev, sha, xa := "-", "-", "-", "-"
	if n.typ == "symlink" {
		link = enc(n.link)
	}
	if n.typ == "char" || n.typ == "block" {
		dev = fmt.Sprintf("%d,%d", n.major, n.minor)
	}
	if n.typ == "reg" {
		sha = n.sha
	}
	if len(n.xattrs) > 0 {
		var names []string
		for k := range n.xattrs {
			names = append(names, k)
		}
		sort.Strings(names)
		var parts []string
		for _, k := range names {
			parts = append(parts, enc(k)+"="+base64.StdEncoding.EncodeToString(n.xattrs[k]))
		}
		xa = strings.Join(parts, ",")
	}
	return strings.Join([]string{enc(p), n.typ, fmt.Sprintf("%04o", n.mode&07777), fmt.Sprint(n.uid), fmt.Sprint(n.gid),
		fmt.Sprint(size), fmt.Sprint(n.mtime), nlink, link, dev, sha, xa}, "\t")
}

func printListing(lines []string) {
	sort.Strings(lines)
	w := bufio.NewWriter(os.Stdout)
	for _, l := range lines {
		w.WriteString(l)
		w.WriteByte('\n')
	}
	w.Flush()
}

func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func openBlob(file string) (*estargz.Reader, *os.File, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	// gzip eStargz and legacy stargz are always tried; add zstd:chunked.
	r, err := estargz.Open(io.NewSectionReader(f, 0, st.Size()), estargz.WithDecompressors(new(zstdchunked.Decompressor)))
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return r, f, nil
}

// forEachChunk calls fn with each chunk entry of the regular file e (the
// hardlink-resolved entry; its Name is the name the chunks are keyed by)
// and the chunk's uncompressed bytes read through OpenFile + ReadAt.
func forEachChunk(r *estargz.Reader, e *estargz.TOCEntry, fn func(ce *estargz.TOCEntry, data []byte) error) error {
	sr, err := r.OpenFile(e.Name)
	if err != nil {
		return err
	}
	for off := int64(0); off < e.Size; {
		ce, ok := r.ChunkEntryForOffset(e.Name, off)
		if !ok || ce.ChunkOffset != off || ce.ChunkSize <= 0 {
			return fmt.Errorf("%q: no chunk starting at %d", e.Name, off)
		}
		n := ce.ChunkSize
		if off+n > e.Size {
			n = e.Size - off
		}
		buf := make([]byte, n)
		if _, err := sr.ReadAt(buf, off); err != nil && !(err == io.EOF && off+n == e.Size) {
			return fmt.Errorf("%q: ReadAt(%d, %d): %v", e.Name, off, n, err)
		}
		if err := fn(ce, buf); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// walk visits every path reachable from the root, children in sorted order.
// With hideLandmarks, the landmark files at the root are skipped.
func walk(e *estargz.TOCEntry, p string, hideLandmarks bool, fn func(p string, e *estargz.TOCEntry) error) error {
	if err := fn(p, e); err != nil {
		return err
	}
	var names []string
	e.ForeachChild(func(name string, _ *estargz.TOCEntry) bool {
		names = append(names, name)
		return true
	})
	sort.Strings(names)
	for _, name := range names {
		if hideLandmarks && p == "" && (name == estargz.PrefetchLandmark || name == estargz.NoPrefetchLandmark) {
			continue
		}
		c, _ := e.LookupChild(name)
		if err := walk(c, path.Join(p, name), hideLandmarks, fn); err != nil {
			return err
		}
	}
	return nil
}

func cmdList(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: interop list BLOB")
	}
	r, f, err := openBlob(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	root, ok := r.Lookup("")
	if !ok {
		return fmt.Errorf("no root")
	}
	hashes := map[*estargz.TOCEntry]string{} // per inode
	var lines []string
	err = walk(root, "", true, func(p string, e *estargz.TOCEntry) error {
		n := &node{typ: e.Type, mode: e.Mode, uid: e.UID, gid: e.GID, size: e.Size, nlink: e.NumLink,
			link: e.LinkName, major: int64(e.DevMajor), minor: int64(e.DevMinor), xattrs: e.Xattrs}
		if n.nlink == 0 {
			n.nlink = 1
		}
		if !e.ModTime().IsZero() {
			n.mtime = e.ModTime().Unix()
		}
		if e.Type == "reg" {
			if _, ok := hashes[e]; !ok {
				h := sha256.New()
				if err := forEachChunk(r, e, func(_ *estargz.TOCEntry, b []byte) error { h.Write(b); return nil }); err != nil {
					return err
				}
				hashes[e] = hex.EncodeToString(h.Sum(nil))
			}
			n.sha = hashes[e]
		}
		lines = append(lines, formatLine(p, n))
		return nil
	})
	if err != nil {
		return err
	}
	printListing(lines)
	return nil
}

// cmdListTar computes the listing of what `tar -xpf` would produce: later
// duplicates win, hardlinks share the target's inode, missing parents are
// dirs 0755 0:0 mtime 0, "./" and "/" prefixes are stripped.
func cmdListTar(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: interop list-tar TAR")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	newDir := func() *node { return &node{typ: "dir", mode: 0755, nlink: 1} }
	paths := map[string]*node{"": newDir()}
	var ensureDir func(p string)
	ensureDir = func(p string) {
		if _, ok := paths[p]; ok {
			return
		}
		ensureDir(cleanName(path.Dir(p)))
		paths[p] = newDir()
	}
	set := func(p string, n *node) {
		if old, ok := paths[p]; ok && old != n {
			old.nlink--
		}
		paths[p] = n
	}
	tr := tar.NewReader(bufio.NewReader(f))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		p := cleanName(h.Name)
		if p != "" {
			ensureDir(cleanName(path.Dir(p)))
		}
		if h.Typeflag == tar.TypeLink {
			target, ok := paths[cleanName(h.Linkname)]
			if !ok {
				return fmt.Errorf("%q: hardlink target %q not found", h.Name, h.Linkname)
			}
			if paths[p] != target {
				target.nlink++
				set(p, target)
			}
			continue
		}
		n := &node{mode: h.Mode, uid: h.Uid, gid: h.Gid, mtime: h.ModTime.Unix(), nlink: 1}
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				if n.xattrs == nil {
					n.xattrs = map[string][]byte{}
				}
				n.xattrs[strings.TrimPrefix(k, "SCHILY.xattr.")] = []byte(v)
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			n.typ = "dir"
			if old, ok := paths[p]; ok && old.typ == "dir" {
				*old = *n // existing dir: metadata updated in place
				continue
			}
		case tar.TypeReg, tar.TypeRegA:
			n.typ, n.size = "reg", h.Size
			hh := sha256.New()
			if _, err := io.Copy(hh, tr); err != nil {
				return err
			}
			n.sha = hex.EncodeToString(hh.Sum(nil))
		case tar.TypeSymlink:
			n.typ, n.link = "symlink", h.Linkname
		case tar.TypeChar, tar.TypeBlock:
			n.typ = map[byte]string{tar.TypeChar: "char", tar.TypeBlock: "block"}[h.Typeflag]
			n.major, n.minor = h.Devmajor, h.Devminor
		case tar.TypeFifo:
			n.typ = "fifo"
		default:
			return fmt.Errorf("%q: unsupported tar type %q", h.Name, h.Typeflag)
		}
		set(p, n)
	}
	var lines []string
	for p, n := range paths {
		lines = append(lines, formatLine(p, n))
	}
	printListing(lines)
	return nil
}

// ---------------------------------------------------------------------------
// verify

func cmdVerify(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: interop verify BLOB TOCDIGEST")
	}
	r, f, err := openBlob(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	dgst, err := digest.Parse(strings.TrimSpace(args[1]))
	if err != nil {
		return err
	}
	v, err := r.VerifyTOC(dgst)
	if err != nil {
		return err
	}
	root, _ := r.Lookup("")
	seen := map[*estargz.TOCEntry]bool{}
	chunks := 0
	err = walk(root, "", false, func(p string, e *estargz.TOCEntry) error {
		if e.Type != "reg" || e.Size == 0 || seen[e] {
			return nil
		}
		seen[e] = true
		return forEachChunk(r, e, func(ce *estargz.TOCEntry, b []byte) error {
			dv, err := v.Verifier(ce)
			if err != nil {
				return fmt.Errorf("%q chunk at %d: %v", p, ce.ChunkOffset, err)
			}
			dv.Write(b)
			if !dv.Verified() {
				return fmt.Errorf("%q chunk at %d: digest mismatch", p, ce.ChunkOffset)
			}
			chunks++
			return nil
		})
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "verified %d chunks of %d files\n", chunks, len(seen))
	fmt.Println("ok")
	return nil
}

// ---------------------------------------------------------------------------
// Benchmark peers (benches/compare.sh): each does one measured thing and exits.

// cmdOpen opens a blob with estargz.Open (footer, TOC, index) and exits.
func cmdOpen(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: interop open BLOB")
	}
	_, f, err := openBlob(args[0])
	if err != nil {
		return err
	}
	f.Close()
	fmt.Println("ok")
	return nil
}

// cmdReadall reads every regular file (each inode once, landmarks skipped)
// start to end through OpenFile + ReadAt in pieces of -piece bytes; with
// -piece 0, one ReadAt per chunk. The library's ReadAt checks no digests.
func cmdReadall(args []string) error {
	fs := flag.NewFlagSet("readall", flag.ExitOnError)
	piece := fs.Int("piece", 128<<10, "bytes per ReadAt (0 = one ReadAt per chunk)")
	fs.Parse(args)
	if fs.NArg() != 1 || *piece < 0 {
		return fmt.Errorf("usage: interop readall BLOB [-piece N]")
	}
	r, f, err := openBlob(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	root, ok := r.Lookup("")
	if !ok {
		return fmt.Errorf("no root")
	}
	seen := map[*estargz.TOCEntry]bool{}
	var files, total int64
	var buf []byte
	err = walk(root, "", true, func(p string, e *estargz.TOCEntry) error {
		if e.Type != "reg" || seen[e] {
			return nil
		}
		seen[e] = true
		sr, err := r.OpenFile(e.Name)
		if err != nil {
			return err
		}
		for off := int64(0); off < e.Size; {
			n := int64(*piece)
			if n == 0 {
				ce, ok := r.ChunkEntryForOffset(e.Name, off)
				if !ok || ce.ChunkOffset != off || ce.ChunkSize <= 0 {
					return fmt.Errorf("%q: no chunk starting at %d", e.Name, off)
				}
				n = ce.ChunkSize
			}
			if off+n > e.Size {
				n = e.Size - off
			}
			if int64(cap(buf)) < n {
				buf = make([]byte, n)
			}
			got, err := sr.ReadAt(buf[:n], off)
			if err != nil && !(err == io.EOF && off+int64(got) == e.Size) {
				return fmt.Errorf("%q: ReadAt(%d, %d): %v", e.Name, off, n, err)
			}
			if got == 0 {
				return fmt.Errorf("%q: ReadAt(%d, %d) read nothing", e.Name, off, n)
			}
			off += int64(got)
			total += int64(got)
		}
		files++
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("files %d bytes %d\n", files, total)
	return nil
}

// cmdMkcorpus writes a deterministic synthetic tree for quick benchmark runs:
// -files regular files in directories of 100, -bytes in all. Three eighths
// of the bytes sit in four big files (each spans two 4 MiB chunks when -bytes
// is at least 45 MB); the rest spread over the other files, whose sizes
// are powers of two from 16 B to 64 KiB (jittered up to 2x, scaled to the
// total). Two thirds of those are numbered text lines (compress well), the
// rest half random bytes (compress about 2x).
func cmdMkcorpus(args []string) error {
	fs := flag.NewFlagSet("mkcorpus", flag.ExitOnError)
	out := fs.String("out", "", "output tar")
	nfiles := fs.Int("files", 5000, "regular files")
	nbytes := fs.Int64("bytes", 50_000_000, "total file bytes")
	fs.Parse(args)
	if *out == "" || *nfiles < 8 || *nbytes < int64(*nfiles) {
		return fmt.Errorf("need -out, -files >= 8 and -bytes >= -files")
	}
	r := newRNG(11)
	big := *nbytes * 3 / 8 / 4
	small := make([]float64, *nfiles-4)
	sum := 0.0
	for i := range small {
		small[i] = float64(int64(16)<<r.intn(13)) * (1 + float64(r.intn(1000))/1000)
		sum += small[i]
	}
	scale := float64(*nbytes-4*big) / sum
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	t := &tarOut{tw: tar.NewWriter(bw)}
	quarter, k := *nfiles/4, 0
	for i := 0; i < *nfiles; i++ {
		dir := fmt.Sprintf("d%03d/", i/100)
		if i%100 == 0 {
			t.dir(dir, 0755, t0)
		}
		name := fmt.Sprintf("%sf%04d", dir, i)
		if i%quarter == 0 && i/quarter < 4 {
			t.file(name+".big", 0644, t1, content(uint64(1000+i), int(big)))
			continue
		}
		n := int(small[k] * scale)
		k++
		if i%3 == 2 {
			t.file(name+".bin", 0644, t1, content(uint64(1000+i), n))
		} else {
			t.file(name+".txt", 0644, t1, lines(name, n))
		}
	}
	if err := t.tw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}
