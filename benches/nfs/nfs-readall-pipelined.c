/* nfs-readall-pipelined: reads every regular file of an NFS export through libnfs's RPC layer
 * the way a kernel NFS client does, with several requests in flight on one connection.
 *
 *   cc -O2 -o nfs-readall-pipelined nfs-readall-pipelined.c -lnfs
 *   nfs-readall-pipelined [-j IN_FLIGHT] 'nfs://127.0.0.1/?nfsport=P&mountport=P&version=3'
 *
 * What it sends, per the Linux client's habits (fs/nfs):
 *   - READDIRPLUS for every directory (the names, handles and attributes in one reply, so no
 *     LOOKUP is needed: the kernel fills its dentry cache from these replies the same way);
 *   - ACCESS once per file and directory (the kernel's open() and path walk check access per
 *     inode through its access cache, which starts empty);
 *   - READs of at most the server's rtmax (1 MiB for crfs) until EOF.
 * Up to IN_FLIGHT (default 16) requests are outstanding at once, as the kernel's readahead and
 * several readers would keep them. The synchronous nfs-readall.c, by contrast, has one request
 * in flight and looks every path up from the root: the two bound what a client sees.
 *
 * Prints the files and bytes read; exits non-zero on any error. Benchmark support only. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-mount.h>
#include <nfsc/libnfs-raw-nfs.h>

enum kind { LIST, ACCESS_DIR, ACCESS_FILE, READ };

/* One request to send: a directory page to list, an access check, or a piece of a file. */
struct work {
    enum kind kind;
    struct nfs_fh3 fh; /* owned copy */
    uint64_t cookie;   /* LIST: where to resume */
    char verf[NFS3_COOKIEVERFSIZE];
    uint64_t offset;   /* READ */
    struct work *next;
};

static struct rpc_context *rpc;
static struct work *queue_head;
static int in_flight, max_in_flight = 16, failed;
static uint32_t read_size;
static uint64_t files, bytes, rpcs;
static struct nfs_fh3 root;
static int root_ready;

static void die_oom(void) {
    fprintf(stderr, "out of memory\n");
    exit(1);
}

static struct nfs_fh3 copy_fh(const char *val, u_int len) {
    struct nfs_fh3 fh;
    fh.data.data_len = len;
    fh.data.data_val = malloc(len ? len : 1);
    if (fh.data.data_val == NULL) die_oom();
    memcpy(fh.data.data_val, val, len);
    return fh;
}

/* Work is taken depth first (pushed at the front), as a recursive walk would visit it. */
static struct work *push(enum kind kind, struct nfs_fh3 fh) {
    struct work *w = calloc(1, sizeof *w);
    if (w == NULL) die_oom();
    w->kind = kind;
    w->fh = fh;
    w->next = queue_head;
    queue_head = w;
    return w;
}

static void finish(struct work *w) {
    free(w->fh.data.data_val);
    free(w);
}

static int ok(int status, void *data, const char *what) {
    if (status != RPC_STATUS_SUCCESS) {
        fprintf(stderr, "%s: %s\n", what, status == RPC_STATUS_ERROR ? (char *)data : "cancelled");
        failed = 1;
        return 0;
    }
    return 1;
}

static void list_cb(struct rpc_context *r, int status, void *data, void *private_data) {
    struct work *w = private_data;
    (void)r;
    in_flight--;
    if (!ok(status, data, "READDIRPLUS")) return finish(w);
    READDIRPLUS3res *res = data;
    if (res->status != NFS3_OK) {
        fprintf(stderr, "READDIRPLUS: %s\n", nfsstat3_to_str(res->status));
        failed = 1;
        return finish(w);
    }
    READDIRPLUS3resok *okr = &res->READDIRPLUS3res_u.resok;
    uint64_t last = w->cookie;
    for (entryplus3 *e = okr->reply.entries; e != NULL; e = e->nextentry) {
        last = e->cookie;
        if (!strcmp(e->name, ".") || !strcmp(e->name, "..")) continue;
        if (!e->name_handle.handle_follows || !e->name_attributes.attributes_follow) {
            fprintf(stderr, "READDIRPLUS: %s came without handle or attributes\n", e->name);
            failed = 1;
            continue;
        }
        nfs_fh3 *h = &e->name_handle.post_op_fh3_u.handle;
        ftype3 type = e->name_attributes.post_op_attr_u.attributes.type;
        if (type == NF3DIR) {
            push(ACCESS_DIR, copy_fh(h->data.data_val, h->data.data_len));
        } else if (type == NF3REG) {
            push(ACCESS_FILE, copy_fh(h->data.data_val, h->data.data_len));
        }
    }
    if (!okr->reply.eof) {
        struct work *more = push(LIST, copy_fh(w->fh.data.data_val, w->fh.data.data_len));
        more->cookie = last;
        memcpy(more->verf, okr->cookieverf, NFS3_COOKIEVERFSIZE);
    }
    finish(w);
}

static void access_cb(struct rpc_context *r, int status, void *data, void *private_data) {
    struct work *w = private_data;
    (void)r;
    in_flight--;
    if (!ok(status, data, "ACCESS")) return finish(w);
    ACCESS3res *res = data;
    if (res->status != NFS3_OK) {
        fprintf(stderr, "ACCESS: %s\n", nfsstat3_to_str(res->status));
        failed = 1;
        return finish(w);
    }
    /* The access check passed: the directory is listed, the file is read from its start. */
    push(w->kind == ACCESS_DIR ? LIST : READ, w->fh);
    w->fh.data.data_val = NULL;
    finish(w);
}

static void read_cb(struct rpc_context *r, int status, void *data, void *private_data) {
    struct work *w = private_data;
    (void)r;
    in_flight--;
    if (!ok(status, data, "READ")) return finish(w);
    READ3res *res = data;
    if (res->status != NFS3_OK) {
        fprintf(stderr, "READ: %s\n", nfsstat3_to_str(res->status));
        failed = 1;
        return finish(w);
    }
    READ3resok *okr = &res->READ3res_u.resok;
    bytes += okr->count;
    if (okr->eof || okr->count == 0) {
        files++;
        return finish(w);
    }
    struct work *more = push(READ, w->fh);
    w->fh.data.data_val = NULL;
    more->offset = w->offset + okr->count;
    finish(w);
}

static void send_work(struct work *w) {
    int rc = -1;
    switch (w->kind) {
    case LIST: {
        READDIRPLUS3args args;
        memset(&args, 0, sizeof args);
        args.dir = w->fh;
        args.cookie = w->cookie;
        memcpy(args.cookieverf, w->verf, NFS3_COOKIEVERFSIZE);
        args.dircount = 65536;
        args.maxcount = 1 << 20;
        rc = rpc_nfs3_readdirplus_async(rpc, list_cb, &args, w);
        break;
    }
    case ACCESS_DIR:
    case ACCESS_FILE: {
        ACCESS3args args;
        args.object = w->fh;
        args.access = w->kind == ACCESS_DIR ? (ACCESS3_READ | ACCESS3_LOOKUP) : ACCESS3_READ;
        rc = rpc_nfs3_access_async(rpc, access_cb, &args, w);
        break;
    }
    case READ: {
        READ3args args;
        args.file = w->fh;
        args.offset = w->offset;
        args.count = read_size;
        rc = rpc_nfs3_read_async(rpc, read_cb, &args, w);
        break;
    }
    }
    if (rc != 0) {
        fprintf(stderr, "sending a request: %s\n", rpc_get_error(rpc));
        failed = 1;
        finish(w);
        return;
    }
    in_flight++;
    rpcs++;
}

static void mnt_cb(struct rpc_context *r, int status, void *data, void *private_data) {
    (void)r;
    (void)private_data;
    if (!ok(status, data, "MNT")) return;
    mountres3 *res = data;
    if (res->fhs_status != MNT3_OK) {
        fprintf(stderr, "MNT: status %d\n", res->fhs_status);
        failed = 1;
        return;
    }
    fhandle3 *h = &res->mountres3_u.mountinfo.fhandle;
    root = copy_fh(h->fhandle3_val, h->fhandle3_len);
    root_ready = 1;
}

/* Runs the event loop until nothing is queued or in flight (or, before the walk, until the
 * root handle has arrived). */
static void run(int until_root) {
    for (;;) {
        while (!until_root && !failed && in_flight < max_in_flight && queue_head != NULL) {
            struct work *w = queue_head;
            queue_head = w->next;
            send_work(w);
        }
        if (failed || (until_root ? root_ready : (in_flight == 0 && queue_head == NULL))) return;
        struct pollfd pfd = {.fd = rpc_get_fd(rpc), .events = rpc_which_events(rpc)};
        if (poll(&pfd, 1, 1000) < 0 && errno != EINTR) {
            perror("poll");
            failed = 1;
            return;
        }
        if (rpc_service(rpc, pfd.revents) < 0) {
            fprintf(stderr, "connection: %s\n", rpc_get_error(rpc));
            failed = 1;
            return;
        }
    }
}

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "j:")) != -1) {
        if (opt == 'j' && atoi(optarg) > 0) {
            max_in_flight = atoi(optarg);
        } else {
            fprintf(stderr, "usage: nfs-readall-pipelined [-j IN_FLIGHT] URL\n");
            return 2;
        }
    }
    if (optind + 1 != argc) {
        fprintf(stderr, "usage: nfs-readall-pipelined [-j IN_FLIGHT] nfs://HOST/EXPORT?nfsport=P&mountport=P&version=3\n");
        return 2;
    }
    const char *url_text = argv[optind];
    struct nfs_context *nfs = nfs_init_context();
    struct nfs_url *url = nfs ? nfs_parse_url_dir(nfs, url_text) : NULL;
    /* nfs_mount connects to the server (NFS and MOUNT share crfs's one port) and learns its
     * read size; the root handle is then asked for over that same connection. */
    if (url == NULL || nfs_mount(nfs, url->server, url->path) != 0) {
        fprintf(stderr, "mount %s: %s\n", url_text, nfs ? nfs_get_error(nfs) : "no context");
        return 1;
    }
    rpc = nfs_get_rpc_context(nfs);
    uint64_t readmax = nfs_get_readmax(nfs);
    read_size = (uint32_t)(readmax > 0 && readmax < (1u << 20) ? readmax : (1u << 20));
    if (rpc_mount3_mnt_async(rpc, mnt_cb, url->path, NULL) != 0) {
        fprintf(stderr, "MNT: %s\n", rpc_get_error(rpc));
        return 1;
    }
    run(1);
    if (failed) return 1;
    push(ACCESS_DIR, copy_fh(root.data.data_val, root.data.data_len));
    run(0);
    printf("files %" PRIu64 " bytes %" PRIu64 " rpcs %" PRIu64 "\n", files, bytes, rpcs);
    free(root.data.data_val);
    nfs_destroy_url(url);
    nfs_destroy_context(nfs);
    return failed ? 1 : 0;
}
