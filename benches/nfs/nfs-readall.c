/* nfs-readall: reads every regular file of an NFS export through libnfs (the client the
 * crfs NFS tests use), in one process: READDIRPLUS for listings, 1 MiB READs for data.
 *   cc -O2 -o nfs-readall nfs-readall.c -lnfs
 *   nfs-readall 'nfs://127.0.0.1/?nfsport=P&mountport=P&version=3'
 * Prints the files and bytes read; exits non-zero on any error. Benchmark support only. */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw-nfs.h>

static struct nfs_context *nfs;
static uint64_t files, bytes;
static char buf[1 << 20];

static int walk(const char *dir) {
    struct nfsdir *d;
    if (nfs_opendir(nfs, dir, &d) != 0) {
        fprintf(stderr, "opendir %s: %s\n", dir, nfs_get_error(nfs));
        return -1;
    }
    struct nfsdirent *e;
    while ((e = nfs_readdir(nfs, d)) != NULL) {
        if (!strcmp(e->name, ".") || !strcmp(e->name, "..")) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", strcmp(dir, "/") ? dir : "", e->name);
        if (e->type == NF3DIR) {
            if (walk(path) != 0) return -1;
        } else if (e->type == NF3REG) {
            struct nfsfh *fh;
            if (nfs_open(nfs, path, O_RDONLY, &fh) != 0) {
                fprintf(stderr, "open %s: %s\n", path, nfs_get_error(nfs));
                return -1;
            }
            int n;
            while ((n = nfs_read(nfs, fh, sizeof buf, buf)) > 0) bytes += (uint64_t)n;
            nfs_close(nfs, fh);
            if (n < 0) {
                fprintf(stderr, "read %s: %s\n", path, nfs_get_error(nfs));
                return -1;
            }
            files++;
        }
    }
    nfs_closedir(nfs, d);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: nfs-readall nfs://HOST/EXPORT?nfsport=P&mountport=P&version=3\n");
        return 2;
    }
    nfs = nfs_init_context();
    struct nfs_url *url = nfs ? nfs_parse_url_dir(nfs, argv[1]) : NULL;
    if (url == NULL || nfs_mount(nfs, url->server, url->path) != 0) {
        fprintf(stderr, "mount %s: %s\n", argv[1], nfs ? nfs_get_error(nfs) : "no context");
        return 1;
    }
    int rc = walk("/");
    printf("files %" PRIu64 " bytes %" PRIu64 "\n", files, bytes);
    nfs_destroy_url(url);
    nfs_destroy_context(nfs);
    return rc == 0 ? 0 : 1;
}
