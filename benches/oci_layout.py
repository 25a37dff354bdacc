"""Writes the OCI image layouts the registry and podman benchmarks push with skopeo.

Imported by the Python inside benches/registry-compare.sh and benches/podman-compare.sh (the
benches directory goes on sys.path); blobs are hard-linked into the layout when they are on
the same file system, copied otherwise.
"""
import hashlib
import json
import os
import shutil

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha_file(path):
    """The sha256 hex digest of the file at path."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            h.update(piece)
    return h.hexdigest()


class Layout:
    """An OCI image layout being written at path."""

    def __init__(self, path):
        self.path = path
        self.blobs = os.path.join(path, "blobs", "sha256")
        os.makedirs(self.blobs)
        self.manifests = []

    def add_file(self, path):
        """Adds the file at path as a blob: (digest, size)."""
        d = sha_file(path)
        dest = os.path.join(self.blobs, d)
        if os.stat(path).st_dev == os.stat(self.blobs).st_dev:
            os.link(path, dest)
        else:
            shutil.copy(path, dest)
        return "sha256:" + d, os.path.getsize(path)

    def add_json(self, obj):
        """Adds obj as a compact JSON blob: (digest, size)."""
        data = json.dumps(obj, separators=(",", ":")).encode()
        d = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.blobs, d), "wb") as f:
            f.write(data)
        return "sha256:" + d, len(data)

    def config(self, diff_ids, config=None):
        """Adds an amd64 Linux image config with these DiffIDs: (digest, size)."""
        return self.add_json({"architecture": "amd64", "os": "linux", "config": config or {},
                              "rootfs": {"type": "layers", "diff_ids": diff_ids}})

    def image(self, tag, config, layers):
        """Adds a manifest of config (digest, size) and layer descriptors, tagged tag."""
        digest, size = self.add_json({"schemaVersion": 2, "mediaType": MANIFEST,
                                      "config": {"mediaType": CONFIG, "digest": config[0], "size": config[1]},
                                      "layers": layers})
        self.manifests.append({"mediaType": MANIFEST, "digest": digest, "size": size,
                               "annotations": {"org.opencontainers.image.ref.name": tag}})

    def write(self):
        """Writes index.json and oci-layout."""
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": self.manifests}, f)
        with open(os.path.join(self.path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
